"""from_object: DataFrames, Arrow tables, datasets.Dataset and lists of dicts."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from winnow import schema
from winnow.errors import InputError
from winnow.formats import from_object

from ._helpers import ALPACA, ingest, write_jsonl


def _same_as_file(table: pa.Table, source: str) -> None:
    assert table.schema == schema.SCHEMA
    assert table.column("source").to_pylist() == [source] * 3
    assert table.column("messages")[0].as_py() == [
        {"role": "user", "content": "Add the numbers.\n\n2 and 3"},
        {"role": "assistant", "content": "5"},
    ]
    assert table.column("id")[1].as_py() == schema.row_id(source, 1, table.column("messages")[1].as_py())


def test_dataframe_arrow_list_dataset_agree(tmp_path: Path) -> None:
    from_file = ingest(write_jsonl(tmp_path / "a.jsonl", ALPACA), name="demo")
    tables = [
        from_object(pd.DataFrame(ALPACA), name="demo").to_table(),
        from_object(pa.Table.from_pylist(ALPACA), name="demo").to_table(),
        from_object(list(ALPACA), name="demo").to_table(),
    ]
    datasets = pytest.importorskip("datasets")
    tables.append(from_object(datasets.Dataset.from_list(ALPACA), name="demo").to_table())
    for table in tables:
        _same_as_file(table, "demo")
        assert table.equals(from_file)


def test_default_names_and_fingerprints() -> None:
    src = from_object(pa.Table.from_pylist(ALPACA))
    assert src.to_table().column("source")[0].as_py() == "arrow_table"
    fp = src.fingerprint()
    assert fp == from_object(pa.Table.from_pylist(ALPACA)).fingerprint()
    assert fp != from_object(pa.Table.from_pylist(ALPACA[:2])).fingerprint()
    assert len(from_object(list(ALPACA)).fingerprint()) == 64
    assert from_object(pd.DataFrame(ALPACA)).describe()["files"][0]["format"] is None  # not read yet


def test_canonical_table_keeps_ids() -> None:
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    df = pd.DataFrame(
        {
            "messages": [msgs, msgs],
            "id": ["keep-me", None],
            "task_type": ["code", None],
            "meta": ['{"a": 1}', None],
            "score": [0.5, 0.7],
        }
    )
    src = from_object(df, name="nb")
    table = src.to_table()
    got = table.to_pylist()
    assert got[0]["id"] == "keep-me"
    assert got[1]["id"] == schema.row_id("nb", 1, msgs)
    assert got[0]["task_type"] == "code"
    assert json.loads(got[0]["meta"]) == {"a": 1, "score": 0.5}
    assert src.describe()["files"][0]["format"] == "canonical"


def test_canonical_without_id_column() -> None:
    table = from_object([{"messages": [{"role": "user", "content": "hi"}]}], name="n").to_table()
    assert table.column("id")[0].as_py() == schema.row_id("n", 0, [{"role": "user", "content": "hi"}])


def test_unsupported_object() -> None:
    with pytest.raises(InputError, match="cannot read a int"):
        from_object(5)
    with pytest.raises(InputError, match=r"record 1: the record is a str"):
        from_object([ALPACA[0], "x"]).to_table()
