"""How fast and how exact is `minhash_dedup`, against datasketch and rensa? (issue targets)

Builds N instruction-like rows (default 100,000; `--rows N`): 50–300 made-up lowercase words
drawn from a Zipf vocabulary (seeded), 5% exact copies and 10% near copies (5–15% of the words
substituted, inserted or deleted) of random originals, shuffled. The text is already what the
stage compares (lowercase ASCII, single spaces, no punctuation), so the exact Jaccard of each
pair is computed on the very shingles winnow uses (`MinHashDedup().hasher.shingles`).

Each method runs in a fresh subprocess (so peak RSS is its own; for winnow it is the sum over
the main process and its workers), on this machine:

- datasketch, naive: one `MinHash.update` per shingle, `hashfunc=winnow.minhash.shingle_hash`
  (the signatures equal winnow's), `MinHashLSH(threshold=0.8, num_perm=128)` insert + query;
- datasketch, bulk: `MinHash.bulk` (`update_batch` per row), same hash and LSH;
- rensa: `RMinHash.from_token_sets` on the same char 5-grams as Python strings, `RMinHashLSH`;
- winnow: `MinHashDedup()` through `LocalEngine` in batches of 10,000, 2 workers and 1.

The datasketch baselines run on a subsample of whole planted groups (their docs/s is measured
there and holds per row); precision and recall of each method count only pairs inside the rows
it saw. `--memory` streams 1,000,000 rows through the stage and prints peak RSS and docs/s.

Run: python bench/dedup.py [--rows N] [--memory]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from winnow import schema
from winnow.engines.local import LocalEngine, read_ipc, write_ipc
from winnow.stages import MinHashDedup

THRESHOLD = 0.8
NUM_PERM = 128
BATCH = 10_000
VOCAB = 50_000
#: rows the datasketch baselines see (whole planted groups; ≈ 15 s a run for the naive one)
SUBSAMPLE = 2_000
#: rensa takes one bands count dividing num_perm: 16 × 8 is the nearest to winnow's 17 × 7
RENSA_BANDS = 16
METRICS = f"""\
Pairs: unordered row pairs (i < j).
  truth      = pairs with exact Jaccard ≥ {THRESHOLD} of the distinct char 5-gram hashes
               (MinHashDedup().hasher.shingles, np.unique per row), among (a) every pair inside a
               planted group (an original and all its copies) and (b) every pair any method
               predicted; a pair neither planted nor predicted counts as dissimilar.
  baselines  = LSH query hits whose estimated Jaccard (signature agreement) is ≥ {THRESHOLD}.
  winnow     = pairs inside one duplicate group: a kept row and the rows removed as its
               duplicates (the stage's `clusters` table, duplicate_of).
  precision  = |predicted ∩ truth| / |predicted|; recall = |predicted ∩ truth| / |truth|, both
               over the pairs whose two rows the method saw (its subsample, or all rows).
  docs/s     = rows / median wall seconds of the method's full work (hashing, LSH, verifying,
               for winnow the whole LocalEngine.run); peak RSS = the highest sampled sum of RSS
               over the method's process and its children (psutil, every 50 ms)."""


# -- the corpus ---------------------------------------------------------------------------------


class Corpus:
    """Rows as word ids (uint16) in a flat array: row r is ``flat[start[r] : start[r] + length[r]]``.

    ``group[r]`` is the original a row is a copy of (itself for an original); ``kind[r]`` is 0
    for an original, 1 for an exact copy, 2 for a near copy. Texts are built per slice of rows,
    so a million rows never live as Python strings at once.
    """

    def __init__(self, rows: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.vocab = _vocabulary(rng)
        blob = " ".join(self.vocab) + " "
        self.blob = np.frombuffer(blob.encode("ascii"), dtype=np.uint8)
        self.wlen = np.array([len(w) + 1 for w in self.vocab], dtype=np.int64)  # with its space
        self.wstart = np.r_[0, np.cumsum(self.wlen)[:-1]]
        ranks = np.arange(1, VOCAB + 1, dtype=np.float64)
        self.cdf = np.cumsum(ranks**-1.07)
        self.cdf /= self.cdf[-1]

        n_exact, n_near = round(0.05 * rows), round(0.10 * rows)
        n_base = rows - n_exact - n_near
        base_len = rng.integers(50, 301, n_base)
        base_flat = self._zipf(rng, int(base_len.sum()))
        base_start = np.r_[0, np.cumsum(base_len)[:-1]]
        exact_src = rng.integers(0, n_base, n_exact)
        near_src = rng.integers(0, n_base, n_near)
        near_flat, near_len = self._edit(rng, base_flat, base_start[near_src], base_len[near_src])
        near_start = len(base_flat) + np.r_[0, np.cumsum(near_len)[:-1]]
        self.flat = np.concatenate([base_flat, near_flat])
        # logical order: originals, exact copies (pointing at their original's words), near copies
        start = np.concatenate([base_start, base_start[exact_src], near_start])
        length = np.concatenate([base_len, base_len[exact_src], near_len])
        group = np.concatenate([np.arange(n_base), exact_src, near_src])
        kind = np.concatenate([np.zeros(n_base, np.int8), np.ones(n_exact, np.int8), np.full(n_near, 2, np.int8)])
        perm = rng.permutation(rows)  # row r of the corpus is logical document perm[r]
        self.start, self.length, self.kind = start[perm], length[perm], kind[perm]
        # a group is named by the row where its original landed
        where = np.empty(rows, np.int64)
        where[perm] = np.arange(rows)
        self.group = where[group[perm]]
        self.rows = rows

    def _zipf(self, rng: np.random.Generator, size: int) -> np.ndarray:
        out = np.empty(size, np.uint16)
        for lo in range(0, size, 1 << 22):
            hi = min(size, lo + (1 << 22))
            out[lo:hi] = np.searchsorted(self.cdf, rng.random(hi - lo))
        return out

    def _edit(
        self, rng: np.random.Generator, flat: np.ndarray, starts: np.ndarray, lengths: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the given rows with round(f × length) words edited, f ~ U[0.05, 0.15]; an
        edit substitutes a word, inserts one before it or deletes it (one in three each)."""
        words = flat[_segments(starts, lengths)].astype(np.int64)
        doc = np.repeat(np.arange(len(lengths)), lengths)
        edits = np.rint(rng.uniform(0.05, 0.15, len(lengths)) * lengths).astype(np.int64)
        order = np.lexsort((rng.random(len(words)), doc))  # a random order of positions per row
        rank = np.empty(len(words), np.int64)
        rank[order] = np.arange(len(words)) - np.repeat(np.r_[0, np.cumsum(lengths)[:-1]], lengths)
        edited = rank < edits[doc]
        op = np.where(edited, rng.integers(0, 3, len(words)), -1)
        new = self._zipf(rng, len(words)).astype(np.int64)
        slots = np.full((len(words), 2), -1, np.int64)  # [inserted word, the word itself]
        slots[:, 0] = np.where(op == 1, new, -1)
        slots[:, 1] = np.where(op == 0, new, np.where(op == 2, -1, words))
        keep = slots.ravel() >= 0
        out = slots.ravel()[keep].astype(np.uint16)
        return out, np.bincount(np.repeat(doc, 2)[keep], minlength=len(lengths))

    def text_array(self, rows: np.ndarray) -> pa.StringArray:
        """The texts of ``rows``: their words joined by single spaces, built as Arrow buffers."""
        tokens = self.flat[_segments(self.start[rows], self.length[rows])]
        wl = self.wlen[tokens]
        data = self.blob[_segments(self.wstart[tokens], wl)]
        row_bytes = np.add.reduceat(wl, np.r_[0, np.cumsum(self.length[rows])[:-1]])
        keep = np.ones(len(data), bool)
        keep[np.cumsum(row_bytes) - 1] = False  # each row's trailing space
        offsets = np.r_[0, np.cumsum(row_bytes - 1)].astype(np.int32)
        return pa.StringArray.from_buffers(len(rows), pa.py_buffer(offsets), pa.py_buffer(data[keep].copy()))

    def texts(self, rows: np.ndarray) -> list[str]:
        return self.text_array(rows).to_pylist()  # type: ignore[no-any-return]

    def table(self, lo: int, hi: int) -> pa.Table:
        """Rows lo..hi as a canonical table: one user turn each, ids ``r0000042``."""
        n = hi - lo
        content = self.text_array(np.arange(lo, hi))
        message = pa.StructArray.from_arrays(
            [pa.array(["user"] * n, pa.string()), content], fields=list(schema.MESSAGE)
        )
        columns = {
            "id": pa.array([f"r{i:07d}" for i in range(lo, hi)], pa.string()),
            "messages": pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32)), message),
            "source": pa.array(["bench"] * n, pa.string()),
            "source_index": pa.array(np.arange(lo, hi, dtype=np.int64)),
            "task_type": pa.nulls(n, pa.string()),
            "lang": pa.nulls(n, pa.string()),
            "meta": pa.array(["{}"] * n, pa.string()),
        }
        return pa.table(columns, schema=schema.SCHEMA)


def _vocabulary(rng: np.random.Generator) -> list[str]:
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", np.uint8)
    seen: dict[str, None] = {}
    while len(seen) < VOCAB:
        for size in rng.integers(2, 11, VOCAB):
            seen.setdefault(bytes(letters[rng.integers(0, 26, size)]).decode(), None)
    return list(seen)[:VOCAB]


def _segments(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Indexes of the concatenation of ``[start, start + length)`` ranges."""
    lengths = np.asarray(lengths, np.int64)
    before = np.r_[0, np.cumsum(lengths)[:-1]]
    return np.repeat(np.asarray(starts, np.int64) - before, lengths) + np.arange(int(lengths.sum()))


def write_batches(corpus: Corpus, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for lo in range(0, corpus.rows, BATCH):
        path = folder / f"{lo // BATCH:06d}.arrow"
        write_ipc(corpus.table(lo, min(corpus.rows, lo + BATCH)), path)
        paths.append(path)
    return paths


def subsample(corpus: Corpus, size: int, seed: int = 1) -> np.ndarray:
    """Rows of randomly chosen whole planted groups (originals alone count as groups of one),
    about ``size`` of them: the corpus's mix of originals and copies, with every copy's original."""
    units, sizes = np.unique(corpus.group, return_counts=True)
    pick = np.random.default_rng(seed).permutation(len(units))
    take = pick[: int(np.searchsorted(np.cumsum(sizes[pick]), size)) + 1]
    return np.flatnonzero(np.isin(corpus.group, units[take]))


# -- measuring one method in its own process ------------------------------------------------------


class PeakRSS:
    """Peak of the summed RSS of this process and all its descendants, sampled in a thread."""

    def __init__(self, interval: float = 0.05) -> None:
        import psutil

        self.proc = psutil.Process()
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> int:
        import psutil

        total = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):  # a worker may end between listing and reading
                total += p.memory_info().rss
        self.peak = max(self.peak, total)
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> PeakRSS:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def _texts(paths: list[Path], rows: np.ndarray | None) -> tuple[np.ndarray, list[str]]:
    """Global row numbers and texts of ``rows`` (all rows if None) from the batch files."""
    index, texts = [], []
    for lo, path in zip(range(0, 1 << 62, BATCH), paths):
        table = read_ipc(path)
        local = np.arange(table.num_rows) if rows is None else rows[(rows >= lo) & (rows < lo + table.num_rows)] - lo
        if len(local):
            content = pc.list_flatten(table.column("messages").combine_chunks()).field("content")
            index.append(local + lo)
            texts.extend(content.take(pa.array(local)).to_pylist())
    return np.concatenate(index), texts


def _shingles(text: str, n: int = 5) -> list[str]:
    return [text[i : i + n] for i in range(max(len(text) - n + 1, 1))]


def _datasketch(texts: list[str], bulk: bool) -> np.ndarray:
    from datasketch import MinHash, MinHashLSH

    from winnow.minhash import shingle_hash

    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    if bulk:
        sketches: list[Any] = []
        for lo in range(0, len(texts), 1000):
            chunk = [_shingles(t) for t in texts[lo : lo + 1000]]
            sketches += MinHash.bulk(chunk, num_perm=NUM_PERM, seed=1, hashfunc=shingle_hash)
    else:
        sketches = []
        for t in texts:
            m = MinHash(num_perm=NUM_PERM, seed=1, hashfunc=shingle_hash)
            for s in _shingles(t):
                m.update(s)
            sketches.append(m)
    for k, m in enumerate(sketches):
        lsh.insert(k, m)
    pairs = [
        (k, c) for k, m in enumerate(sketches) for c in lsh.query(m) if c > k and m.jaccard(sketches[c]) >= THRESHOLD
    ]
    return np.array(pairs, np.int64).reshape(-1, 2)


def _rensa(texts: list[str], timing: dict[str, float]) -> np.ndarray:
    from rensa import RMinHash, RMinHashLSH

    lsh = RMinHashLSH(THRESHOLD, NUM_PERM, RENSA_BANDS)
    sketches = []
    for lo in range(0, len(texts), 2000):
        started = time.perf_counter()
        chunk = [_shingles(t) for t in texts[lo : lo + 2000]]
        timing["shingling"] = timing.get("shingling", 0.0) + time.perf_counter() - started
        objs = RMinHash.from_token_sets(chunk, NUM_PERM, 1)
        lsh.insert_many(objs, start_key=lo)
        sketches += objs
    pairs = []
    for k, hits in enumerate(lsh.query_all(sketches)):
        pairs += [(k, c) for c in hits if c > k and sketches[k].jaccard(sketches[c]) >= THRESHOLD]
    return np.array(pairs, np.int64).reshape(-1, 2)


def _winnow(paths: list[Path], workers: int, work: Path, stream: bool) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Group pairs, kept–removed pairs, engine seconds and ingest seconds of one LocalEngine run
    of MinHashDedup()."""
    empty = schema.empty(schema.REJECTED_SCHEMA)
    if stream:
        batches: Any = ((read_ipc(p), empty) for p in paths)
    else:
        batches = [(read_ipc(p), empty) for p in paths]
    started = time.perf_counter()
    out = LocalEngine(workers=workers, progress=False).run(batches, [MinHashDedup()], work)
    seconds = time.perf_counter() - started
    (path,) = [p for _, _, name, p in out.tables if name == "clusters"]
    clusters = read_ipc(path)
    removed = ~np.array(clusters.column("kept").to_pylist(), bool)
    ids = np.array([int(i[1:]) for i in clusters.column("id").to_pylist()])[removed]
    of = np.array([int(i[1:]) for i in np.array(clusters.column("duplicate_of").to_pylist())[removed]])
    pairs = [np.stack([of, ids], axis=1)]
    direct = np.sort(pairs[0], axis=1)
    order = np.argsort(of, kind="stable")  # removed rows with the same survivor pair up too
    ids, of = ids[order], of[order]
    starts = np.flatnonzero(np.r_[True, of[1:] != of[:-1]]) if len(of) else np.zeros(0, np.int64)
    for s, e in zip(starts, np.r_[starts[1:], len(of)]):
        if e - s > 1:
            i, j = np.triu_indices(e - s, 1)
            pairs.append(np.stack([ids[s:e][i], ids[s:e][j]], axis=1))
    shutil.rmtree(work)
    both = np.sort(np.concatenate(pairs), axis=1)
    return both, direct, seconds, out.stats[0].seconds


def measure(method: str, data: Path, runs: int, out: Path) -> None:
    """Run one method ``runs`` times in this (fresh) process and pickle what it measured."""
    paths = sorted((data / "batches").glob("*.arrow"))
    result: dict[str, Any] = {"method": method, "times": [], "ingest": [], "notes": {}}
    with PeakRSS() as rss:
        if method.startswith("winnow"):
            workers = 1 if method == "winnow-1" else 2
            stream = method == "winnow-stream"
            result["rows"] = None
            for run in range(runs):
                pairs, direct, seconds, ingest = _winnow(paths, workers, data / f"work-{method}-{run}", stream)
                result["direct"] = direct
                result["times"].append(seconds)
                result["ingest"].append(ingest)
        else:
            rows = np.load(data / "subsample.npy") if method.startswith("datasketch") else None
            index, texts = _texts(paths, rows)
            result["rows"] = index
            result["loaded_rss"] = rss.sample()
            for _ in range(runs):
                timing: dict[str, float] = {}
                started = time.perf_counter()
                if method == "rensa":
                    local = _rensa(texts, timing)
                else:
                    local = _datasketch(texts, bulk=method == "datasketch-bulk")
                result["times"].append(time.perf_counter() - started)
                for key, value in timing.items():
                    result["notes"].setdefault(key, []).append(value)
            pairs = index[local]
            if method.startswith("datasketch"):
                result["notes"]["same signatures as winnow"] = _same_signatures(texts[:20])
    result["pairs"] = pairs
    result["peak_rss"] = rss.peak
    result["ru_maxrss"] = (
        max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        * 1024
    )
    with open(out, "wb") as f:
        pickle.dump(result, f)


def _same_signatures(texts: list[str]) -> bool:
    from datasketch import MinHash

    from winnow.minhash import shingle_hash

    ours = MinHashDedup().hasher.signatures(texts)
    for t, sig in zip(texts, ours):
        m = MinHash(num_perm=NUM_PERM, seed=1, hashfunc=shingle_hash)
        m.update_batch(_shingles(t))
        if not (m.hashvalues == sig).all():
            return False
    return True


def spawn(method: str, data: Path, runs: int) -> dict[str, Any]:
    out = data / f"{method}.pkl"
    cmd = [sys.executable, __file__, "--method", method, "--data", str(data), "--runs", str(runs), "--out", str(out)]
    subprocess.run(cmd, check=True)
    with open(out, "rb") as f:
        return pickle.load(f)  # type: ignore[no-any-return]


# -- ground truth and the report ---------------------------------------------------------------


def exact_jaccard(corpus: Corpus, pairs: np.ndarray) -> np.ndarray:
    """Exact Jaccard of the distinct shingle hashes winnow's hasher gives each row."""
    hasher = MinHashDedup().hasher
    needed = np.unique(pairs)
    sets: dict[int, np.ndarray] = {}
    for lo in range(0, len(needed), 5000):
        chunk = needed[lo : lo + 5000]
        rows, hashes = hasher.shingles(corpus.texts(chunk))
        bounds = np.searchsorted(rows, np.arange(len(chunk) + 1))
        for k, r in enumerate(chunk):
            sets[int(r)] = np.unique(hashes[bounds[k] : bounds[k + 1]])
    out = np.empty(len(pairs))
    for k, (i, j) in enumerate(pairs):
        a, b = sets[int(i)], sets[int(j)]
        inter = len(np.intersect1d(a, b, assume_unique=True))
        out[k] = inter / (len(a) + len(b) - inter)
    return out


def planted_pairs(corpus: Corpus) -> np.ndarray:
    order = np.argsort(corpus.group, kind="stable")
    g = corpus.group[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    sizes = np.diff(np.r_[starts, len(g)])
    pairs = []
    for size in np.unique(sizes[sizes > 1]):
        members = order[starts[sizes == size][:, None] + np.arange(size)]
        i, j = np.triu_indices(int(size), 1)
        pairs.append(np.stack([members[:, i].ravel(), members[:, j].ravel()], axis=1))
    return np.sort(np.concatenate(pairs), axis=1)


def _keys(pairs: np.ndarray) -> np.ndarray:
    return np.asarray(pairs[:, 0], np.int64) * (1 << 32) + pairs[:, 1]


def _mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MB"


def header(rows: int) -> None:
    print(
        f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}; "
        f"numpy {np.__version__}, pyarrow {pa.__version__}, datasketch {version('datasketch')}, "
        f"rensa {version('rensa')}, winnow {version('winnow')}"
    )
    print(f"N = {rows:,} rows (5% exact copies, 10% near copies), threshold {THRESHOLD}, {NUM_PERM} permutations")


def main_default(rows: int, seed: int) -> int:
    header(rows)
    print(METRICS)
    with tempfile.TemporaryDirectory(prefix="winnow-bench-") as tmp:
        data = Path(tmp)
        started = time.perf_counter()
        corpus = Corpus(rows, seed)
        write_batches(corpus, data / "batches")
        sub = subsample(corpus, min(SUBSAMPLE, rows))
        np.save(data / "subsample.npy", sub)
        words = corpus.length.mean()
        size = corpus.text_array(np.arange(min(rows, 5000))).nbytes / min(rows, 5000)
        print(
            f"\ncorpus: {rows:,} rows, {words:.0f} words ({size:.0f} bytes) a row on average, generated in "
            f"{time.perf_counter() - started:.1f} s; datasketch subsample: {len(sub):,} rows of whole planted "
            f"groups; load average (1, 5, 15 min): {', '.join(f'{x:.1f}' for x in os.getloadavg())}"
        )
        plan = [
            ("datasketch-naive", "datasketch naive (update per shingle)", 3),
            ("datasketch-bulk", "datasketch bulk (MinHash.bulk)", 3),
            ("rensa", f"rensa RMinHash + RMinHashLSH ({RENSA_BANDS} bands)", 3),
            ("winnow", "winnow minhash_dedup, LocalEngine 2 workers", 3),
            ("winnow-1", "winnow minhash_dedup, LocalEngine 1 worker", 3),
        ]
        results = {}
        for method, _, runs in plan:
            print(f"  running {method} ({runs} runs) ...", flush=True)
            results[method] = spawn(method, data, runs)

        # truth: planted pairs and every predicted pair, judged by exact Jaccard
        planted = planted_pairs(corpus)
        predicted = np.concatenate([planted] + [r["pairs"] for r in results.values()])
        candidates = np.unique(predicted, axis=0)
        jac = exact_jaccard(corpus, candidates)
        cand_keys = _keys(candidates)
        truth_keys = cand_keys[jac >= THRESHOLD]
        in_planted = np.isin(cand_keys, _keys(planted))

        print(
            f"\n{'method':46s} {'rows':>8s} {'runs':>4s} {'median s':>9s} {'docs/s':>9s} {'peak RSS':>10s}"
            f" {'pairs':>7s} {'precision':>9s} {'recall':>7s}"
        )
        speed = {}
        for method, label, runs in plan:
            r = results[method]
            seen = np.arange(rows) if r["rows"] is None else np.sort(r["rows"])
            n_seen = len(seen)
            median = statistics.median(r["times"])
            speed[method] = n_seen / median
            pred = np.unique(_keys(np.sort(r["pairs"], axis=1)))
            truth_here = truth_keys[np.isin(truth_keys // (1 << 32), seen) & np.isin(truth_keys % (1 << 32), seen)]
            hits = np.isin(pred, truth_here).sum()
            precision = hits / len(pred) if len(pred) else float("nan")
            recall = hits / len(truth_here) if len(truth_here) else float("nan")
            r["precision"], r["recall"] = precision, recall
            print(
                f"{label:46s} {n_seen:8,d} {runs:4d} {median:9.2f} {speed[method]:9,.0f} {_mb(r['peak_rss']):>10s}"
                f" {len(pred):7,d} {precision:9.4f} {recall:7.4f}"
            )
        print("\nnotes:")
        for method in ("datasketch-naive", "datasketch-bulk"):
            same = results[method]["notes"]["same signatures as winnow"]
            print(
                f"  {method}: signatures equal winnow's (checked on 20 rows): {same}; docs/s measured on the "
                f"{len(sub):,}-row subsample (the per-row cost does not depend on N)"
            )
        rensa_s = statistics.median(results["rensa"]["times"])
        shingle_s = statistics.median(results["rensa"]["notes"]["shingling"])
        print(
            f"  rensa: of its median {rensa_s:.2f} s, {shingle_s:.2f} s is building the shingle strings in "
            f"Python (rensa takes tokens); sketches + LSH alone: {rows / (rensa_s - shingle_s):,.0f} docs/s; "
            f"LSH {RENSA_BANDS} bands × {NUM_PERM // RENSA_BANDS} rows (datasketch: 9 × 13; winnow: "
            f"{'{} × {}'.format(*MinHashDedup().band_layout())})"
        )
        for method in ("winnow", "winnow-1"):
            r = results[method]
            t, ing = statistics.median(r["times"]), statistics.median(r["ingest"])
            print(
                f"  {method}: LocalEngine.run over in-memory Arrow batches of {BATCH:,} rows: {t:.2f} s, of "
                f"which ingest (writing the batches to the work folder) {ing:.2f} s; ingest-free "
                f"{t - ing:.2f} s = {rows / (t - ing):,.0f} docs/s; peak RSS is main + workers + forkserver"
            )
        for method in ("datasketch-naive", "rensa"):
            print(f"  {method}: RSS with its texts loaded, before hashing: {_mb(results[method]['loaded_rss'])}")
        print(f"  load average (1, 5, 15 min) at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")

        # sanity: pairs nobody planted
        cross = ~in_planted
        max_cross = f"{jac[cross].max():.3f}" if cross.any() else "-"
        planted_true = int((in_planted & (jac >= THRESHOLD)).sum())
        print(
            f"\nground truth: {len(truth_keys):,} pairs with J ≥ {THRESHOLD} ({planted_true:,} planted); "
            f"predicted pairs outside planted groups: {int(cross.sum())}, max exact J among them {max_cross}"
        )
        bins = [0, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0, 1.01]
        counts = np.histogram(jac[in_planted], bins=bins)[0]
        spans = ", ".join(f"[{a:g},{b:g}): {c}" for a, b, c in zip(bins, bins[1:], counts))
        print(f"exact J of planted pairs: {spans}")
        w = results["winnow"]
        wpred = np.unique(_keys(np.sort(w["pairs"], axis=1)))
        direct = np.unique(_keys(w["direct"]))
        far = truth_keys[np.isin(truth_keys, cand_keys[jac >= 0.9])]
        print(
            f"winnow: precision of kept–removed pairs only: {np.isin(direct, truth_keys).mean():.4f} "
            f"({len(direct):,} pairs); recall of pairs with J ≥ 0.9: {np.isin(far, wpred).mean():.4f}; "
            f"share of its pairs with J < 0.75: {np.isin(wpred, cand_keys[jac < 0.75]).mean():.4f}"
        )

        print("\nspeed ratios (docs/s):")
        for method, label, _ in plan:
            if method != "winnow":
                print(f"  winnow (2 workers) / {label}: {speed['winnow'] / speed[method]:,.1f}×")
        checks = [
            (
                f"winnow ≥ 30× datasketch naive ({speed['winnow'] / speed['datasketch-naive']:,.0f}×)",
                speed["winnow"] >= 30 * speed["datasketch-naive"],
            ),
            (f"winnow faster than rensa ({speed['winnow'] / speed['rensa']:.2f}×)", speed["winnow"] > speed["rensa"]),
            (f"winnow precision ≥ 0.99 at {THRESHOLD} ({w['precision']:.4f})", w["precision"] >= 0.99),
            (f"winnow recall ≥ 0.95 at {THRESHOLD} ({w['recall']:.4f})", w["recall"] >= 0.95),
        ]
        print()
        for text, ok in checks:
            print(f"{'PASS' if ok else 'FAIL'}: {text}")
    return 0


def main_memory(rows: int, seed: int) -> int:
    header(rows)
    print(
        f"--memory: {rows:,} rows generated to Arrow files first, then streamed batch by batch "
        f"({BATCH:,} rows) into LocalEngine(workers=2) with MinHashDedup(); one run"
    )
    with tempfile.TemporaryDirectory(prefix="winnow-bench-") as tmp:
        data = Path(tmp)
        started = time.perf_counter()
        corpus = Corpus(rows, seed)
        write_batches(corpus, data / "batches")
        del corpus
        print(f"corpus generated and written in {time.perf_counter() - started:.1f} s", flush=True)
        r = spawn("winnow-stream", data, 1)
        t, ing = r["times"][0], r["ingest"][0]
        print(
            f"\nLocalEngine.run: {t:.1f} s = {rows / t:,.0f} docs/s (ingest, reading and writing the batches: "
            f"{ing:.1f} s; without it {rows / (t - ing):,.0f} docs/s)"
        )
        print(
            f"peak RSS, main + workers (+ forkserver), sampled: {_mb(r['peak_rss'])}; "
            f"largest single process (ru_maxrss): {_mb(r['ru_maxrss'])}"
        )
        print(f"near-duplicate pairs found: {len(r['pairs']):,}")
        ok = r["peak_rss"] < 4 * 2**30
        print(f"\n{'PASS' if ok else 'FAIL'}: peak RSS under 4 GB at {rows:,} rows ({_mb(r['peak_rss'])})")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=None, help="rows (default 100,000; 1,000,000 with --memory)")
    parser.add_argument("--memory", action="store_true", help="peak RSS of 1M rows through the stage")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=3, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.method:
        measure(args.method, args.data, args.runs, args.out)
        return 0
    if args.memory:
        return main_memory(args.rows or 1_000_000, args.seed)
    return main_default(args.rows or 100_000, args.seed)


if __name__ == "__main__":
    sys.exit(main())
