"""The model and tokenizer a run trains: a local Hugging Face folder, or a tiny Llama built here.

Nothing is downloaded: folders load with ``local_files_only=True``, and ``tiny`` builds a small
Llama from a config with a byte-level BPE tokenizer trained on the corpus's own rendered text,
whose special tokens are the chat template's (BOS, EOS, pad and markers such as
``<|im_start|>``/``<|im_end|>``), so each marker is one token the model can learn to emit.

:func:`check_packing` runs the live model on two short random rows, alone and packed, and
refuses to train with packing when the logits differ: that is what proves, for this model,
attention implementation and transformers version, that packed rows do not see each other.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from winnow.chat_template import BUILTINS, ChatTemplate
from winnow.errors import ConfigError, WinnowError
from winnow.training.data import Example, collate

log = logging.getLogger(__name__)

#: The tiny model's Llama config (``TrainConfig.tiny`` overrides any key). ``vocab_size`` is the
#: BPE tokenizer's target size; the model gets the size the tokenizer actually reached.
TINY_DEFAULTS: dict[str, Any] = {
    "vocab_size": 2048,
    "hidden_size": 128,
    "intermediate_size": 344,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "tie_word_embeddings": True,
    "initializer_range": 0.02,
    "rms_norm_eps": 1e-5,
    "attention_dropout": 0.0,
}

# Marker tokens written literally in a template: <|im_start|>, <|eot_id|>, <start_of_turn>…
_MARKER = re.compile(r"<\|[^|<>\s'\"]+\|>|<(?:start|end)_of_turn>")


class PackingLeakError(WinnowError):
    """Packed rows would attend to each other with this model and attention implementation."""


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for, but torch sees no CUDA device; use --device cpu", "device")
    return torch.device(spec)


def template_for(spec: str | None, tokenizer: Any | None = None) -> ChatTemplate:
    """The chat template a run renders with.

    ``spec`` is a built-in name or a file; None means the tokenizer's own ``chat_template``
    (``chatml`` when there is no tokenizer yet, for ``tiny``). With a tokenizer, the template
    sees the tokenizer's special tokens, as transformers' ``apply_chat_template`` would."""
    tokens: dict[str, str | None] = {}
    if tokenizer is not None:
        for name in ("bos_token", "eos_token", "pad_token", "unk_token"):
            value = getattr(tokenizer, name, None)
            if isinstance(value, str):
                tokens[name] = value
    bos, eos = tokens.pop("bos_token", None), tokens.pop("eos_token", None)
    if spec is None:
        if tokenizer is None:
            return ChatTemplate.builtin("chatml")
        source = getattr(tokenizer, "chat_template", None)
        if isinstance(source, dict):
            source = source.get("default")
        if not isinstance(source, str) or not source:
            raise ConfigError(
                "the model's tokenizer has no chat_template; pass --template with a built-in "
                f"({', '.join(BUILTINS)}) or a .jinja file",
                "template",
            )
        return ChatTemplate(
            source, name="the model's chat_template", bos_token=bos, eos_token=eos, special_tokens=tokens
        )
    if spec in BUILTINS:
        given = {"bos_token": bos, "eos_token": eos}
        return ChatTemplate.builtin(spec, special_tokens=tokens, **{k: v for k, v in given.items() if v is not None})
    if not Path(spec).exists():
        raise ConfigError(
            f"--template {spec!r} is neither a built-in ({', '.join(BUILTINS)}) nor an existing file", "template"
        )
    return ChatTemplate.from_path(spec, bos_token=bos, eos_token=eos, special_tokens=tokens)


def markers(template: ChatTemplate) -> list[str]:
    """Special tokens a template writes: its BOS/EOS and literal markers like ``<|im_end|>``."""
    found = [template.special_tokens.get("bos_token"), template.special_tokens.get("eos_token")]
    found += _MARKER.findall(template.source)
    return list(dict.fromkeys(t for t in found if isinstance(t, str) and t))


# -- tiny -------------------------------------------------------------------------------------


def build_tiny_tokenizer(texts: Iterable[str], template: ChatTemplate, vocab_size: int) -> Any:
    """A byte-level BPE tokenizer trained on ``texts``; it adds BOS like Llama's tokenizers do."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    bos = template.special_tokens.get("bos_token") or "<s>"
    eos = template.special_tokens.get("eos_token") or "</s>"
    pad = "<pad>"
    specials = list(dict.fromkeys([pad, bos, eos, *markers(template)]))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
    )
    extra = [t for t in specials if t not in (pad, bos, eos)]
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad, additional_special_tokens=extra
    )


def build_tiny_model(tokenizer: Any, overrides: Mapping[str, Any], max_len: int, attn: str, seed: int) -> Any:
    """A small Llama (random init, seeded) sized for ``tokenizer``."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    settings = {**TINY_DEFAULTS, **{k: v for k, v in overrides.items() if k != "vocab_size"}}
    settings["vocab_size"] = len(tokenizer)
    settings.setdefault("max_position_embeddings", max(2048, max_len))
    try:
        config = LlamaConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **settings,
        )
    except (TypeError, ValueError) as e:
        raise ConfigError(f"train.tiny: {e}", "tiny") from None
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, attn_implementation=attn, dtype=torch.float32)


def tiny(
    texts: Iterable[str], template: ChatTemplate, overrides: Mapping[str, Any], max_len: int, attn: str, seed: int
) -> tuple[Any, Any, ChatTemplate]:
    """Tokenizer, model and the template (now seeing the tokenizer's tokens) for ``--model tiny``."""
    vocab = int(overrides.get("vocab_size", TINY_DEFAULTS["vocab_size"]))
    tokenizer = build_tiny_tokenizer(texts, template, vocab)
    template = ChatTemplate(
        template.source,
        name=template.name,
        bos_token=tokenizer.bos_token,
        eos_token=tokenizer.eos_token,
        special_tokens={"pad_token": tokenizer.pad_token},
    )
    tokenizer.chat_template = template.source
    return build_tiny_model(tokenizer, overrides, max_len, attn, seed), tokenizer, template


# -- a local model folder ---------------------------------------------------------------------


def load_pretrained(path: str, template_spec: str | None, attn: str) -> tuple[Any, Any, ChatTemplate, list[str]]:
    """Model, tokenizer, template and the marker tokens added to the vocabulary (if any)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise ConfigError(
            f"--model {path}: expected a local Hugging Face model folder with config.json (or 'tiny'); "
            "nothing is downloaded",
            "model",
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            folder, local_files_only=True, attn_implementation=attn, dtype=torch.float32
        )
    except (OSError, ValueError) as e:
        raise ConfigError(f"--model {path} does not load: {e}", "model") from None
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"--model {path}: winnow train needs a fast tokenizer (tokenizer.json)", "model")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # padding is masked out and never a target
    template = template_for(template_spec, tokenizer)
    vocab = tokenizer.get_vocab()
    missing = [t for t in markers(template) if t not in vocab]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
        model.resize_token_embeddings(len(tokenizer))
        log.warning("added %s to the tokenizer and resized the embeddings", ", ".join(missing))
    tokenizer.chat_template = template.source
    return model, tokenizer, template, missing


# -- after tokenization -----------------------------------------------------------------------


def stop_token_ids(tokenizer: Any, examples: Sequence[Example]) -> list[int]:
    """EOS and the end-of-turn tokens that close the trained spans (``<|im_end|>``,
    ``<|eot_id|>``, ``<end_of_turn>``…): what ``generate`` should stop at."""
    special = set(tokenizer.all_special_ids) | {
        i for t, i in tokenizer.get_vocab().items() if t in getattr(tokenizer, "added_tokens_encoder", {})
    }
    ends: Counter[int] = Counter()
    for e in examples:
        previous = -100
        for label in e.labels:  # the last token of every trained run
            if previous != -100 and label == -100 and previous in special:
                ends[previous] += 1
            previous = label
        if previous != -100 and previous in special:
            ends[previous] += 1
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    return list(dict.fromkeys(ids + [i for i, _ in ends.most_common(3)]))


def flatten_packed(model: Any) -> bool:
    """FlashAttention finds packed rows in ``position_ids`` only at batch size 1."""
    return str(getattr(model.config, "_attn_implementation", "")).startswith("flash")


@torch.no_grad()
def check_packing(model: Any, device: torch.device, atol: float = 1e-4) -> float:
    """Run two random rows alone and packed into one sequence; raise :class:`PackingLeakError`
    unless their logits agree. Returns the largest difference."""
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    rows = [torch.randint(0, vocab, (n,), generator=g).tolist() for n in (9, 6)]
    examples = [Example(r, [-100] * len(r)) for r in rows]
    was_training = model.training
    model.eval()
    try:
        half = flatten_packed(model)  # FlashAttention only runs in 16-bit
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=half):
            alone = [model(input_ids=torch.tensor([r], device=device), use_cache=False).logits[0].float() for r in rows]
            batch = collate([examples], pad_id=0, packed=True, flatten=True)
            packed = model(
                input_ids=batch["input_ids"].to(device),
                position_ids=batch["position_ids"].to(device),
                use_cache=False,  # with a KV cache, transformers skips packed-sequence detection
            ).logits[0]
    finally:
        model.train(was_training)
    diff = float((packed.float() - torch.cat(alone)).abs().max())
    tolerance = 5e-2 if half else atol
    if diff > tolerance:
        import transformers

        raise PackingLeakError(
            f"packing is not isolated for this model (attn_implementation="
            f"{model.config._attn_implementation}, transformers {transformers.__version__}): packed and separate "
            f"logits differ by {diff:.3g}; train without --packing, or use transformers >= 4.53 or flash_attention_2"
        )
    return diff
