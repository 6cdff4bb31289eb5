"""Helpers for the ingest tests: tiny fixtures written into tmp_path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa

from winnow.formats import InputSpec, open_input


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def ingest(path: Path | str, **kwargs: Any) -> pa.Table:
    return open_input(InputSpec(path=str(path), **kwargs)).to_table()


def rows(table: pa.Table) -> list[dict[str, Any]]:
    return table.to_pylist()


ALPACA = [
    {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
    {"instruction": "Say hi.", "input": "", "output": "hi"},
    {"instruction": "Name a color.", "input": "", "output": "Blue."},
]
