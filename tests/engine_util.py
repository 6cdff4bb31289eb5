"""Run stages through the local engine on an in-memory table, in batches of a given size."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from winnow import schema
from winnow.engines.local import EngineOutput, LocalEngine, read_ipc


def batches(t: pa.Table, size: int) -> list[tuple[pa.Table, pa.Table]]:
    rows = schema.canonical(t)
    return [(rows.slice(i, size), schema.empty(schema.REJECTED_SCHEMA)) for i in range(0, max(rows.num_rows, 1), size)]


def run(
    t: pa.Table, stages: list, work: Path, batch_size: int = 1000, workers: int = 1
) -> tuple[pa.Table, pa.Table, EngineOutput]:
    out = LocalEngine(workers=workers, progress=False).run(batches(t, batch_size), stages, work)
    kept = pa.concat_tables([read_ipc(p) for p in out.batches]) if out.batches else schema.empty()
    rejected_files = [p for files in out.rejected for p in files]
    rejected = (
        pa.concat_tables([read_ipc(p) for p in rejected_files])
        if rejected_files
        else schema.empty(schema.REJECTED_SCHEMA)
    )
    return schema.without_internal(kept), rejected, out
