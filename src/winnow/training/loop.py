"""The SFT loop (DESIGN.md §6): AdamW, warmup + cosine, clipping, accumulation, eval, checkpoint.

torch and transformers are imported inside :func:`train`, so importing this module (and
``winnow``) stays light; without them :func:`train` raises
:class:`~winnow.errors.MissingDependencyError` with the ``pip install`` line.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from winnow import __version__
from winnow.corpus import Corpus, parse_ref
from winnow.errors import ConfigError, CorpusError, MissingDependencyError
from winnow.training.config import TrainConfig

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

RUN_FILE = "train_run.json"
METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "loss.png"


@dataclass
class TrainResult:
    """What a run did; ``run`` is the content of ``train_run.json``."""

    output: Path
    steps: int
    train_loss: float
    eval_loss_initial: float | None
    eval_loss_final: float | None
    tokens_per_second: float
    trained_tokens_per_second: float
    seconds: float
    counts: dict[str, dict[str, Any]]
    run: dict[str, Any] = field(repr=False, default_factory=dict)
    model: Any = field(repr=False, default=None)  # the trained model, in memory
    tokenizer: Any = field(repr=False, default=None)


def require() -> None:
    """Import the training dependencies, or say how to install them."""
    for package in ("torch", "transformers", "tokenizers", "safetensors"):
        try:
            __import__(package)
        except ImportError:
            raise MissingDependencyError(package, "train", "winnow train") from None


def train(
    corpus: str | os.PathLike[str] | None = None,
    model: str | os.PathLike[str] | None = None,
    output: str | os.PathLike[str] | None = None,
    *,
    config: TrainConfig | None = None,
    progress: bool = True,
    **settings: Any,
) -> TrainResult:
    """Fine-tune a causal LM on a corpus version; write a checkpoint, metrics and a plot.

    ``settings`` are :class:`TrainConfig` fields (``steps``, ``max_len``, ``packing``, …); or
    pass a whole ``config``.

    >>> import winnow as wn
    >>> wn.train("corpus/quickstart@v1", model="tiny", output="runs/demo", steps=20)  # doctest: +SKIP
    TrainResult(output=PosixPath('runs/demo'), steps=20, ...)
    """
    if config is None:
        if corpus is None or model is None or output is None:
            raise ConfigError("train needs a corpus, a model (a folder or 'tiny') and an output folder")
        config = TrainConfig(corpus=str(corpus), model=str(model), output=str(output), **settings)
    elif settings or corpus is not None or model is not None or output is not None:
        raise ConfigError("pass either a config or the settings, not both")
    require()
    return _Run(config, progress).run()


class _Run:
    def __init__(self, config: TrainConfig, progress: bool) -> None:
        self.config = config
        self.progress = progress
        self.out = Path(config.output)

    def run(self) -> TrainResult:
        import torch

        from winnow.training import data as D
        from winnow.training import model as M

        cfg = self.config
        started = time.perf_counter()
        path, version = parse_ref(cfg.corpus)
        corpus = Corpus(path)
        manifest = corpus.manifest(version)
        version = manifest["version"]
        train_table = corpus.load(version, "train", format="arrow")
        val_table = corpus.load(version, "validation", format="arrow")
        if cfg.max_eval_rows is not None:
            val_table = val_table.slice(0, cfg.max_eval_rows)
        self._check_output()
        device = M.resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)

        added: list[str] = []
        if cfg.is_tiny:
            template = M.template_for(cfg.template)
            texts = self._texts(template, train_table)
            net, tokenizer, template = M.tiny(texts, template, cfg.tiny, cfg.max_len, cfg.attn_implementation, cfg.seed)
        else:
            net, tokenizer, template, added = M.load_pretrained(cfg.model, cfg.template, cfg.attn_implementation)
        net.to(device)
        net.config.use_cache = False

        encoder = D.Encoder(tokenizer, template, cfg.max_len)
        train_examples, train_counts = encoder.encode_table(train_table)
        val_examples, val_counts = encoder.encode_table(val_table)
        if not train_examples:
            reasons = "; ".join(train_counts.reasons.values())
            raise CorpusError(
                f"{cfg.corpus}: none of the {train_counts.rows:,} train rows can be trained on ({reasons}); "
                "check --max-len and --template"
            )
        self._create_output()
        stop_ids = M.stop_token_ids(tokenizer, train_examples)
        net.generation_config.eos_token_id = stop_ids if len(stop_ids) > 1 else stop_ids[0]
        net.generation_config.pad_token_id = tokenizer.pad_token_id
        net.generation_config.bos_token_id = tokenizer.bos_token_id

        flatten = M.flatten_packed(net)
        packing_check = M.check_packing(net, device) if cfg.packing else None
        units = D.make_units(train_examples, cfg.max_len, cfg.packing)
        micro_per_epoch = math.ceil(len(units) / cfg.batch_size)
        steps_per_epoch = max(1, math.ceil(micro_per_epoch / cfg.grad_accum))
        total_steps = cfg.steps if cfg.steps is not None else max(1, round(cfg.epochs * steps_per_epoch))
        eval_every = cfg.eval_every if cfg.eval_every is not None else max(1, total_steps // 10)
        warmup = int(cfg.warmup * total_steps) if cfg.warmup < 1 else int(cfg.warmup)

        optimizer = _optimizer(net, cfg.learning_rate, cfg.weight_decay, device)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(warmup, total_steps))
        autocast = _autocast(device)
        batches = D.micro_batches(units, cfg.batch_size, cfg.seed)
        pad_id = tokenizer.pad_token_id

        def evaluate() -> float | None:
            return _evaluate(net, val_examples, cfg.batch_size, pad_id, device, autocast) if val_examples else None

        summary = _summary(cfg, train_counts, val_counts, total_steps, len(units))
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, disable=not self.progress, unit="step", desc="train", dynamic_ncols=True)
        if self.progress:
            bar.write(summary)
        else:
            log.info(summary)
        metrics = (self.out / METRICS_FILE).open("w", encoding="utf-8")
        eval_initial = evaluate()
        eval_loss = eval_initial
        if eval_initial is not None:
            _write(metrics, {"step": 0, "eval_loss": eval_initial})
        history: list[float] = []
        tokens_seen = trained_seen = 0
        train_seconds = 0.0
        epoch = 0
        net.train()
        try:
            for step in range(1, total_steps + 1):
                t0 = time.perf_counter()
                group = [next(batches) for _ in range(cfg.grad_accum)]
                epoch = group[-1][0]
                inputs = [D.collate(units_, pad_id, cfg.packing, flatten) for _, units_ in group]
                step_loss, n_trained = accumulate(net, inputs, device, autocast)
                grad_norm = (
                    float(torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm))
                    if cfg.max_grad_norm > 0
                    else float("nan")
                )
                lr = scheduler.get_last_lr()[0]  # the rate this step used
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                seconds = time.perf_counter() - t0
                train_seconds += seconds
                tokens = sum(_tokens(u, cfg.packing) for _, u in group)
                tokens_seen += tokens
                trained_seen += n_trained
                loss = step_loss / max(1, n_trained)
                history.append(loss)
                record: dict[str, Any] = {
                    "step": step,
                    "epoch": epoch,
                    "loss": loss,
                    "lr": lr,
                    "grad_norm": grad_norm,
                    "tokens": tokens,
                    "trained_tokens": n_trained,
                    "tokens_per_second": tokens / seconds if seconds else 0.0,
                }
                if eval_every and (step % eval_every == 0) and step != total_steps:
                    eval_loss = evaluate()
                    record["eval_loss"] = eval_loss
                _write(metrics, record)
                bar.set_postfix(
                    loss=f"{loss:.3f}",
                    eval=f"{eval_loss:.3f}" if eval_loss is not None else "—",
                    tok_s=f"{tokens_seen / train_seconds:,.0f}",
                    refresh=False,
                )
                bar.update(1)
            eval_final = evaluate()
            if eval_final is not None:
                _write(metrics, {"step": total_steps, "eval_loss": eval_final})
        finally:
            bar.close()
            metrics.close()

        self._save(net, tokenizer)
        elapsed = time.perf_counter() - started
        run: dict[str, Any] = {
            "status": "complete",
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "corpus": {
                "path": str(path),
                "version": version,
                "fingerprint": manifest.get("fingerprint"),
            },
            "model": {
                "spec": cfg.model,
                "parameters": sum(p.numel() for p in net.parameters()),
                "attn_implementation": net.config._attn_implementation,
                "added_tokens": added,
                "stop_token_ids": stop_ids,
            },
            "template": {"name": template.name, "fingerprint": template.fingerprint()},
            "config": {**cfg.to_dict(), "lr": cfg.learning_rate},
            "counts": {"train": train_counts.to_dict(), "validation": val_counts.to_dict()},
            "packing": {
                "enabled": cfg.packing,
                "sequences": len(units) if cfg.packing else None,
                "fill": train_counts.total_tokens / (len(units) * cfg.max_len) if cfg.packing else None,
                "layout": ("flattened" if flatten else "one row per bin") if cfg.packing else None,
                "check_max_abs_diff": packing_check,
            },
            "steps": total_steps,
            "epochs": epoch + 1,
            "warmup_steps": warmup,
            "eval_every": eval_every,
            "results": {
                "train_loss_first": history[0],
                "train_loss_last": history[-1],
                "eval_loss_initial": eval_initial,
                "eval_loss_final": eval_final,
                "tokens": tokens_seen,
                "trained_tokens": trained_seen,
                "train_seconds": train_seconds,
                "tokens_per_second": tokens_seen / train_seconds if train_seconds else 0.0,
                "trained_tokens_per_second": trained_seen / train_seconds if train_seconds else 0.0,
                "seconds": elapsed,
            },
            "device": str(device),
            "dtype": "bf16 autocast" if autocast._enabled else "fp32",
            "versions": _versions(),
            "files": sorted({p.name for p in self.out.iterdir()} | {RUN_FILE, PLOT_FILE}),
        }
        _plot(self.out / METRICS_FILE, self.out / PLOT_FILE)
        (self.out / RUN_FILE).write_text(json.dumps(run, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return TrainResult(
            output=self.out,
            steps=total_steps,
            train_loss=history[-1],
            eval_loss_initial=eval_initial,
            eval_loss_final=eval_final,
            tokens_per_second=run["results"]["tokens_per_second"],
            trained_tokens_per_second=run["results"]["trained_tokens_per_second"],
            seconds=elapsed,
            counts=run["counts"],
            run=run,
            model=net,
            tokenizer=tokenizer,
        )

    def _texts(self, template: Any, table: Any) -> Iterator[str]:
        """Rendered train rows, to train the tiny tokenizer on."""
        from winnow.chat_template import ChatTemplateError
        from winnow.training.data import prepare_messages

        metas = table.column("meta").to_pylist() if "meta" in table.column_names else [None] * table.num_rows
        for messages, meta in zip(table.column("messages").to_pylist(), metas):
            try:
                yield template.render(prepare_messages(messages or [], meta))
            except ChatTemplateError:
                continue

    def _check_output(self) -> None:
        """Refuse an output folder that holds something else, before any work is done."""
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"--output {self.out} is a file; give a folder", "output")
        if self.out.is_dir() and any(self.out.iterdir()):
            if not (self.out / RUN_FILE).is_file():
                raise ConfigError(
                    f"--output {self.out} is not empty and holds no earlier run; choose a new folder", "output"
                )
            if not self.config.force:
                raise ConfigError(
                    f"--output {self.out} holds an earlier run; choose a new folder or pass --force to replace it",
                    "output",
                )

    def _create_output(self) -> None:
        self._check_output()
        if self.out.is_dir() and any(self.out.iterdir()):
            shutil.rmtree(self.out)  # a whole earlier run (checked above): no stale file may survive
        self.out.mkdir(parents=True, exist_ok=True)
        # Marks the folder as a run from the start, so a crashed run can be replaced with --force.
        started = {"status": "running", "config": self.config.to_dict()}
        (self.out / RUN_FILE).write_text(json.dumps(started, indent=2) + "\n", encoding="utf-8")

    def _save(self, net: Any, tokenizer: Any) -> None:
        from transformers.utils import logging as hf_logging

        net.config.use_cache = True
        quiet = not self.progress and hf_logging.is_progress_bar_enabled()
        if quiet:
            hf_logging.disable_progress_bar()  # transformers' own "Writing model shards" bar
        try:
            net.save_pretrained(self.out, safe_serialization=True)
            tokenizer.save_pretrained(self.out)
        finally:
            if quiet:
                hf_logging.enable_progress_bar()


def accumulate(net: Any, inputs: Sequence[dict[str, Any]], device: torch.device, autocast: Any) -> tuple[float, int]:
    """Forward and backward the micro-batches of one optimizer step; returns the summed loss and
    the number of trained tokens. Gradients are of the mean loss per trained token of the step.

    The step's token count is taken first and every micro-batch's *summed* loss is divided by
    it. Averaging per micro-batch instead would weight a token in a micro-batch with few trained
    tokens more than one in a micro-batch with many, so the gradient would depend on how rows
    fall into micro-batches (and on ``grad_accum``); this way every trained token counts the
    same and ``batch_size=8`` equals ``batch_size=4, grad_accum=2``.
    """
    n_trained = sum(int((b["labels"][:, 1:] != -100).sum()) for b in inputs)
    total = 0.0
    for b in inputs:
        b = {k: v.to(device, non_blocking=True) for k, v in b.items()}
        labels = b.pop("labels")
        with autocast:
            logits = net(**b, use_cache=False).logits
        loss_sum = token_loss(logits, labels)
        (loss_sum / max(1, n_trained)).backward()
        total += float(loss_sum.detach())
    return total, n_trained


def token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy of the trained tokens: position ``i`` predicts ``labels[i + 1]``
    (labels are unshifted, as Hugging Face models take them); computed in fp32."""
    import torch.nn.functional as F

    vocab = logits.shape[-1]
    return F.cross_entropy(
        logits[:, :-1].reshape(-1, vocab).float(), labels[:, 1:].reshape(-1), ignore_index=-100, reduction="sum"
    )


def _evaluate(
    net: Any, examples: Sequence[Any], batch_size: int, pad_id: int, device: torch.device, autocast: Any
) -> float:
    """Mean loss per trained token over the validation rows (unpacked, length-sorted batches)."""
    import torch

    from winnow.training.data import collate

    ordered = sorted(examples, key=len)
    total = 0.0
    count = 0
    net.eval()
    with torch.no_grad():
        for start in range(0, len(ordered), batch_size):
            b = collate(ordered[start : start + batch_size], pad_id, packed=False)
            b = {k: v.to(device) for k, v in b.items()}
            labels = b.pop("labels")
            with autocast:
                logits = net(**b, use_cache=False).logits
            total += float(token_loss(logits, labels))
            count += int((labels[:, 1:] != -100).sum())
    net.train()
    return total / max(1, count)


def _optimizer(net: Any, lr: float, weight_decay: float, device: torch.device) -> torch.optim.Optimizer:
    import torch

    # No weight decay on norms and biases (1-D parameters), as is usual for transformers.
    decay = [p for p in net.parameters() if p.requires_grad and p.ndim >= 2]
    rest = [p for p in net.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8, fused=device.type == "cuda")


def _schedule(warmup: int, total: int) -> Any:
    """Linear warmup to the peak, then cosine decay to zero at ``total``."""

    def factor(step: int) -> float:  # step = optimizer steps taken so far
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _autocast(device: torch.device) -> Any:
    import torch

    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def _tokens(units: Sequence[Any], packed: bool) -> int:
    """Real (non-padding) tokens in a micro-batch."""
    return sum(len(e) for u in units for e in (u if packed else [u]))


def _summary(cfg: TrainConfig, train: Any, val: Any, steps: int, units: int) -> str:
    def dropped(c: Any) -> str:
        parts = [
            f"{n:,} {what}"
            for n, what in (
                (c.dropped_too_long, f"longer than {cfg.max_len} tokens"),
                (c.dropped_no_trainable, "with no assistant token"),
                (c.dropped_template_error, "rejected by the template"),
                (c.dropped_extra_bos, "with a BOS inside"),
            )
            if n
        ]
        return f" (dropped {', '.join(parts)})" if parts else ""

    packed = f", packed into {units:,} sequences" if cfg.packing else ""
    return (
        f"train: {train.used:,} of {train.rows:,} rows{dropped(train)}{packed}, {train.trained_tokens:,} of "
        f"{train.total_tokens:,} tokens trained; validation: {val.used:,} of {val.rows:,} rows{dropped(val)}; "
        f"{steps:,} steps"
    )


def _write(f: Any, record: dict[str, Any]) -> None:
    f.write(json.dumps(record) + "\n")
    f.flush()


def _plot(metrics: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    evals = [(r["step"], r["eval_loss"]) for r in rows if r.get("eval_loss") is not None]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train), label="train loss (per trained token)", linewidth=1)
    if evals:
        ax.plot(*zip(*evals), "o-", label="validation loss", linewidth=1.5)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)


def _versions() -> dict[str, str]:
    import torch
    import transformers

    return {"winnow": __version__, "torch": torch.__version__, "transformers": transformers.__version__}
