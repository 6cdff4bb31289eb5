"""Vectorized text views of conversations, shared by the stages that compare or measure text.

Everything here works on whole Arrow arrays (no Python loop per row), so it is cheap enough to
call from any stage on every batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: Which roles each comparison target covers (shared by exact and near-duplicate removal).
TARGETS: dict[str, tuple[str, ...]] = {
    "instruction": ("user",),
    "response": ("assistant",),
    "conversation": ("system", "user", "assistant", "tool"),
}


def role_text(messages: pa.Array | pa.ChunkedArray, roles: Sequence[str], sep: str = "\n") -> pa.Array:
    """The contents of the messages with one of ``roles``, joined by ``sep``, one string per row.

    A row with no such message gives "" (never null), so lengths and hashes are defined.
    """
    if isinstance(messages, pa.ChunkedArray):
        messages = messages.combine_chunks()
    n = len(messages)
    flat = pc.list_flatten(messages)
    parents = pc.list_parent_indices(messages).to_numpy(zero_copy_only=False)
    role = flat.field("role")
    keep = pc.is_in(role, pa.array(list(roles), pa.string()))
    keep = pc.fill_null(keep, False)
    keep_np = keep.to_numpy(zero_copy_only=False)
    counts = np.bincount(parents[keep_np], minlength=n) if n else np.zeros(0, np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    contents = pc.fill_null(flat.field("content").filter(keep), "")
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), contents), sep)
    return pc.fill_null(joined, "")


def conversation_text(messages: pa.Array | pa.ChunkedArray, roles: Sequence[str]) -> pa.Array:
    """Like :func:`role_text`, but each turn is prefixed with its role, so that moving text
    between turns ("user: a / assistant: b" vs "user: a b") is a difference."""
    return role_text(
        map_contents(messages, lambda role, content: pc.binary_join_element_wise(role, content, "\x1f")),
        roles,
        sep="\x1e",
    )


def map_contents(messages: pa.Array | pa.ChunkedArray, fn: Callable[[pa.Array, pa.Array], pa.Array]) -> pa.Array:
    """A new messages array with ``content = fn(role, content)``, computed on all turns at once."""
    if isinstance(messages, pa.ChunkedArray):
        messages = messages.combine_chunks()
    flat = pc.list_flatten(messages)
    role = pc.fill_null(flat.field("role"), "")
    content = fn(role, pc.fill_null(flat.field("content"), ""))
    offsets = messages.offsets
    offsets = pc.subtract(offsets, offsets[0])  # a slice's offsets start where the slice does
    return pa.ListArray.from_arrays(offsets, pa.StructArray.from_arrays([role, content], names=["role", "content"]))


def normalize(text: pa.Array) -> pa.Array:
    """Unicode NFKC, lower case, runs of whitespace as one space, trimmed."""
    text = pc.utf8_normalize(text, form="NFKC")
    text = pc.utf8_lower(text)
    text = pc.replace_substring_regex(text, pattern=r"\s+", replacement=" ")
    return pc.utf8_trim_whitespace(text)


def digest(text: pa.Array) -> pa.Array:
    """128-bit content hashes (blake2b), one per string, as ``fixed_size_binary(16)``.

    128 bits so that a collision (two different texts called duplicates) is out of reach at any
    corpus size; hashlib runs at C speed, the loop only pays the call.
    """
    blake = hashlib.blake2b
    values = [blake(s.encode("utf-8", "surrogatepass"), digest_size=16).digest() for s in text.to_pylist()]
    return pa.array(values, pa.binary(16))
