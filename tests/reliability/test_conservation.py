"""Conservation: for every stage, rows in = rows kept + rows rejected, and a broken promise is
loud (InvariantError, exit 1, "this is a bug").

Hypothesis builds small tables of conversations (random roles and contents: empty strings,
duplicates, unicode, NUL) and random pipelines from the registered stages with default-ish
parameters (stages that need external files are left out), and runs them in memory and into a
written corpus version.
"""

from __future__ import annotations

import collections
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import winnow as wn
from tests.reliability._util import env, make_jsonl, write_pipeline
from winnow import Corpus, schema
from winnow.errors import ConfigError, InputError, InvariantError
from winnow.stages import Mapper, registry

#: parameter sets per stage (each must build); a registered stage not named here runs with {}
VARIANTS: dict[str, list[dict[str, Any]]] = {
    "exact_dedup": [{}, {"on": "instruction", "keep": "longest_response"}, {"on": "response", "keep": "most_turns"}],
    "minhash_dedup": [{}, {"threshold": 0.5, "num_perm": 32}, {"on": "instruction", "shingle": "word", "ngram": 2}],
    "decontaminate": [],  # needs benchmark files
    "expression": [{"keep": "len(response) > 3"}, {"drop": "'a' in instruction or turns > 2"}],
    "language": [{}, {"keep": ["en"], "mismatch": "drop", "min_chars": 5}],
    "length": [{}, {"min_instruction": 2, "max_response": 50, "unit": "words"}, {"min_turns": 2}],
    "pii": [{}, {"mode": "drop"}],
    "quality": [{}],
    "refusal": [{}],
    "regex": [{"pattern": "a+"}, {"pattern": "(?i)paris", "roles": ["user", "assistant"]}],
    "rephrase": [{}],
    "template": [{"on_error": "drop"}, {"template": {"name": "llama-3"}, "on_error": "drop"}],
}


def _configs() -> list[dict[str, Any]]:
    out = []
    for name in registry():
        for params in VARIANTS.get(name, [{}]):
            try:
                wn.stages.from_config({name: params})
            except (ConfigError, ImportError):
                continue
            out.append({name: params})
    return out


CONFIGS = _configs()
ROLES = ["system", "user", "assistant", "tool"]
TEXT = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "Paris.",
            "What is the capital of France?",
            "I cannot help with that.",
            "email me at a@b.co",
            "aaaa",
            "日本語のテキスト",
            "é\u0301",
            "\x00",
            "{{ x }}",
        ]
    ),
    st.text(max_size=40),
)
MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(ROLES), "content": TEXT})
CONVERSATION = st.lists(MESSAGE, min_size=1, max_size=5)


@st.composite
def tables(draw: st.DrawFn) -> pa.Table:
    pool = draw(st.lists(CONVERSATION, min_size=1, max_size=6))
    rows = draw(st.lists(st.sampled_from(pool), min_size=0, max_size=25))  # duplicates on purpose
    records = [
        {
            "messages": m,
            "source": draw(st.sampled_from(["a", "b"])),
            "task_type": draw(st.sampled_from([None, "open_qa", "code"])),
            "meta": "{}",
        }
        for m in rows
    ]
    if not records:
        return schema.empty().drop_columns(["id", "source_index"])
    return pa.Table.from_pylist(records).cast(
        pa.schema(
            [
                schema.SCHEMA.field("messages"),
                ("source", pa.string()),
                ("task_type", pa.string()),
                ("meta", pa.string()),
            ]
        )
    )


PIPELINES = st.lists(st.sampled_from(CONFIGS), min_size=1, max_size=4)


def _check(result: wn.pipeline.RunResult, n_in: int, kept: pa.Table, rejected: pa.Table) -> None:
    assert kept.num_rows + rejected.num_rows == n_in
    ids_kept, ids_rejected = kept.column("id").to_pylist(), rejected.column("id").to_pylist()
    assert len(set(ids_kept) | set(ids_rejected)) == n_in, "a row was duplicated or lost"
    assert not set(ids_kept) & set(ids_rejected)
    by_stage = collections.Counter(rejected.column("stage").to_pylist())
    removed: collections.Counter[str] = collections.Counter()
    for before, after in zip(result.stats, result.stats[1:]):
        assert after.rows_in == before.rows_out
    for s in result.stats:
        assert s.rows_in - s.rows_out == s.rejected or s.rejected == 0  # stats from a manifest carry no `rejected`
        removed[s.name] += s.removed
    assert result.stats[0].rows_in == n_in and result.stats[-1].rows_out == kept.num_rows
    assert +removed == by_stage, (removed, by_stage)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=tables(), stages=PIPELINES, batch_size=st.integers(1, 8))
def test_conservation_in_memory(data: pa.Table, stages: list[dict[str, Any]], batch_size: int) -> None:
    if data.num_rows == 0:
        with pytest.raises(InputError):
            wn.Pipeline(stages=stages).run(data, output=None, progress=False, workers=1)
        return
    result = wn.Pipeline(stages=stages).run(data, output=None, progress=False, workers=1, batch_size=batch_size)
    _check(result, data.num_rows, result.to_arrow(), result.rejected(format="arrow"))


@settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(data=tables(), stages=PIPELINES)
def test_conservation_in_a_written_version(tmp_path: Path, data: pa.Table, stages: list[dict[str, Any]]) -> None:
    if data.num_rows == 0:
        return
    out = tmp_path / f"corpus-{len(list(tmp_path.iterdir()))}"
    result = wn.Pipeline(stages=stages).run(data, output=out, progress=False, workers=1, batch_size=3)
    corpus = Corpus(out)
    manifest = corpus.manifest()
    kept, rejected = corpus.load(format="arrow"), corpus.rejected(format="arrow")
    _check(result, data.num_rows, kept, rejected)
    c = manifest["counts"]
    assert c["input"] == data.num_rows == c["train"] + c["validation"] + c["rejected"]


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=tables(), stages=PIPELINES, batch_size=st.integers(1, 8))
def test_conservation_in_memory_many(data: pa.Table, stages: list[dict[str, Any]], batch_size: int) -> None:
    test_conservation_in_memory.hypothesis.inner_test(data, stages, batch_size)  # type: ignore[attr-defined]


@pytest.mark.slow
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=tables(), stages=PIPELINES)
def test_conservation_with_worker_processes(data: pa.Table, stages: list[dict[str, Any]]) -> None:
    if data.num_rows == 0:
        return
    result = wn.Pipeline(stages=stages).run(data, output=None, progress=False, workers=2, batch_size=2)
    _check(result, data.num_rows, result.to_arrow(), result.rejected(format="arrow"))


# -- a broken promise is loud --------------------------------------------------------------------


class _Leaky(Mapper):
    """A buggy stage: drops every other row without a reason."""

    name = "leaky_test_stage"

    def transform(self, batch: pa.Table) -> pa.Table:
        return batch.slice(0, batch.num_rows // 2)


def test_lost_rows_raise_invariant_error(tmp_path: Path) -> None:
    rows = [{"instruction": f"q{i}", "input": "", "output": f"a{i}"} for i in range(10)]
    with pytest.raises(InvariantError, match="bug"):
        wn.Pipeline(stages=[_Leaky()]).run(rows, output=None, progress=False, workers=1)
    out = tmp_path / "corpus"
    with pytest.raises(InvariantError, match="bug"):
        wn.Pipeline(stages=[_Leaky()]).run(rows, output=out, progress=False, workers=1)
    assert Corpus(out).versions() == []
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]


def test_lost_rows_fail_the_cli_loudly(tmp_path: Path) -> None:
    """`winnow run` with a stage that loses rows: exit 1, one line that says it is a bug, no version."""
    src = make_jsonl(tmp_path / "in.jsonl", 20)
    out = tmp_path / "corpus"
    pipeline = write_pipeline(tmp_path / "p.yaml", [src], out, stages=[{"leaky_test_stage": {}}])
    script = textwrap.dedent(
        f"""
        import sys
        import pyarrow as pa
        from winnow.stages import Mapper, register

        @register
        class Leaky(Mapper):
            name = "leaky_test_stage"
            def transform(self, batch):
                return batch.slice(0, batch.num_rows // 2)

        from winnow.cli import main
        main(["run", {str(pipeline)!r}, "--workers", "1", "--no-progress"])
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env(), timeout=120)
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "bug" in lines[0], proc.stderr
    assert "rejected 0" in lines[0] or "lost" in lines[0]
    assert Corpus(out).versions() == []


def test_write_side_check_catches_a_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second check (pipeline._write: counts of the written shards) fires on its own too."""
    from winnow.engines import local

    monkeypatch.setattr(local, "_check_conservation", lambda stats: None)
    rows = [{"instruction": f"q{i}", "input": "", "output": f"a{i}"} for i in range(10)]
    out = tmp_path / "corpus"
    with pytest.raises(InvariantError, match="do not add up"):
        wn.Pipeline(stages=[_Leaky()]).run(rows, output=out, progress=False, workers=1)
    assert Corpus(out).versions() == []


def test_a_worker_that_dies_is_one_clear_line(tmp_path: Path) -> None:
    """A worker killed under a run (as the OOM killer does): exit 1, one line, no version."""
    src = make_jsonl(tmp_path / "in.jsonl", 40)
    out = tmp_path / "corpus"
    pipeline = write_pipeline(tmp_path / "p.yaml", [src], out, stages=[{"killed_worker_test_stage": {}}])
    script = tmp_path / "run.py"  # workers import this script: the stage class lives here
    script.write_text(
        textwrap.dedent(
            f"""
            import os, signal
            from winnow.stages import Mapper, register

            @register
            class KilledWorker(Mapper):
                name = "killed_worker_test_stage"
                def transform(self, batch):
                    os.kill(os.getpid(), signal.SIGKILL)

            if __name__ == "__main__":
                from winnow.cli import main
                main(["run", {str(pipeline)!r}, "--workers", "2", "--batch-size", "5", "--no-progress"])
            """
        )
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env(), timeout=120)
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: a worker process died during killed_worker_test_stage")
    assert Corpus(out).versions() == []
