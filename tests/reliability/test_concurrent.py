"""Concurrent writers: two runs on one corpus folder get two distinct, complete versions (or one
version and "up to date"), never a clobbered ``latest`` or a number taken twice."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pyarrow as pa
import pytest

from tests.reliability._util import finish, make_jsonl, no_partial_versions, start_run, write_pipeline
from winnow import Corpus, schema


def _check_corpus(out: Path, expected_versions: int) -> None:
    corpus = Corpus(out)
    versions = corpus.versions()
    assert versions == [f"v{i}" for i in range(1, expected_versions + 1)], versions
    assert os.readlink(out / "latest") == versions[-1]
    for name in versions:
        assert corpus.manifest(name)["version"] == name
    no_partial_versions(out)
    assert not [p for p in out.iterdir() if p.name.startswith((".tmp-", ".latest-"))]


def _race(tmp_path: Path, rounds: int, rows: int) -> None:
    """Two different pipelines (so neither is 'up to date') and, in a second race, the same
    pipeline twice, started together on one corpus."""
    a = make_jsonl(tmp_path / "a.jsonl", rows, seed=1)
    b = make_jsonl(tmp_path / "b.jsonl", rows, seed=2)
    out = tmp_path / "corpus"
    pa_, pb = write_pipeline(tmp_path / "a.yaml", [a], out), write_pipeline(tmp_path / "b.yaml", [b], out)
    expected = 0
    for _ in range(rounds):
        procs = [start_run(pa_, "--workers", "1", "--force"), start_run(pb, "--workers", "1", "--force")]
        results = [finish(p, 120) for p in procs]
        for proc, (_, err, hung) in zip(procs, results):
            assert not hung and proc.returncode == 0, err
        expected += 2
        _check_corpus(out, expected)
        # the two versions come from the two pipelines: neither overwrote the other
        sources = {Corpus(out).manifest(f"v{expected - i}")["inputs"][0]["files"][0]["path"] for i in range(2)}
        assert sources == {str(a), str(b)}
    # the same pipeline twice without --force: two versions or one and "up to date"
    c = make_jsonl(tmp_path / "c.jsonl", rows, seed=3)
    pc = write_pipeline(tmp_path / "c.yaml", [c], out)
    procs = [start_run(pc, "--workers", "1"), start_run(pc, "--workers", "1")]
    results = [finish(p, 120) for p in procs]
    for proc, (_, err, hung) in zip(procs, results):
        assert not hung and proc.returncode == 0, err
    up_to_date = sum("up to date" in out_ for out_, _, _ in results)
    assert up_to_date in (0, 1)
    _check_corpus(out, expected + 2 - up_to_date)


def test_two_processes_one_corpus(tmp_path: Path) -> None:
    _race(tmp_path, rounds=1, rows=3_000)


@pytest.mark.slow
def test_two_processes_one_corpus_repeated(tmp_path: Path) -> None:
    _race(tmp_path, rounds=5, rows=20_000)


def test_many_threads_commit_at_once(tmp_path: Path) -> None:
    """The lock is a file lock (per open file), so it holds between threads of one process too:
    16 drafts committed at once get v1..v16 and `latest` names v16."""
    corpus = Corpus(tmp_path / "corpus")
    table = schema.make_table(
        [{"id": "x", "messages": [{"role": "user", "content": "hi"}], "source": "s", "source_index": 0, "meta": "{}"}]
    )
    barrier = threading.Barrier(16)
    names: list[str] = []
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            with corpus.draft() as draft:
                shards = draft.write_data([table], 0.0, 0, table.schema)
                barrier.wait()
                names.append(draft.commit({"fingerprint": str(i), "counts": {"input": 1}, "shards": shards}))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sorted(names, key=lambda n: int(n[1:])) == [f"v{i}" for i in range(1, 17)]
    assert corpus.versions() == [f"v{i}" for i in range(1, 17)]
    assert corpus.latest() == "v16" and os.readlink(corpus.path / "latest") == "v16"
    fingerprints = {json.loads((corpus.path / n / "manifest.json").read_text())["fingerprint"] for n in names}
    assert len(fingerprints) == 16
    assert all(pa.Table.equals(corpus.load(n, format="arrow"), corpus.load("v1", format="arrow")) for n in names)
