"""Duplicate removal. ``exact_dedup`` here; MinHash near-duplicates build on the same keep rules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from winnow import schema, text
from winnow.stages.base import GlobalStage, Verdict, register

Target = Literal["conversation", "instruction", "response"]
KeepRule = Literal["first", "longest_response", "most_turns"]


def compared_text(batch: pa.Table, on: str, normalize: bool) -> pa.Array:
    """The text two rows are compared on, after the shared normalization."""
    messages = batch.column("messages")
    if normalize:  # per turn, so that a trailing space in one turn is not a difference
        messages = text.map_contents(messages, lambda _role, content: text.normalize(content))
    if on == "conversation":
        return text.conversation_text(messages, text.TARGETS[on])
    return text.role_text(messages, text.TARGETS[on])


def keep_rank(batch: pa.Table, keep: str) -> np.ndarray:
    """Higher survives; ties go to the earlier row in source order (never arrival order)."""
    if keep == "longest_response":
        return text_lengths(text.role_text(batch.column("messages"), text.TARGETS["response"]))
    if keep == "most_turns":
        return pc.list_value_length(batch.column("messages")).fill_null(0).to_numpy().astype(np.int64)
    return np.zeros(batch.num_rows, np.int64)


def text_lengths(values: pa.Array) -> np.ndarray:
    return pc.utf8_length(values).to_numpy(zero_copy_only=False).astype(np.int64)


@dataclass
class _Duplicates:
    """Rows to drop, by ingest position (sorted), and the id of the row each one duplicates."""

    orders: np.ndarray
    survivors: np.ndarray


@register
class ExactDedup(GlobalStage):
    """Remove rows whose normalized text equals that of a row that is kept.

    Rows whose compared text is empty (say, ``on: response`` with no answer) are never called
    duplicates: emptiness is a length or quality problem, not duplication.

    Args:
        on: what is compared: ``conversation`` (every turn with its role), ``instruction`` (user
            turns) or ``response`` (assistant turns).
        keep: which copy survives: ``first`` (source order), ``longest_response`` or
            ``most_turns``; ties go to the first in source order.
        normalize: compare after Unicode NFKC, lower-casing and collapsing whitespace.

    >>> ExactDedup(on="instruction", keep="longest_response")
    ExactDedup(on='instruction', keep='longest_response', normalize=True)
    """

    name = "exact_dedup"

    def __init__(self, on: Target = "conversation", keep: KeepRule = "first", normalize: bool = True) -> None:
        self.on = on
        self.keep = keep
        self.normalize = normalize

    def summarize(self, batch: pa.Table) -> pa.Table:
        key = compared_text(batch, self.on, self.normalize)
        nonempty = pc.greater(pc.utf8_length(key), 0)
        partial = pa.table(
            {
                "hash": text.digest(key),
                "order": batch.column(schema.ORDER),
                "rank": pa.array(keep_rank(batch, self.keep)),
                "id": batch.column("id"),
            }
        )
        return partial.filter(nonempty)

    def combine(self, partials: list[pa.Table]) -> _Duplicates:
        table = pa.concat_tables(partials) if partials else None
        if table is None or table.num_rows == 0:
            return _Duplicates(np.zeros(0, np.int64), np.zeros(0, object))
        words = np.frombuffer(table.column("hash").combine_chunks().buffers()[1], dtype=np.uint64)
        hi, lo = words[0::2], words[1::2]
        order = table.column("order").to_numpy()
        rank = table.column("rank").to_numpy()
        idx = np.lexsort((order, -rank, lo, hi))
        hi, lo = hi[idx], lo[idx]
        new_group = np.ones(len(idx), bool)
        new_group[1:] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])
        group_start = np.maximum.accumulate(np.where(new_group, np.arange(len(idx)), 0))
        dup = ~new_group
        ids = table.column("id").to_numpy(zero_copy_only=False)
        dup_orders = order[idx][dup]
        survivors = ids[idx][group_start][dup]
        sort = np.argsort(dup_orders, kind="stable")
        return _Duplicates(dup_orders[sort], survivors[sort])

    def reasons(self, batch: pa.Table, state: _Duplicates) -> Verdict:
        orders = batch.column(schema.ORDER).to_numpy()
        pos = np.searchsorted(state.orders, orders)
        pos_ok = np.minimum(pos, max(len(state.orders) - 1, 0))
        hit = (
            (pos < len(state.orders)) & (state.orders[pos_ok] == orders)
            if len(state.orders)
            else np.zeros(len(orders), bool)
        )
        reasons = [f"exact duplicate of {state.survivors[p]}" if h else None for p, h in zip(pos_ok, hit)]
        kinds = ["exact duplicate" if h else None for h in hit]
        return Verdict(pa.array(reasons, pa.string()), pa.array(kinds, pa.string()))
