"""The CLI as a user and a script see it: subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_pipeline import ROWS, write_jsonl
from winnow.corpus import Corpus, parse_ref


def winnow(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "winnow", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def pipeline(tmp_path: Path, data: Path, stages: str = "[exact_dedup: {}, length: {}]") -> Path:
    path = tmp_path / "p.yaml"
    out = tmp_path / "corpus"
    path.write_text(f"name: demo\ninputs:\n  - path: {data}\nstages: {stages}\noutput: {out}\n")
    return path


def assert_clean_error(r: subprocess.CompletedProcess, *needles: str) -> None:
    assert r.returncode != 0
    assert "Traceback" not in r.stderr + r.stdout
    message = " ".join(r.stderr.split())
    assert message.startswith("error:"), r.stderr
    for needle in needles:
        assert needle in message, message


def test_help_and_stages() -> None:
    assert winnow("--help").returncode == 0
    r = winnow("stages")
    assert r.returncode == 0 and "exact_dedup" in r.stdout and "length" in r.stdout
    r = winnow("stages", "length")
    assert r.returncode == 0 and "min_response" in r.stdout and "fewest units" in r.stdout
    assert_clean_error(winnow("stages", "lenght"), "unknown stage 'lenght'", "did you mean 'length'")


def test_run_inspect_and_rerun(tmp_path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", ROWS)
    r = winnow("run", str(pipeline(tmp_path, data)), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "exact_dedup" in r.stdout and "exact duplicate (1)" in r.stdout and "wrote" in r.stdout
    assert "format alpaca" in r.stderr
    assert Corpus(tmp_path / "corpus").versions() == ["v1"]
    r = winnow("run", str(pipeline(tmp_path, data)))
    assert r.returncode == 0 and "up to date" in r.stdout
    r = winnow("inspect", f"{tmp_path / 'corpus'}@v1", "--rows", "1")
    assert r.returncode == 0 and "rows: 2 train" in r.stdout
    facts = json.loads(winnow("inspect", str(tmp_path / "corpus"), "--json").stdout)
    assert facts["version"] == "v1" and facts["counts"]["input"] == 4
    assert_clean_error(winnow("inspect", f"{tmp_path / 'corpus'}@v9"), "has no version 'v9'")


def test_output_flag_replaces_the_pipeline_output(tmp_path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", ROWS)
    r = winnow("run", str(pipeline(tmp_path, data)), "--output", str(tmp_path / "elsewhere"))
    assert r.returncode == 0, r.stderr
    assert Corpus(tmp_path / "elsewhere").versions() == ["v1"]
    assert not (tmp_path / "corpus").exists()


def test_same_bytes_for_any_batch_size_and_worker_count(tmp_path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", ROWS * 30)
    p = pipeline(tmp_path, data)
    manifests = []
    for i, (batch, workers) in enumerate([("7", "1"), ("1000", "2"), ("1", "2")]):
        out = tmp_path / f"c{i}"
        r = winnow("run", str(p), "--output", str(out), "--batch-size", batch, "--workers", workers)
        assert r.returncode == 0, r.stderr
        manifests.append(Corpus(out).manifest())
    for m in manifests[1:]:
        assert m["shards"] == manifests[0]["shards"]
        assert m["fingerprint"] == manifests[0]["fingerprint"]


def test_malformed_line_names_file_and_line(tmp_path) -> None:
    bad = tmp_path / "broken.jsonl"
    bad.write_text('{"instruction": "a", "output": "b"}\n{"instruction": \n')
    assert_clean_error(winnow("run", str(pipeline(tmp_path, bad))), "broken.jsonl", "line 2")
    assert not (tmp_path / "corpus").exists() or Corpus(tmp_path / "corpus").versions() == []


def test_skip_routes_bad_rows_to_rejected(tmp_path) -> None:
    bad = tmp_path / "broken.jsonl"
    bad.write_text('{"instruction": "a", "output": "b"}\n{"instruction": \n{"instruction": "c", "output": "x"}\n')
    p = tmp_path / "p.yaml"
    p.write_text(f"inputs:\n  - path: {bad}\n    on_error: skip\noutput: {tmp_path / 'corpus'}\n")
    r = winnow("run", str(p))
    assert r.returncode == 0, r.stderr
    rejected = Corpus(tmp_path / "corpus").rejected()
    assert list(rejected["stage"]) == ["ingest"]
    assert "line 2" in rejected["reason"][0]
    assert json.loads(rejected["meta"][0])["raw"] == '{"instruction": '  # the raw line is kept


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        (None, ["missing.jsonl", "file not found"]),
        ("", ["empty.jsonl"]),
        ('{"foo": 1, "bar": 2}\n', ["weird.jsonl", "foo", "format"]),
    ],
)
def test_file_level_problems_are_one_sentence(tmp_path, content, needles) -> None:
    name = {None: "missing.jsonl", "": "empty.jsonl"}.get(content, "weird.jsonl")
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    assert_clean_error(winnow("run", str(pipeline(tmp_path, path))), *needles)


def test_config_errors_and_debug(tmp_path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", ROWS)
    p = pipeline(tmp_path, data, stages="[{exact_dedup: {keep: last}}]")
    assert_clean_error(winnow("run", str(p)), "p.yaml, line 4", "parameter 'keep'", "'first'")
    r = winnow("--debug", "run", str(p))
    assert r.returncode != 0 and "Traceback" in r.stderr
    assert_clean_error(winnow("run", str(tmp_path / "nope.yaml")), "does not exist")


def test_parse_ref() -> None:
    assert parse_ref("corpus/x@v3") == (Path("corpus/x"), "v3")
    assert parse_ref("corpus/x") == (Path("corpus/x"), "latest")
    assert parse_ref("corpus/x@latest") == (Path("corpus/x"), "latest")
    assert parse_ref("corpus/x@2") == (Path("corpus/x"), "2")


def test_log_diff_trace_and_inspect_filters(tmp_path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", ROWS)
    p = pipeline(tmp_path, data)
    assert winnow("run", str(p)).returncode == 0
    p.write_text(p.read_text().replace("length: {}", "length: {min_response: 5}"))
    assert winnow("run", str(p)).returncode == 0
    c = str(tmp_path / "corpus")
    r = winnow("log", c)
    assert r.returncode == 0 and "v2" in r.stdout and "v1" in r.stdout
    entries = json.loads(winnow("log", c, "--json").stdout)
    assert [e["version"] for e in entries] == ["v2", "v1"]
    assert entries[0]["changes"] == ["length.min_response: 1 → 5"]
    d = json.loads(winnow("diff", f"{c}@v1", f"{c}@v2", "--show", "2", "--json").stdout)
    assert (d["added"], d["removed"], d["unchanged"]) == (0, 1, 1)
    assert d["samples"]["removed"][0]["note"].startswith("removed in B by length")
    assert winnow("diff", f"{c}@v1", f"{c}@v2").returncode == 0
    rejected = json.loads(winnow("inspect", c, "--rejected", "--stage", "length", "--json").stdout)
    assert rejected["matching"] == 2 and {r["stage"] for r in rejected["rows"]} == {"length"}
    by_reason = json.loads(winnow("inspect", c, "--rejected", "--reason", "EXACT", "--json").stdout)
    assert by_reason["matching"] == 1
    where = json.loads(winnow("inspect", c, "--where", "len(response) > 5", "--json").stdout)
    assert where["matching"] == 1 and where["rows"][0]["messages"][1]["content"] == "Cats sleep much."
    sample = json.loads(winnow("inspect", c, "--rejected", "--sample", "2", "--seed", "3", "--json").stdout)
    assert len(sample["rows"]) == 2
    assert_clean_error(winnow("inspect", c, "--where", "__import__('os')"), "expression")
    assert_clean_error(winnow("inspect", c, "--stage", "length"), "add --rejected")
    row_id = rejected["rows"][0]["id"]
    t = json.loads(winnow("trace", c, row_id, "--json").stdout)
    assert t["versions"][0]["where"] in ("train", "validation")  # kept in v1 …
    assert (t["versions"][1]["where"], t["versions"][1]["stage"]) == ("rejected", "length")  # … removed in v2
    assert winnow("trace", c, row_id).returncode == 0
    assert_clean_error(winnow("trace", c, "nope"), "no row with id nope")
