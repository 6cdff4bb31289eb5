"""Fixtures for the ingest tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from ._helpers import ALPACA, write_jsonl


@pytest.fixture
def alpaca_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "alpaca.jsonl", ALPACA)
