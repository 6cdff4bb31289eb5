from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import datasets
import pyarrow as pa
import pytest

from tests.conftest import table
from winnow import corpus as corpus_mod
from winnow import schema
from winnow.corpus import Corpus, validation_mask
from winnow.errors import CorpusError


def rows(n: int) -> pa.Table:
    return schema.without_internal(table([(f"question {i}", f"answer {i}") for i in range(n)]))


def commit(root: Path, t: pa.Table, chunk: int = 1000, validation: float = 0.2) -> str:
    c = Corpus(root)
    with c.draft() as d:
        chunks = [t.slice(i, chunk) for i in range(0, t.num_rows, chunk)]
        shards = d.write_data(chunks, validation, 0, t.schema)
        counts = {
            s: sum(x["rows"] for x in shards if x["path"].startswith(f"data/{s}-")) for s in ("train", "validation")
        }
        return d.commit(
            {
                "fingerprint": "f",
                "counts": {**counts, "input": t.num_rows, "rejected": 0},
                "schema": [],
                "shards": {"data": shards},
            }
        )


def test_versions_latest_and_load(tmp_path) -> None:
    root = tmp_path / "c"
    assert Corpus(root).versions() == []
    with pytest.raises(CorpusError, match="holds no corpus version"):
        Corpus(root).load()
    assert commit(root, rows(50)) == "v1"
    assert commit(root, rows(60)) == "v2"
    c = Corpus(root)
    assert c.versions() == ["v1", "v2"] and c.latest() == "v2"
    assert os.readlink(root / "latest") == "v2"
    assert len(c.load()) == 60 and len(c.load(version="v1")) == 50 and len(c.load(version=1)) == 50
    assert c.load(format="arrow").num_rows == 60
    dd = c.load(format="datasets")
    assert isinstance(dd, datasets.DatasetDict) and set(dd) == {"train", "validation"}
    assert dd["train"].num_rows + dd["validation"].num_rows == 60
    assert c.manifest("v2")["parent"] == "v1"
    with pytest.raises(CorpusError, match="has no version 'v9'; it has v1, v2"):
        c.load(version="v9")
    with pytest.raises(CorpusError, match="unknown split 'test'"):
        c.load(split="test")


def test_validation_split_is_stable_and_about_the_asked_fraction() -> None:
    ids = rows(4000).column("id")
    mask = validation_mask(ids, 0.1)
    assert 0.08 < mask.mean() < 0.12
    assert (validation_mask(ids.slice(100, 50), 0.1) == mask[100:150]).all()  # depends only on the id
    assert validation_mask(ids, 0.0).sum() == 0
    assert validation_mask(ids, 1.0).all()
    assert (validation_mask(ids, 0.1, seed=1) != mask).any()


def test_same_rows_same_bytes_whatever_the_chunking(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(corpus_mod, "ROW_GROUP_ROWS", 7)
    monkeypatch.setattr(corpus_mod, "SHARD_ROWS", 21)
    t = rows(100)
    commit(tmp_path / "a", t, chunk=1)
    commit(tmp_path / "b", t, chunk=33)
    a = Corpus(tmp_path / "a").manifest()["shards"]["data"]
    b = Corpus(tmp_path / "b").manifest()["shards"]["data"]
    assert a == b
    names = [x["path"] for x in a]
    assert names[0].startswith("data/train-00000-of-0000") and sum(x["rows"] for x in a) == 100
    assert len([n for n in names if "train" in n]) > 1


def test_a_failed_run_leaves_no_version(tmp_path) -> None:
    c = Corpus(tmp_path / "c")
    with pytest.raises(RuntimeError), c.draft() as d:
        (d.folder / "data").mkdir()
        raise RuntimeError("crash while writing")
    assert c.versions() == []
    assert not list((tmp_path / "c").glob(".tmp-*"))


def test_leftovers_of_dead_runs_are_cleaned(tmp_path) -> None:
    root = tmp_path / "c"
    root.mkdir()
    (root / ".tmp-999999999-dead").mkdir()
    (root / "v7").mkdir()  # a folder without manifest is not a version
    commit(root, rows(5))
    assert not (root / ".tmp-999999999-dead").exists()
    assert Corpus(root).versions() == ["v8"]  # numbers are never reused


def _commit_in_process(root: str, n: int) -> str:
    return commit(Path(root), rows(n))


def test_concurrent_writers_get_distinct_complete_versions(tmp_path) -> None:
    root = str(tmp_path / "c")
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        names = pool.starmap(_commit_in_process, [(root, 10 + i) for i in range(6)])
    assert sorted(names, key=lambda v: int(v[1:])) == [f"v{i}" for i in range(1, 7)]
    c = Corpus(root)
    assert c.versions() == [f"v{i}" for i in range(1, 7)]
    assert c.latest() in c.versions()
    assert sorted(len(c.load(version=v)) for v in c.versions()) == list(range(10, 16))


def test_load_dataset_reads_a_version_folder(tmp_path) -> None:
    commit(tmp_path / "c", rows(30))
    ds = datasets.load_dataset("parquet", data_dir=str(tmp_path / "c" / "v1" / "data"), cache_dir=str(tmp_path / "hf"))
    assert sum(s.num_rows for s in ds.values()) == 30
