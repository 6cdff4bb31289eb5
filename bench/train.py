"""How much does packing buy `winnow train`? Trained tokens per second on CPU, tiny model.

Builds a corpus from the bundled sample_data/ (340 rows in five formats, no stages, 10%
validation), then trains `--model tiny` (2-layer Llama, hidden 128, BPE vocab 2048) for
`--steps` optimizer steps of `--batch-size` sequences with `--max-len` 512, with and without
`--packing`, `--runs` times each, alternating, and prints the medians:

- trained tokens/s: assistant tokens (the ones with a loss) per second of the training loop
  (setup, evaluation and saving excluded) — the number that matters for SFT;
- tokens/s: all real (non-padding) tokens per second;
- trained/real: the share of real tokens that are trained (the same with and without packing:
  packing changes what is computed, not what is learned from);
- trained/slots: the share of computed positions (batch × padded length) that are trained — what
  packing improves by filling the padding with other rows.

The ratio packed/unpacked of trained tokens/s is the baseline comparison. Note that a packed
micro-batch holds more rows than an unpacked one (bins of up to max_len tokens, not single rows),
so the same number of steps covers more data.

Run: python bench/train.py [--steps 15] [--runs 3] [--batch-size 8] [--max-len 512]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import winnow as wn  # noqa: E402
from winnow.training import TrainResult, train  # noqa: E402


def slots(result: TrainResult, packing: bool, max_len: int, batch_size: int, steps: int) -> float:
    """Trained tokens / computed positions over the micro-batches the run saw (same seed, order)."""
    from winnow.corpus import Corpus
    from winnow.training import data as D
    from winnow.training.model import template_for

    tokenizer = result.tokenizer
    table = Corpus(result.run["corpus"]["path"]).load(split="train", format="arrow")
    examples, _ = D.Encoder(tokenizer, template_for(None, tokenizer), max_len).encode_table(table)
    batches = D.micro_batches(D.make_units(examples, max_len, packing), batch_size, seed=0)
    trained = computed = 0
    for _ in range(steps):
        _, unit = next(batches)
        b = D.collate(unit, tokenizer.pad_token_id, packing)
        trained += int((b["labels"][:, 1:] != D.IGNORE).sum())
        computed += b["input_ids"].numel()
    return trained / computed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-len", type=int, default=512)
    args = ap.parse_args()

    import torch

    work = Path(tempfile.mkdtemp(prefix="winnow-bench-train-"))
    inputs = [str(p) for p in sorted((ROOT / "sample_data").iterdir()) if p.suffix in (".jsonl", ".json", ".csv")]
    wn.Pipeline(inputs=inputs, stages=[], output=work / "corpus", split={"validation": 0.1}).run(progress=False)
    print(
        f"machine: {os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads); "
        f"tiny model, {args.steps} steps × batch {args.batch_size}, max_len {args.max_len}, {args.runs} runs each"
    )
    results: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for i in range(args.runs):
        for packing in (False, True):
            t0 = time.perf_counter()
            r = train(
                work / "corpus",
                model="tiny",
                output=work / f"run-{packing}-{i}",
                steps=args.steps,
                max_len=args.max_len,
                batch_size=args.batch_size,
                packing=packing,
                eval_every=0,
                max_eval_rows=1,
                progress=False,
            )
            res = r.run["results"]
            c = r.counts["train"]
            row = {
                "trained_tok_s": res["trained_tokens_per_second"],
                "tok_s": res["tokens_per_second"],
                "trained_real": res["trained_tokens"] / res["tokens"],
                "trained_slots": slots(r, packing, args.max_len, args.batch_size, args.steps),
                "rows_per_step": args.batch_size * c["used"] / (r.run["packing"]["sequences"] or c["used"]),
                "wall": time.perf_counter() - t0,
            }
            results[packing].append(row)
            print(
                f"  run {i + 1} {'packed  ' if packing else 'unpacked'}: {row['trained_tok_s']:8,.0f} trained tok/s, "
                f"{row['tok_s']:8,.0f} tok/s, trained/real {row['trained_real']:.3f}, "
                f"trained/slots {row['trained_slots']:.3f} ({row['wall']:.1f} s with setup)",
                flush=True,
            )

    def med(packing: bool, key: str) -> float:
        return statistics.median(r[key] for r in results[packing])

    print()
    print(f"{'':10} {'trained tok/s':>14} {'tok/s':>10} {'trained/real':>13} {'trained/slots':>14} {'rows/step':>10}")
    for packing in (False, True):
        print(
            f"{'packed' if packing else 'unpacked':10} {med(packing, 'trained_tok_s'):14,.0f}"
            f" {med(packing, 'tok_s'):10,.0f}"
            f" {med(packing, 'trained_real'):13.3f} {med(packing, 'trained_slots'):14.3f}"
            f" {med(packing, 'rows_per_step'):10.1f}"
        )
    ratio = med(True, "trained_tok_s") / med(False, "trained_tok_s")
    print(f"\npacked / unpacked, trained tokens per second (median of {args.runs}): {ratio:.2f}×")


if __name__ == "__main__":
    main()
