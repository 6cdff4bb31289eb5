"""`winnow train` on a GPU: a ~100M-parameter Llama, bf16, packed, on real instruction data.

One short script for the device machine (target: under 6 minutes on one H100, setup included):

1. builds a corpus from every JSON/JSONL file under the data folder (`--data`; default: the
   first of ../shared/data and shared/data beside this repo, else sample_data/) with
   `exact_dedup`, 5% validation;
2. trains `--model tiny` sized up: hidden 768, 12 layers, 12 heads, intermediate 2048, a
   byte-level BPE vocabulary of 16,384 trained on the corpus (~110M parameters with tied
   embeddings), packed into 1024-token sequences, batch 16, `--steps` 250, lr 1e-3, bf16
   autocast, SDPA attention (the packing isolation check runs on the GPU before training);
3. prints tokens/s, trained tokens/s, the train and validation loss drop, peak GPU memory,
   and writes everything as JSON to $OUT/gpu_check.json when OUT is set (else ./gpu_check.json
   only with --json PATH).

`--tiny` shrinks everything (hidden 64, 2 layers, 8 steps, max_len 256) so the script can be
checked on a CPU in about a minute: python bench/gpu_check.py --tiny

Run: python bench/gpu_check.py [--data DIR] [--steps 250] [--batch-size 16] [--max-len 1024]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_MININTERVAL", "10")  # a progress line every 10 s, not a flood in logs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def find_data(given: str | None) -> Path:
    if given:
        path = Path(given)
        if not path.is_dir():
            sys.exit(f"--data {given} is not a folder")
        return path
    for candidate in (ROOT.parent / "shared" / "data", ROOT / "shared" / "data"):
        if candidate.is_dir() and any(candidate.rglob("*.json*")):
            return candidate
    return ROOT / "sample_data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="folder of instruction data files (searched recursively)")
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-len", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager", "flash_attention_2"])
    ap.add_argument("--no-packing", action="store_true")
    ap.add_argument("--tiny", action="store_true", help="a tiny model and a few steps, to check the script on a CPU")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    t_start = time.perf_counter()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    for noisy in ("winnow.formats", "winnow.pipeline", "winnow.engines", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    import torch
    import transformers

    import winnow as wn
    from winnow.training import train

    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name(0) if cuda else "cpu"
    print(f"device: {device}; torch {torch.__version__}, transformers {transformers.__version__}", flush=True)
    if args.tiny:
        size = {"vocab_size": 1024, "hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 2}
        size |= {"num_attention_heads": 4, "num_key_value_heads": 4}
        args.steps, args.batch_size, args.max_len = min(args.steps, 8), min(args.batch_size, 4), min(args.max_len, 256)
    else:
        size = {"vocab_size": 16384, "hidden_size": 768, "intermediate_size": 2048, "num_hidden_layers": 12}
        size |= {"num_attention_heads": 12, "num_key_value_heads": 12}

    data = find_data(args.data)
    files = sorted(str(p) for p in data.rglob("*") if p.suffix in (".json", ".jsonl", ".csv") and p.is_file())
    work = Path(tempfile.mkdtemp(prefix="winnow-gpu-check-"))
    t0 = time.perf_counter()
    pipeline = wn.Pipeline(
        inputs=[{"path": f, "on_error": "skip"} for f in files],
        stages=[wn.stages.ExactDedup()],
        output=work / "corpus",
        split={"validation": 0.05},
    )
    built = pipeline.run(progress=False)
    counts = built.corpus.manifest(built.version)["counts"]
    corpus_seconds = time.perf_counter() - t0
    print(
        f"corpus: {len(files)} files from {data} → {counts['train']:,} train, {counts['validation']:,} validation "
        f"rows in {corpus_seconds:.1f} s",
        flush=True,
    )

    t0 = time.perf_counter()
    result = train(
        work / "corpus",
        model="tiny",
        output=work / "run",
        tiny=size,
        steps=args.steps,
        batch_size=args.batch_size,
        max_len=args.max_len,
        lr=args.lr,
        warmup=0.05,
        weight_decay=0.1,
        packing=not args.no_packing,
        eval_every=max(1, args.steps // 5),
        max_eval_rows=256,
        attn_implementation=args.attn,
        progress=True,
    )
    train_seconds = time.perf_counter() - t0
    run = result.run
    res = run["results"]
    eval_drop = (
        1 - result.eval_loss_final / result.eval_loss_initial
        if result.eval_loss_initial and result.eval_loss_final is not None
        else None
    )
    report = {
        "device": device,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "data": str(data),
        "files": len(files),
        "corpus_rows": counts,
        "corpus_seconds": corpus_seconds,
        "parameters": run["model"]["parameters"],
        "model": size,
        "attn_implementation": run["model"]["attn_implementation"],
        "dtype": run["dtype"],
        "steps": result.steps,
        "batch_size": args.batch_size,
        "max_len": args.max_len,
        "packing": run["packing"],
        "counts": run["counts"],
        "tokens_per_second": res["tokens_per_second"],
        "trained_tokens_per_second": res["trained_tokens_per_second"],
        "tokens": res["tokens"],
        "trained_tokens": res["trained_tokens"],
        "train_loss_first": res["train_loss_first"],
        "train_loss_last": res["train_loss_last"],
        "eval_loss_initial": result.eval_loss_initial,
        "eval_loss_final": result.eval_loss_final,
        "eval_loss_drop": eval_drop,
        "train_loop_seconds": res["train_seconds"],
        "train_call_seconds": train_seconds,
        "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "total_seconds": time.perf_counter() - t_start,
    }
    print(
        f"\n{report['parameters'] / 1e6:.1f}M parameters, {result.steps} steps ({report['dtype']}, "
        f"{report['attn_implementation']}, packing {'on' if not args.no_packing else 'off'}):\n"
        f"  {res['tokens_per_second']:,.0f} tokens/s, {res['trained_tokens_per_second']:,.0f} trained tokens/s\n"
        f"  train loss {res['train_loss_first']:.3f} → {res['train_loss_last']:.3f}; validation loss "
        f"{result.eval_loss_initial:.3f} → {result.eval_loss_final:.3f} ({(eval_drop or 0) * 100:.0f}% lower)\n"
        f"  packing check max |Δlogit| {run['packing']['check_max_abs_diff']}, "
        f"peak GPU memory {report['peak_gpu_memory_gib'] or 0:.1f} GiB, total {report['total_seconds']:.0f} s",
        flush=True,
    )
    targets = [Path(os.environ["OUT"]) / "gpu_check.json"] if os.environ.get("OUT") else []
    if args.json:
        targets.append(Path(args.json))
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {target}")


if __name__ == "__main__":
    main()
