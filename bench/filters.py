"""Rows per second of each filter stage, and of the whole filter chain, against langdetect alone.

50,000 real-like rows: the real files in ../shared/data (or sample_data/ where it is absent),
drawn with replacement and seeded, so the mix of languages, lengths, code, tool calls and
Chinese is the mix users have. Each stage runs in this process on batches of 1,000 rows (its
per-row cost); the chain runs through `winnow.Pipeline` with 2 workers (what a user gets). The
baseline is `langdetect.detect` on each row's response, measured in the same run.

Run: python bench/filters.py [--rows 50000]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import pyarrow as pa

import winnow as wn
from winnow import schema, text
from winnow.formats import InputSpec, open_input

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
BATCH = 1000


def real_like_rows(n: int, seed: int = 0) -> pa.Table:
    folder = SHARED if SHARED.is_dir() else ROOT / "sample_data"
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".json", ".jsonl", ".csv"))
    pool = pa.concat_tables([schema.canonical(open_input(InputSpec(path=str(f))).to_table()) for f in files])
    import numpy as np

    picks = np.random.default_rng(seed).integers(0, pool.num_rows, n)
    rows = pool.take(pa.array(picks))
    ids = pa.array([f"{i:08d}" for i in range(n)])  # fresh ids: the draws repeat rows
    rows = rows.set_column(rows.column_names.index("id"), "id", ids)
    return rows.append_column(schema.ORDER, pa.array(range(n), pa.int64()))


def time_stage(stage: wn.stages.Stage, rows: pa.Table, runs: int = 3) -> float:
    """Median seconds for the stage over all rows, batch by batch, in this process."""
    stage.setup()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        for lo in range(0, rows.num_rows, BATCH):
            stage.process(rows.slice(lo, BATCH))  # type: ignore[attr-defined]
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=50_000)
    args = ap.parse_args()
    rows = real_like_rows(args.rows)
    print(f"{rows.num_rows:,} real-like rows from {SHARED if SHARED.is_dir() else 'sample_data'}; batches of {BATCH}")

    from langdetect import DetectorFactory, LangDetectException, detect

    DetectorFactory.seed = 0
    responses = text.role_text(rows.column("messages"), ["assistant"]).to_pylist()
    sample = responses[:5000]  # langdetect is slow: time a slice, report per row
    started = time.perf_counter()
    for r in sample:
        with contextlib.suppress(LangDetectException):
            detect(r)
    base = len(sample) / (time.perf_counter() - started)
    print(f"\nbaseline: langdetect.detect on the response alone: {base:,.0f} rows/s (on {len(sample):,} rows)\n")

    stages = {
        "language (langdetect)": wn.stages.LanguageFilter(),
        "language (py3langid)": wn.stages.LanguageFilter(backend="py3langid"),
        "length": wn.stages.LengthFilter(),
        "quality": wn.stages.QualityFilter(),
        "refusal": wn.stages.RefusalFilter(),
        "pii (redact)": wn.stages.PiiFilter(),
        "regex": wn.stages.RegexFilter(pattern=r"https?://\S+", label="urls"),
        "expression": wn.stages.ExpressionFilter(keep="len(response) > 0 and turns < 20"),
    }
    print(f"{'stage':24s} {'rows/s':>10s} {'× langdetect':>13s}")
    for name, stage in stages.items():
        try:
            seconds = time_stage(stage, rows, runs=1 if "langdetect" in name else 3)
        except ImportError as e:  # an optional backend that is not installed
            print(f"{name:24s} {'—':>10s}   ({e})")
            continue
        speed = rows.num_rows / seconds
        print(f"{name:24s} {speed:10,.0f} {speed / base:12.1f}×")

    chain = [
        wn.stages.LengthFilter(),
        wn.stages.QualityFilter(),
        wn.stages.RefusalFilter(),
        wn.stages.PiiFilter(),
        wn.stages.LanguageFilter(),
    ]
    pipeline = wn.Pipeline(stages=chain)
    canonical = schema.canonical(rows)
    times = []
    for _ in range(2):
        started = time.perf_counter()
        pipeline.run(canonical, output=None, workers=2, progress=False)
        times.append(time.perf_counter() - started)
    speed = rows.num_rows / statistics.median(times)
    print("\nwhole chain (length → quality → refusal → pii → language), Pipeline with 2 workers, ingest included:")
    print(f"{'chain':24s} {speed:10,.0f} {speed / base:12.1f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
