"""The canonical record every stage sees (DESIGN.md §1).

Columns: ``id``, ``messages`` (list of role/content structs), ``source``, ``source_index``,
``task_type``, ``lang`` and ``meta`` (JSON of every original field the adapter did not map).
Stages may add columns; they never drop these.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa

ROLES = ("system", "user", "assistant", "tool")

MESSAGE = pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())])

SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("messages", pa.list_(MESSAGE)),
        pa.field("source", pa.string()),
        pa.field("source_index", pa.int64()),
        pa.field("task_type", pa.string()),
        pa.field("lang", pa.string()),
        pa.field("meta", pa.string()),
    ]
)
COLUMNS = tuple(SCHEMA.names)

#: Columns of a ``rejected/`` table: the canonical ones plus where and why the row left.
REJECTED_SCHEMA = SCHEMA.append(pa.field("stage", pa.string())).append(pa.field("reason", pa.string()))

#: Position of a row in ingest order. The engine carries it between stages so that "first"
#: means the same row whatever the batching; it is never written to a corpus.
ORDER = "_order"


def row_id(source: str, index: int, messages: Sequence[Mapping[str, Any]]) -> str:
    """Stable identity: a hash of source name, position and content.

    Two identical rows in one file get different ids (their positions differ); an unchanged row
    keeps its id in every version.
    """
    content = json.dumps([[m["role"], m["content"]] for m in messages], ensure_ascii=False)
    h = hashlib.blake2b(digest_size=16)
    h.update(source.encode("utf-8", "surrogatepass"))
    h.update(b"\0")
    h.update(str(index).encode())
    h.update(b"\0")
    h.update(content.encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def make_table(records: Iterable[Mapping[str, Any]], schema: pa.Schema = SCHEMA) -> pa.Table:
    """Build a canonical table from dict records (missing optional columns become null)."""
    rows = list(records)
    return pa.Table.from_pylist([{name: r.get(name) for name in schema.names} for r in rows], schema=schema)


def empty(schema: pa.Schema = SCHEMA) -> pa.Table:
    return schema.empty_table()


def canonical(table: pa.Table, schema: pa.Schema = SCHEMA) -> pa.Table:
    """The canonical columns of ``table`` in schema order, cast to their canonical types."""
    missing = [n for n in schema.names if n not in table.column_names]
    if missing:
        raise ValueError(f"table lacks canonical column(s) {missing}")
    return table.select(list(schema.names)).cast(schema)


def without_internal(table: pa.Table) -> pa.Table:
    """Drop engine-internal columns (those starting with '_') before writing."""
    return table.select([n for n in table.column_names if not n.startswith("_")])
