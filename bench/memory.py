"""Peak memory of a big run: RSS must follow the batch size, not the file size.

    python bench/memory.py                 # a 300 MB JSONL (default), exact_dedup + length + quality
    python bench/memory.py --mb 50 --mb 200  # several sizes: the ratio of peaks is what matters
    python bench/memory.py --gb 5          # the full check (needs ~3x the size free in --dir)

Generates Alpaca-style JSONL (1 in 7 rows an exact duplicate), runs ``python -m winnow run`` on
it in a subprocess and samples the RSS of the main process and of every worker (psutil, every
50 ms). Prints rows/s, peak RSS of the main process, of the largest worker and of the whole
tree, against the file size. Then measures the global stages' partials: bytes per row of what
``summarize`` returns (what travels to the main process and is held for ``combine``) and of the
combined state, for exact_dedup and minhash_dedup — the only per-row memory a run keeps.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
WORDS = (
    "the a data model answer question river mountain capital city number prime write explain summarize list "
    "three apple banana cherry reason because therefore python code function loop value table row"
).split()


def generate(path: Path, size: int, seed: int = 0) -> int:
    """Write about ``size`` bytes of JSONL; returns the row count."""
    rng = random.Random(seed)
    rows = written = 0
    prev = ""
    with open(path, "w") as f:
        while written < size:
            chunk = []
            for _ in range(1000):
                if prev and rows % 7 == 0:
                    line = prev
                else:
                    n = rng.randint(5, 120)
                    line = (
                        json.dumps(
                            {
                                "instruction": " ".join(rng.choices(WORDS, k=8)) + f" #{rows}",
                                "input": "",
                                "output": " ".join(rng.choices(WORDS, k=n)) + ".",
                            }
                        )
                        + "\n"
                    )
                    prev = line
                chunk.append(line)
                rows += 1
            text = "".join(chunk)
            f.write(text)
            written += len(text)
    return rows


def run(data: Path, out: Path, workers: int, batch_size: int, stages: list[dict]) -> dict:
    pipeline = out.parent / "memory.yaml"
    pipeline.write_text(
        json.dumps(
            {
                "name": "memory",
                "inputs": [{"path": str(data)}],
                "stages": stages,
                "output": str(out),
                "split": {"validation": 0.02},
            }
        )
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    started = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "winnow",
            "run",
            str(pipeline),
            "--no-progress",
            "--force",
            "--workers",
            str(workers),
            "--batch-size",
            str(batch_size),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    main = psutil.Process(proc.pid)
    peak_main = peak_worker = peak_total = 0
    while proc.poll() is None:
        try:
            rss_main = main.memory_info().rss
            kids = []
            for c in main.children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    kids.append(c.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        peak_main = max(peak_main, rss_main)
        peak_worker = max([peak_worker, *kids])
        peak_total = max(peak_total, rss_main + sum(kids))
        time.sleep(0.05)
    _stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"winnow run failed ({proc.returncode}):\n{stderr[-3000:]}")
    return {"seconds": seconds, "peak_main": peak_main, "peak_worker": peak_worker, "peak_total": peak_total}


def partial_sizes(rows: int) -> None:
    """Bytes per row of the global stages' partials and combined state."""
    import pyarrow as pa

    from winnow import schema
    from winnow.stages import from_config

    rng = random.Random(1)
    # distinct texts over a 20,000-word vocabulary, as unrelated real rows are: with the 30 words
    # of `generate`, MinHash would find ~20 candidate pairs per row, each costing ~60 B in combine
    vocabulary = [f"{w}{n}" for n in range(700) for w in WORDS]
    records = [
        {
            "id": f"{i:016x}",
            "source": "bench",
            "source_index": i,
            "meta": "{}",
            "messages": [
                {"role": "user", "content": " ".join(rng.choices(vocabulary, k=8)) + f" {i}"},
                {"role": "assistant", "content": " ".join(rng.choices(vocabulary, k=40))},
            ],
        }
        for i in range(rows)
    ]
    table = schema.make_table(records)
    table = table.append_column(schema.ORDER, pa.array(range(rows), pa.int64()))
    print(f"\nglobal stages, {rows:,} rows in batches of 10,000: partials and state per row")
    for config in ({"exact_dedup": {}}, {"minhash_dedup": {}}):
        stage = from_config(config)
        stage.setup()
        partials = [stage.summarize(table.slice(i, 10_000)) for i in range(0, rows, 10_000)]
        size = sum(len(pickle.dumps(p, protocol=pickle.HIGHEST_PROTOCOL)) for p in partials)
        with _peak_rss() as peak:
            combined = stage.combine(partials)
        state = getattr(combined, "state", combined)
        state_size = len(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
        print(
            f"  {stage.name:14s} partials {size / rows:7.1f} B/row ({size / rows:.0f} MB per million rows), "
            f"combine adds {peak.grew / rows:7.1f} B/row at its peak, state {state_size / rows:7.1f} B/row"
        )


@contextlib.contextmanager
def _peak_rss(every: float = 0.002) -> Any:
    """How far this process's RSS rose above where it started, sampled while the block runs."""
    import threading
    from types import SimpleNamespace

    me = psutil.Process()
    start = me.memory_info().rss
    result = SimpleNamespace(grew=0)
    done = threading.Event()

    def sample() -> None:
        while not done.wait(every):
            result.grew = max(result.grew, me.memory_info().rss - start)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        done.set()
        thread.join()
        result.grew = max(result.grew, me.memory_info().rss - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, action="append", help="file size in MB (repeatable); default 300")
    ap.add_argument("--gb", type=float, help="file size in GB (the full check: --gb 5)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument(
        "--dir", type=Path, default=None, help="where to write the data and the corpus (default: a temp dir)"
    )
    ap.add_argument("--partial-rows", type=int, default=200_000, help="rows for the partial-size measurement (0: skip)")
    ap.add_argument(
        "--row-stages-only", action="store_true", help="length + quality only: no global stage, so no per-row state"
    )
    args = ap.parse_args()
    sizes = [args.gb * 1e9] if args.gb else [m * 1e6 for m in (args.mb or [300])]
    stages = [{"length": {}}, {"quality": {}}]
    if not args.row_stages_only:
        stages.insert(0, {"exact_dedup": {}})
    workdir = Path(tempfile.mkdtemp(prefix="winnow-memory-", dir=args.dir))
    try:
        free = shutil.disk_usage(workdir).free
        if free < 3 * max(sizes):
            raise SystemExit(f"{workdir}: {free / 1e9:.1f} GB free; need about {3 * max(sizes) / 1e9:.1f} GB")
        print(
            f"winnow run, {args.workers} workers, batch size {args.batch_size}, stages: "
            f"{', '.join(next(iter(s)) for s in stages)}"
        )
        print(
            f"{'file':>10} {'rows':>11} {'rows/s':>9} {'main peak':>10} {'worker peak':>12} {'tree peak':>10} "
            f"{'tree/file':>10}"
        )
        results = []
        for size in sizes:
            data = workdir / f"data-{int(size)}.jsonl"
            rows = generate(data, int(size))
            r = run(data, workdir / "corpus", args.workers, args.batch_size, stages)
            fsize = data.stat().st_size
            results.append(r["peak_total"])
            print(
                f"{fsize / 1e6:8.0f}MB {rows:11,} {rows / r['seconds']:9,.0f} {r['peak_main'] / 1e6:8.0f}MB "
                f"{r['peak_worker'] / 1e6:10.0f}MB {r['peak_total'] / 1e6:8.0f}MB {r['peak_total'] / fsize:10.2f}"
            )
            data.unlink()
            shutil.rmtree(workdir / "corpus", ignore_errors=True)
        if len(results) > 1:
            print(f"peak RSS grew {results[-1] / results[0]:.2f}x for {sizes[-1] / sizes[0]:.1f}x the file")
        if args.partial_rows:
            partial_sizes(args.partial_rows)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
