"""Which shingles find mildly edited copies of real instruction rows? (justifies the defaults)

Takes English rows from ../shared/data (Alpaca, Dolly, self-instruct), makes one mildly edited
copy of each (case, spacing, punctuation, 1–3 typos, a polite prefix: two or three edits per
copy, seeded), and runs `minhash_dedup` with each shingling at threshold 0.8. Prints, per
configuration and per compared text (`instruction`, `conversation`): recall (copies found as
duplicates of their original), the pairs among the untouched originals that were called
duplicates (read them: some are real duplicates), and docs/s.

Then, on the same rows and the same copies, the anchors of DESIGN.md §8 next to winnow's defaults,
each with its published recall beside our measurement of it (so the edit set's comparability
shows, as well as who wins on it):

- datatrove's default MinHash, emulated with winnow's vectorized functions: lowercase, Unicode
  punctuation (categories P*) replaced by spaces, word 5-grams, 14 bands × 8 rows, no
  verification — two rows sharing a bucket are duplicates.
- datasketch itself: ``MinHash`` (128 permutations) of the raw word 5-grams (whitespace split, no
  normalization) in a ``MinHashLSH(threshold=0.8)``; each copy is queried, a hit on its original
  is found.
- char 5-grams of the lowercased text (no punctuation stripping), datasketch's optimal bands for
  0.8 (weights 0.5/0.5), pairs verified on the signature (estimate ≥ 0.8).
- text-dedup's defaults (``python -m text_dedup.minhash``: ``--ngram 5 --min_length 5
  --num_perm 256 --threshold 0.7``, optimal bands with weights 0.5/0.5, no verification):
  tokens are ``re.split(r"\\W", text.lower())`` — every non-word character splits, so empty
  tokens count — and a text of fewer than 5 tokens has no n-grams: the newer text-dedup filters
  such rows out of deduplication and we do the same (its older CLI gave them all one constant
  signature, i.e. called every short text a duplicate of every other).

A text of fewer words than the n-gram (except for text-dedup) is one shingle, as in winnow. For
each method: recall (copies found as duplicates of their own original) and the pairs of untouched
originals it calls duplicates — split into identical compared texts, texts equal up to case and
whitespace, and distinct texts (a few of which are printed). For winnow the pairs are its
removals (an original removed as the duplicate of another original); for the anchors, every
pair that shares a bucket (or passes their verification). Run: python bench/dedup_recall.py
"""

from __future__ import annotations

import random
import re
import statistics
import sys
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa

from winnow import minhash, schema, text
from winnow.formats import InputSpec, open_input
from winnow.stages import MinHashDedup
from winnow.stages.dedup import Target

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FILES = [
    "llamafactory/alpaca_en_demo.json",
    "dolly/dolly_15k_head.jsonl",
    "self_instruct/seed_tasks.jsonl",
    "self_instruct/user_oriented_instructions.jsonl",
]
PREFIXES = ["Please ", "Could you please ", "Hey, ", "I need help: ", "Kindly "]
#: Published recall of each anchor on mildly edited instruction rows (DESIGN.md §8).
PUBLISHED = {
    "datatrove default": 0.975,
    "datasketch raw word5": 0.58,
    "char5 lowercased": 0.875,
    "text-dedup defaults": 0.70,
}


def typo(word: str, rng: random.Random) -> str:
    if len(word) < 3:
        return word
    i = rng.randrange(len(word) - 1)
    kind = rng.randrange(3)
    if kind == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]  # swap
    if kind == 1:
        return word[:i] + word[i + 1 :]  # drop
    return word[:i] + rng.choice("aeiourstn") + word[i:]  # insert


def edit(text: str, rng: random.Random) -> str:
    for kind in rng.sample(["case", "space", "punct", "typo", "prefix"], rng.choice([2, 3])):
        words = text.split(" ")
        if kind == "case":
            text = text.lower() if rng.random() < 0.5 else text[:1].swapcase() + text[1:]
        elif kind == "space":
            i = rng.randrange(len(words))
            words[i] = words[i] + " "
            text = " ".join(words) + rng.choice(["", " ", "\n"])
        elif kind == "punct":
            text = text.rstrip(".?!") if text[-1:] in ".?!" else text + rng.choice([".", "?", "!"])
        elif kind == "typo":
            for _ in range(rng.choice([1, 2, 3])):
                i = rng.randrange(len(words))
                words[i] = typo(words[i], rng)
            text = " ".join(words)
        else:
            text = rng.choice(PREFIXES) + text[:1].lower() + text[1:]
    return text


def rows() -> pa.Table:
    tables = [open_input(InputSpec(path=str(DATA / f))).to_table() for f in FILES]
    return pa.concat_tables(tables)


def with_copies(t: pa.Table, seed: int = 0) -> tuple[pa.Table, int]:
    rng = random.Random(seed)
    records = schema.canonical(t).to_pylist()
    copies = []
    for r in records:
        msgs = [dict(m) for m in r["messages"]]
        user = next(m for m in msgs if m["role"] == "user")
        user["content"] = edit(user["content"], rng)
        copies.append({**r, "messages": msgs, "source": "copy"})
    out = schema.make_table(records + copies)
    out = out.set_column(0, "id", pa.array([f"{i}" for i in range(out.num_rows)]))
    return out.append_column(schema.ORDER, pa.array(range(out.num_rows), pa.int64())), len(records)


@dataclass
class Measured:
    """One method on one compared text: copies found, and the pairs of originals it joined."""

    method: str
    found: int
    pairs: list[tuple[int, int]] = field(default_factory=list)
    seconds: float = 0.0


def compared(table: pa.Table, on: str) -> list[str]:
    """The raw (un-normalized) compared text, turns joined by a space as the stage joins them."""
    return text.role_text(table.column("messages"), text.TARGETS[on], sep=" ").to_pylist()  # type: ignore[no-any-return]


def lsh_pairs(sig: np.ndarray, bands: int, rows: int, verify: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (i < j) sharing a bucket in some band (no bucket is too big to enumerate),
    kept only if its signature estimate is at least ``verify`` when that is given."""
    valid = ~(sig == minhash.MASK32).all(axis=1)
    keys = minhash.band_keys(sig, bands, rows)
    i, j = minhash.candidate_pairs(keys, valid, full_bucket=len(sig) + 1)
    if verify is not None:
        keep = minhash.similarity(sig, i, j) >= verify
        i, j = i[keep], j[keep]
    return i, j


def from_pairs(method: str, i: np.ndarray, j: np.ndarray, n: int) -> Measured:
    found = int(np.count_nonzero((i < n) & (j - i == n)))
    among = (i < n) & (j < n)
    return Measured(method, found, list(zip(i[among].tolist(), j[among].tolist())))


def datatrove_like(texts: list[str], n: int) -> Measured:
    punct = {ord(c): " " for c in set("".join(texts)) if unicodedata.category(c).startswith("P")}
    prepared = [t.lower().translate(punct) for t in texts]
    sig = minhash.MinHasher(num_perm=112, shingle="word", ngram=5).signatures(prepared)
    return from_pairs("datatrove default", *lsh_pairs(sig, 14, 8), n)


def datasketch_raw(texts: list[str], n: int) -> Measured:
    from datasketch import MinHash, MinHashLSH

    def shingles(t: str) -> list[bytes]:
        words = t.split()
        return [" ".join(words[k : k + 5]).encode() for k in range(max(len(words) - 4, 1))] if words else []

    sets = [shingles(t) for t in texts]
    sketches = MinHash.bulk(sets, num_perm=128)
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    for k in range(n):
        if sets[k]:
            lsh.insert(k, sketches[k])
    found = sum(1 for k in range(n) if sets[k + n] and k in lsh.query(sketches[k + n]))
    pairs = {(min(k, h), max(k, h)) for k in range(n) if sets[k] for h in lsh.query(sketches[k]) if h != k}
    return Measured("datasketch raw word5", found, sorted(pairs))


def char5_lowercased(texts: list[str], n: int) -> Measured:
    sig = minhash.MinHasher(num_perm=128, shingle="char", ngram=5).signatures([t.lower() for t in texts])
    return from_pairs("char5 lowercased", *lsh_pairs(sig, *minhash.lsh_bands(0.8, 128), verify=0.8), n)


def text_dedup_defaults(texts: list[str], n: int) -> Measured:
    def prepared(t: str) -> str:
        tokens = re.split(r"\W", t.lower())
        return " ".join(tok or "\x01" for tok in tokens) if len(tokens) >= 5 else ""  # \x01: an empty token

    sig = minhash.MinHasher(num_perm=256, shingle="word", ngram=5).signatures([prepared(t) for t in texts])
    return from_pairs("text-dedup defaults", *lsh_pairs(sig, *minhash.lsh_bands(0.7, 256)), n)


def winnow_defaults(table: pa.Table, on: Target, n: int) -> Measured:
    out = MinHashDedup(on=on, keep="first").run(table)
    removed = [int(i) for i in out.rejected.column("id").to_pylist()]
    survivors = [int(r.split()[2]) for r in out.rejected.column("reason").to_pylist()]
    found = sum(1 for i, s in zip(removed, survivors) if i >= n and s == i - n)
    pairs = sorted((min(i, s), max(i, s)) for i, s in zip(removed, survivors) if i < n and s < n)
    return Measured("winnow defaults", found, pairs)


def kinds(pairs: list[tuple[int, int]], texts: list[str]) -> tuple[int, int, list[tuple[int, int]]]:
    """Pairs with identical texts, pairs equal up to case and whitespace, and distinct pairs."""
    identical = sum(1 for a, b in pairs if texts[a] == texts[b])
    loose = [" ".join(t.lower().split()) for t in texts]
    distinct = [(a, b) for a, b in pairs if loose[a] != loose[b]]
    return identical, len(pairs) - identical - len(distinct), distinct


def dropped(pairs: list[tuple[int, int]]) -> int:
    """Originals a keep-one-per-cluster dedup drops: per connected component, all but one."""
    parent: dict[int, int] = {}

    def root(x: int) -> int:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for a, b in pairs:
        parent[root(a)] = root(b)
    return len(parent) - len({root(x) for x in parent})


def clip(t: str, width: int = 72) -> str:
    t = " ".join(t.split())
    return t if len(t) <= width else t[: width - 1] + "…"


def compare_anchors(table: pa.Table, n: int) -> None:
    anchors: list[Callable[[list[str], int], Measured]] = [
        datatrove_like,
        datasketch_raw,
        char5_lowercased,
        text_dedup_defaults,
    ]
    print(f"\nAnchors (DESIGN.md §8) on the same {n} rows and copies; published recall beside ours")
    header = f"{'on':13s} {'method':21s} {'published':>9s} {'recall':>7s} {'pairs':>6s} {'identical':>9s}"
    print(f"{header} {'case/space':>10s} {'distinct':>8s} {'dropped':>7s} {'s':>6s}")
    examples: list[str] = []
    sources = ["/".join(Path(str(s)).parts[-2:]) for s in table.column("source").to_pylist()]
    for on in ("instruction", "conversation"):
        texts = compared(table, on)

        def show(row: int, texts: list[str] = texts) -> str:
            return f"[{row}, {sources[row]}] {clip(texts[row])!r}"

        results = []
        for method in [*anchors, None]:
            started = time.perf_counter()
            m = winnow_defaults(table, on, n) if method is None else method(texts, n)
            m.seconds = time.perf_counter() - started
            results.append(m)
        for m in results:
            identical, loose, distinct = kinds(m.pairs, texts)
            published = PUBLISHED.get(m.method)
            shown = f"{published:9.3f}" if published is not None else f"{'—':>9s}"
            row = f"{on:13s} {m.method:21s} {shown} {m.found / n:7.3f} {len(m.pairs):6d} {identical:9d}"
            print(f"{row} {loose:10d} {len(distinct):8d} {dropped(m.pairs):7d} {m.seconds:6.2f}")
            for a, b in distinct[:2]:
                examples.append(f"  {on} / {m.method} (distinct): {show(a)}\n{'':6s}≈ {show(b)}")
        if not any(f"  {on} / " in e for e in examples):  # no distinct pair: show what was joined
            every = sorted({p for m in results for p in m.pairs})
            for a, b in every[:3]:
                kind = "identical" if texts[a] == texts[b] else "case/space"
                examples.append(f"  {on} / every method ({kind}): {show(a)}\n{'':6s}≈ {show(b)}")
    print(
        "\npairs: pairs of untouched originals called duplicates (winnow: its removals, one pair each);"
        " identical / case/space / distinct: their compared texts;\ndropped: originals that keeping"
        " one row per connected component of those pairs drops; s: seconds for both halves"
    )
    if examples:
        print("A few of the pairs among originals (distinct ones first, up to two per method):")
        print("\n".join(examples))


def main() -> int:
    if not DATA.is_dir():
        print("../shared/data is absent: nothing to measure")
        return 0
    table, n = with_copies(rows())
    configs: list[tuple[Literal["char", "word"], int]] = [
        *[("char", k) for k in (3, 4, 5)],
        *[("word", k) for k in (1, 2, 3, 5)],
    ]
    print(f"{n} real rows + {n} edited copies; threshold 0.8, 128 permutations\n")
    print(f"{'on':13s} {'shingle':8s} {'recall':>7s} {'pairs among originals':>22s} {'docs/s':>8s}")
    for on in ("instruction", "conversation"):
        for shingle, ngram in configs:
            stage = MinHashDedup(on=on, shingle=shingle, ngram=ngram, keep="first")
            times = []
            for _ in range(3):
                started = time.perf_counter()
                out = stage.run(table)
                times.append(time.perf_counter() - started)
            removed = out.rejected.column("id").to_pylist()
            why = out.rejected.column("reason").to_pylist()
            found = sum(1 for i, r in zip(removed, why) if int(i) >= n and r.split()[2] == str(int(i) - n))
            among = sum(1 for i in removed if int(i) < n)
            speed = 2 * n / statistics.median(times)
            print(f"{on:13s} {shingle} {ngram:<3d}  {found / n:7.3f} {among:22d} {speed:8.0f}")
    compare_anchors(table, n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
