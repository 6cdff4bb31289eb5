"""Which shingles find mildly edited copies of real instruction rows? (justifies the defaults)

Takes English rows from ../shared/data (Alpaca, Dolly, self-instruct), makes one mildly edited
copy of each (case, spacing, punctuation, 1–3 typos, a polite prefix: two or three edits per
copy, seeded), and runs `minhash_dedup` with each shingling at threshold 0.8. Prints, per
configuration and per compared text (`instruction`, `conversation`): recall (copies found as
duplicates of their original), the pairs among the untouched originals that were called
duplicates (read them: some are real duplicates), and docs/s. Run: python bench/dedup_recall.py
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from pathlib import Path

import pyarrow as pa

from winnow import schema
from winnow.formats import InputSpec, open_input
from winnow.stages import MinHashDedup

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FILES = [
    "llamafactory/alpaca_en_demo.json",
    "dolly/dolly_15k_head.jsonl",
    "self_instruct/seed_tasks.jsonl",
    "self_instruct/user_oriented_instructions.jsonl",
]
PREFIXES = ["Please ", "Could you please ", "Hey, ", "I need help: ", "Kindly "]


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


def main() -> int:
    if not DATA.is_dir():
        print("../shared/data is absent: nothing to measure")
        return 0
    table, n = with_copies(rows())
    configs = [("char", 3), ("char", 4), ("char", 5), ("word", 1), ("word", 2), ("word", 3), ("word", 5)]
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
