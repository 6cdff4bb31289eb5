"""Shared fixtures: tiny canonical tables and the location of the real data in ../shared."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from winnow import schema

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

needs_shared = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason="../shared/data (the real instruction datasets) is not beside the repo"
)


def conversation(*turns: str, system: str | None = None) -> list[dict[str, str]]:
    """user, assistant, user, … messages from plain strings."""
    msgs = [{"role": "system", "content": system}] if system else []
    roles = ["user", "assistant"]
    return msgs + [{"role": roles[i % 2], "content": t} for i, t in enumerate(turns)]


def table(rows: list[Any], source: str = "test") -> pa.Table:
    """A canonical table with ``_order`` from conversations (lists of messages) or
    (instruction, response) pairs."""
    records = []
    for i, row in enumerate(rows):
        messages = conversation(*row) if isinstance(row, tuple) else row
        records.append(
            {
                "id": schema.row_id(source, i, messages),
                "messages": messages,
                "source": source,
                "source_index": i,
                "meta": "{}",
            }
        )
    t = schema.make_table(records)
    return t.append_column(schema.ORDER, pa.array(range(t.num_rows), pa.int64()))


@pytest.fixture
def sample_rows() -> pa.Table:
    """Rows that give every built-in stage something to do."""
    return table(
        [
            ("What is the capital of France?", "Paris."),
            ("what is the  capital of FRANCE?", "paris."),  # duplicate after normalization
            ("Name a prime number.", ""),  # empty response
            ("Write a haiku about rain.", "Soft rain on tin roofs\nthe gutters hum low\nwe stay in"),
            ("What is the capital of France?", "The capital of France is Paris."),  # same instruction
            ("Translate 'cat' to German.", "Katze"),
            ("Hi", "Hello! How can I help?", "Tell me a joke.", "Why did the chicken cross the road?"),
            ("What is the capital of France?", "Paris."),  # exact copy of row 0
            ("Summarize: The meeting moved to Tuesday because the room was booked.", "   "),
            ("List three fruits.", "Apple, banana, cherry."),
        ]
    )
