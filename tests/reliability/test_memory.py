"""Big input, bounded memory: peak RSS follows the batch size, not the file size.

Runs bench/memory.py's generator and runner on a 50 MB and a 200 MB JSONL through ingest,
exact_dedup, length and quality with 2 workers: the peak RSS of the process tree must grow far
less than the file (it may grow by the global stages' partials, ~50 B/row for exact_dedup).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.reliability._util import ROOT


def _bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_memory", ROOT / "bench" / "memory.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_peak_rss_does_not_follow_the_file_size(tmp_path: Path) -> None:
    bench = _bench()
    stages = [{"exact_dedup": {}}, {"length": {}}, {"quality": {}}]
    peaks = {}
    for mb in (50, 200):
        data = tmp_path / f"{mb}.jsonl"
        bench.generate(data, mb * 1_000_000)
        peaks[mb] = bench.run(data, tmp_path / f"corpus-{mb}", 2, 1000, stages)
        data.unlink()
    small, big = peaks[50]["peak_total"], peaks[200]["peak_total"]
    assert big < 2.0 * small, f"peak RSS {small / 1e6:.0f} MB → {big / 1e6:.0f} MB for 4x the file"
    # workers hold a few batches, whatever the file size
    assert peaks[200]["peak_worker"] < 1.3 * peaks[50]["peak_worker"] + 50e6
