"""From corpus rows to training tensors: chat-template tokenization, assistant-only labels, packing.

A row is rendered with a :class:`~winnow.chat_template.ChatTemplate` and tokenized once with the
fast tokenizer's offset mapping; a token is trained when its characters overlap an assistant
span (``render_spans``: each assistant turn's content and the end-of-turn marker after it).
Labels are ``-100`` elsewhere and are *not* shifted: Hugging Face causal LMs (and
:func:`winnow.training.loop.token_loss`) shift them, so ``labels[i]`` is the target of position
``i - 1``.

Exactly one BOS: when the rendered text already starts with the tokenizer's BOS (templates with
``{{ bos_token }}``), it is tokenized with ``add_special_tokens=False``; otherwise the tokenizer
adds its own. A BOS anywhere else (a literal ``<s>`` in a message) drops the row.

Rows are dropped and counted, never truncated: longer than ``max_len`` (cutting would remove the
end of an answer and its end-of-turn token), no trainable token, or rejected by the template.

Packing puts several rows into one ``max_len`` sequence (first-fit decreasing); each row's
``position_ids`` restart at 0, which is how the model is told where rows begin (see
:func:`collate`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from winnow.chat_template import ChatTemplate, ChatTemplateError
from winnow.stages.template import split_input

log = logging.getLogger(__name__)

IGNORE = -100


@dataclass
class Example:
    """One tokenized row: ``labels`` are the ids to predict (``-100`` elsewhere), unshifted."""

    input_ids: list[int]
    labels: list[int]
    row_id: str = ""

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def trained(self) -> int:
        return sum(label != IGNORE for label in self.labels)


@dataclass
class Counts:
    """What happened to the rows of one split."""

    rows: int = 0
    used: int = 0
    dropped_too_long: int = 0
    dropped_no_trainable: int = 0
    dropped_template_error: int = 0
    dropped_extra_bos: int = 0
    trained_tokens: int = 0
    total_tokens: int = 0
    reasons: dict[str, str] = field(default_factory=dict)  # first message per drop kind

    @property
    def dropped(self) -> int:
        return self.dropped_too_long + self.dropped_no_trainable + self.dropped_template_error + self.dropped_extra_bos

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        d["dropped"] = self.dropped
        d["trained_fraction"] = self.trained_tokens / self.total_tokens if self.total_tokens else 0.0
        return d


def prepare_messages(messages: Sequence[Mapping[str, Any]], meta: str | None = None) -> list[dict[str, Any]]:
    """The messages as the ``template`` stage gives them to a template: plain dicts, and for
    Alpaca-style rows the user turn's ``instruction``/``input`` (which the alpaca template uses)."""
    out = [dict(m) for m in messages or []]
    user = next((m for m in out if m.get("role") == "user"), None)
    if user is not None:
        instruction, given = split_input(user.get("content") or "", meta)
        if given:
            user["instruction"], user["input"] = instruction, given
    return out


class Encoder:
    """Render, tokenize and label rows for one tokenizer and chat template."""

    def __init__(self, tokenizer: Any, template: ChatTemplate, max_len: int) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("winnow train needs a fast tokenizer (tokenizer.json) for its offset mapping")
        self.tokenizer = tokenizer
        self.template = template
        self.max_len = max_len
        self.bos: str | None = tokenizer.bos_token
        self.bos_id: int | None = tokenizer.bos_token_id

    def tokenize(self, text: str) -> tuple[list[int], list[tuple[int, int]], bool]:
        """ids, character offsets, and whether the tokenizer added its special tokens."""
        add_special = not (self.bos is not None and text.startswith(self.bos))
        enc = self.tokenizer(text, add_special_tokens=add_special, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]], add_special

    def encode(self, messages: Sequence[Mapping[str, Any]], meta: str | None = None) -> Example | tuple[str, str]:
        """An :class:`Example`, or ``(drop kind, message)`` for a row that cannot be trained on."""
        try:
            rendered = self.template.render_spans(prepare_messages(messages, meta), add_generation_prompt=False)
        except ChatTemplateError as e:
            return "template_error", str(e)
        ids, offsets, _ = self.tokenize(rendered.text)
        if self.bos_id is not None and (ids.count(self.bos_id) > 1 or (self.bos_id in ids and ids[0] != self.bos_id)):
            return "extra_bos", f"a BOS token ({self.bos}) inside the conversation"
        mask = span_mask(offsets, rendered.spans)
        mask[:1] = False  # nothing precedes the first token: never a target (also keeps packed rows apart)
        if not mask.any():
            return "no_trainable", "no assistant token to train on"
        if len(ids) > self.max_len:
            return "too_long", f"{len(ids)} tokens, more than max_len {self.max_len}"
        labels = np.where(mask, np.asarray(ids), IGNORE).tolist()
        return Example(ids, labels)

    def encode_table(self, table: pa.Table) -> tuple[list[Example], Counts]:
        """Every row of a corpus split; dropped rows are counted by kind."""
        counts = Counts()
        examples = []
        ids = table.column("id").to_pylist() if "id" in table.column_names else [""] * table.num_rows
        metas = table.column("meta").to_pylist() if "meta" in table.column_names else [None] * table.num_rows
        for row_id, messages, meta in zip(ids, table.column("messages").to_pylist(), metas):
            counts.rows += 1
            result = self.encode(messages or [], meta)
            if isinstance(result, tuple):
                kind, why = result
                setattr(counts, f"dropped_{kind}", getattr(counts, f"dropped_{kind}") + 1)
                counts.reasons.setdefault(kind, f"row {row_id}: {why}")
                continue
            result.row_id = row_id
            examples.append(result)
            counts.used += 1
            counts.trained_tokens += result.trained
            counts.total_tokens += len(result)
        return examples, counts

    def prefix_mask(self, text: str, spans: Sequence[tuple[int, int]]) -> np.ndarray:
        """The assistant mask by the prompt-prefix method: tokens from ``len(tok(text[:start]))``
        to ``len(tok(text[:end]))`` of each span. Used to cross-check :func:`span_mask`."""
        ids, _, add_special = self.tokenize(text)
        mask = np.zeros(len(ids), bool)
        for start, end in spans:
            a = len(self.tokenizer(text[:start], add_special_tokens=add_special)["input_ids"])
            b = len(self.tokenizer(text[:end], add_special_tokens=add_special)["input_ids"])
            mask[a:b] = True
        mask[:1] = False
        return mask


def span_mask(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """True for tokens whose characters overlap an assistant span. Special tokens the tokenizer
    adds have empty offsets and are never trained; a token that straddles the span's start
    (a merged leading space) is trained, since the model has to produce it."""
    if not offsets:
        return np.zeros(0, bool)
    o = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    if not spans:
        return np.zeros(len(o), bool)
    s = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    starts, ends = o[:, :1], o[:, 1:]
    overlap = (starts < s[None, :, 1]) & (ends > s[None, :, 0])
    return (overlap.any(axis=1) & (o[:, 1] > o[:, 0])).astype(bool)


# -- packing ----------------------------------------------------------------------------------


def pack(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """First-fit decreasing: indices of ``lengths`` grouped into bins of at most ``capacity``.

    Longest first, each into the first (lowest-numbered) bin with room; a max segment tree over
    the bins' free space finds that bin in O(log n), so a million rows pack in seconds.
    Deterministic: ties keep index order.

    >>> pack([3, 5, 2, 4], 8)
    [[1, 0], [3, 2]]
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    n = max(1, len(lengths))
    size = 1
    while size < n:
        size *= 2
    tree = np.full(2 * size, capacity, dtype=np.int64)  # free space; every bin starts empty
    bins: list[list[int]] = []
    for i in order:
        need = lengths[i]
        if need > capacity:
            raise ValueError(f"item {i} has length {need}, more than the bin capacity {capacity}")
        node = 1
        while node < size:  # descend to the leftmost leaf with enough room
            node = 2 * node if tree[2 * node] >= need else 2 * node + 1
        b = node - size
        if b == len(bins):
            bins.append([])
        bins[b].append(i)
        tree[node] -= need
        node //= 2
        while node:
            tree[node] = max(tree[2 * node], tree[2 * node + 1])
            node //= 2
    return bins


def collate(
    units: Sequence[Example | Sequence[Example]], pad_id: int, packed: bool, flatten: bool = False
) -> dict[str, torch.Tensor]:
    """Tensors for one micro-batch.

    Unpacked (``units`` are examples): right-padded ``input_ids``/``labels`` with a 2D
    ``attention_mask``.

    Packed (``units`` are bins of examples): no ``attention_mask`` and ``position_ids`` that
    restart at 0 for each example. That is the padding-free convention of transformers
    (``DataCollatorWithFlattening``): with FlashAttention the restarts become ``cu_seqlens``;
    with SDPA and eager attention, transformers ≥ 4.53 turns them into a block-diagonal causal
    mask (``masking_utils.find_packed_sequence_indices``) — but only when ``attention_mask`` is
    None, which is why none is passed. ``flatten`` puts the whole micro-batch in one row
    (FlashAttention reads packing from ``position_ids`` only at batch size 1); otherwise each
    bin is a row, and padding at its end is one more segment of its own, with labels -100.
    Call the model with ``use_cache=False``: transformers looks for packed rows only when there is
    no KV cache, and ``use_cache`` defaults to True in a model's config.
    :func:`winnow.training.model.check_packing` proves on the live model that nothing leaks.
    """
    if not packed:
        examples: list[Example] = list(units)  # type: ignore[arg-type]
        width = max(len(e) for e in examples)
        ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
        labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
        attention = torch.zeros((len(examples), width), dtype=torch.long)
        for r, e in enumerate(examples):
            ids[r, : len(e)] = torch.tensor(e.input_ids)
            labels[r, : len(e)] = torch.tensor(e.labels)
            attention[r, : len(e)] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": attention}
    rows: list[list[Example]] = [list(unit) for unit in units]  # type: ignore[arg-type]
    if flatten:
        rows = [[e for row in rows for e in row]]
    width = max(sum(len(e) for e in row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        at = 0
        for e in row:
            ids[r, at : at + len(e)] = torch.tensor(e.input_ids)
            labels[r, at : at + len(e)] = torch.tensor(e.labels)
            positions[r, at : at + len(e)] = torch.arange(len(e))
            at += len(e)
        positions[r, at:] = torch.arange(width - at)  # padding: a segment of its own
    return {"input_ids": ids, "labels": labels, "position_ids": positions}


def micro_batches(units: Sequence[Any], batch_size: int, seed: int) -> Iterator[tuple[int, list[Any]]]:
    """``(epoch, units)`` forever: each epoch a fresh seeded permutation, cut into batches."""
    epoch = 0
    while True:
        order = np.random.default_rng([seed, epoch]).permutation(len(units))
        for start in range(0, len(order), batch_size):
            yield epoch, [units[i] for i in order[start : start + batch_size]]
        epoch += 1


def make_units(examples: Sequence[Example], max_len: int, packing: bool) -> list[Any]:
    """What a micro-batch is made of: examples, or bins of examples when packing."""
    if not packing:
        return list(examples)
    return [[examples[i] for i in b] for b in pack([len(e) for e in examples], max_len)]
