"""What ``winnow train`` is asked to do: one dataclass, the same for the CLI, Python and YAML.

This module imports no torch, so ``import winnow`` stays light.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from winnow.errors import ConfigError

#: Defaults of ``lr`` by model kind: a tiny model learns from scratch, a real one is fine-tuned.
TINY_LR = 1e-3
FINETUNE_LR = 2e-5


@dataclass
class TrainConfig:
    """Settings of one SFT run (``train:`` in a pipeline YAML, ``winnow train`` flags).

    Args:
        corpus: a corpus folder, optionally with a version: ``corpus/quickstart@v2``.
        model: a local Hugging Face causal-LM folder, or ``tiny`` (a small Llama built in
            process with a byte-level BPE tokenizer trained on the corpus).
        output: the folder to write the checkpoint, metrics and plot into.
        template: a built-in chat template name (chatml, llama-3, …) or a template file; null:
            the tokenizer's own ``chat_template`` (for ``tiny``: chatml).
        max_len: the longest sequence in tokens; longer rows are dropped and counted.
        epochs: passes over the train split (ignored when ``steps`` is set).
        steps: optimizer steps to take (cycling over the data as needed).
        lr: peak learning rate (null: 1e-3 for tiny, 2e-5 otherwise).
        batch_size: sequences per micro-batch (packed bins when ``packing``).
        grad_accum: micro-batches per optimizer step.
        packing: pack several rows into each ``max_len`` sequence (first-fit decreasing), with
            attention kept inside each row.
        seed: seeds the model init, the shuffling and the tiny tokenizer.
        eval_every: evaluate on the validation split every this many steps (null: about ten
            times per run; 0: only before and after).
        warmup: warmup length: a fraction of the steps (< 1) or a number of steps.
        weight_decay: AdamW weight decay.
        max_grad_norm: gradient clipping norm (0: off).
        device: ``cpu``, ``cuda`` or ``auto`` (cuda when available).
        attn_implementation: transformers' attention kernel: ``sdpa``, ``eager`` or
            ``flash_attention_2`` (needs the flash-attn package and a GPU).
        tiny: overrides of the tiny model's Llama config (``hidden_size``, ``num_hidden_layers``,
            ``num_attention_heads``, ``intermediate_size``, ``vocab_size`` of the BPE tokenizer…).
        max_eval_rows: evaluate on at most this many validation rows (null: all).
        force: write into an output folder that already holds a run.
    """

    corpus: str
    model: str
    output: str
    template: str | None = None
    max_len: int = 1024
    epochs: float = 1.0
    steps: int | None = None
    lr: float | None = None
    batch_size: int = 8
    grad_accum: int = 1
    packing: bool = False
    seed: int = 0
    eval_every: int | None = None
    warmup: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    device: str = "auto"
    attn_implementation: str = "sdpa"
    tiny: dict[str, Any] = field(default_factory=dict)
    max_eval_rows: int | None = None
    force: bool = False

    def __post_init__(self) -> None:
        self.validate()

    @property
    def is_tiny(self) -> bool:
        return self.model == "tiny"

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return TINY_LR if self.is_tiny else FINETUNE_LR

    def validate(self) -> None:
        for key in ("corpus", "model", "output"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value:
                raise ConfigError(f"train.{key} must be a non-empty string, got {value!r}", key)
        _check_int(self, "max_len", 8)
        _check_int(self, "batch_size", 1)
        _check_int(self, "grad_accum", 1)
        _check_int(self, "seed", None)
        if self.steps is not None:
            _check_int(self, "steps", 1)
        if self.eval_every is not None:
            _check_int(self, "eval_every", 0)
        if self.max_eval_rows is not None:
            _check_int(self, "max_eval_rows", 1)
        _check_number(self, "epochs", low=0, strict=True)
        if self.lr is not None:
            _check_number(self, "lr", low=0, strict=True)
        _check_number(self, "warmup", low=0)
        _check_number(self, "weight_decay", low=0)
        _check_number(self, "max_grad_norm", low=0)
        if self.template is not None and (not isinstance(self.template, str) or not self.template):
            raise ConfigError(f"train.template must be a template name or file, got {self.template!r}", "template")
        for key in ("packing", "force"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"train.{key} must be true or false, got {getattr(self, key)!r}", key)
        if self.device not in ("auto", "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise ConfigError(f"train.device must be auto, cpu or cuda, got {self.device!r}", "device")
        if self.attn_implementation not in ("sdpa", "eager", "flash_attention_2", "flash_attention_3"):
            raise ConfigError(
                f"train.attn_implementation must be sdpa, eager or flash_attention_2, got {self.attn_implementation!r}",
                "attn_implementation",
            )
        if not isinstance(self.tiny, Mapping):
            raise ConfigError(f"train.tiny must be a map of Llama config overrides, got {self.tiny!r}", "tiny")
        self.tiny = dict(self.tiny)

    @classmethod
    def from_dict(cls, data: Any, **defaults: Any) -> TrainConfig:
        """From the ``train:`` map of a pipeline YAML. ``defaults`` fill keys the map leaves out
        (the pipeline's ``output`` as ``corpus``, say). Unknown keys and wrong types raise
        :class:`~winnow.errors.ConfigError` naming the key.

        >>> TrainConfig.from_dict({"model": "tiny", "steps": 5}, corpus="corpus/q", output="runs/q").steps
        5
        """
        if not isinstance(data, Mapping):
            raise ConfigError("`train` must be a map like `{model: tiny, output: runs/x, steps: 100}`", "train")
        names = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in names:
                close = difflib.get_close_matches(str(key), names, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ConfigError(f"unknown train key '{key}'{hint}; valid keys: {', '.join(names)}", str(key))
        merged = {**{k: v for k, v in defaults.items() if v is not None}, **dict(data)}
        missing = [k for k in ("corpus", "model", "output") if merged.get(k) is None]
        if missing:
            raise ConfigError(f"train needs {', '.join(missing)}", missing[0])
        for key in ("corpus", "output"):
            merged[key] = str(merged[key])
        return cls(**merged)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_int(config: TrainConfig, key: str, low: int | None) -> None:
    value = getattr(config, key)
    if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
        more = f" ≥ {low}" if low is not None else ""
        raise ConfigError(f"train.{key} must be an integer{more}, got {value!r}", key)


def _check_number(config: TrainConfig, key: str, low: float, strict: bool = False) -> None:
    value = getattr(config, key)
    bad = isinstance(value, bool) or not isinstance(value, (int, float)) or value < low or (strict and value == low)
    if bad:
        raise ConfigError(f"train.{key} must be a number {'>' if strict else '≥'} {low}, got {value!r}", key)
