"""Interrupted runs: SIGKILL and Ctrl-C at random points leave nothing a reader would list, no
process behind, and a corpus the next run cleans up and writes to."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.reliability._util import (
    PYTHON,
    corpus_entries,
    descendants,
    env,
    finish,
    kill_session,
    make_jsonl,
    no_partial_versions,
    session_members,
    start_run,
    wait_gone,
    write_pipeline,
)
from winnow import Corpus, Pipeline

#: rows of the big input: about 6 s for a 2-worker run on 2 cores (ingest ≈ 3 s, then the
#: exact_dedup pass, then the shards), so a random delay lands in every phase
BIG_ROWS = 200_000


@pytest.fixture(scope="module")
def big_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_jsonl(tmp_path_factory.mktemp("big") / "in.jsonl", BIG_ROWS)


def _dead_pid() -> int:
    proc = subprocess.Popen([PYTHON, "-c", "pass"])
    proc.wait()
    return proc.pid


def _tmp_dirs(folder: Path) -> list[str]:
    return [n for n in corpus_entries(folder) if n.startswith(".tmp-")]


def test_leftovers_of_dead_runs_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    src = make_jsonl(tmp_path / "in.jsonl", 50)
    out = tmp_path / "corpus"
    out.mkdir()
    dead = out / f".tmp-{_dead_pid()}-deadbeef"
    (dead / "data").mkdir(parents=True)
    (dead / "data" / "train-00000-of-00001.parquet").write_bytes(b"half a file")
    sleeper = subprocess.Popen([PYTHON, "-c", "import time; time.sleep(60)"])
    try:
        live = out / f".tmp-{sleeper.pid}-cafecafe"
        live.mkdir()
        stale_pointer = out / ".latest-0badf00d"  # a crash between symlink() and replace()
        os.symlink("v9", stale_pointer)
        assert Corpus(out).versions() == []
        result = Pipeline(inputs=[str(src)], stages=[{"exact_dedup": {}}], output=out).run(progress=False, workers=1)
        assert result.version == "v1"
        assert not dead.exists()
        assert live.exists(), "the draft of a live run must not be touched"
        assert not os.path.lexists(stale_pointer)
        assert os.readlink(out / "latest") == "v1"
        no_partial_versions(out)
    finally:
        sleeper.kill()
        sleeper.wait()


def _kill_and_check(pipeline: Path, out: Path, delay: float, workers: str = "2") -> int:
    """Start a run, SIGKILL its main process after ``delay`` s (as `kill -9 PID` does); check
    that nothing partial is listed and that no worker or fork server outlives it."""
    before = set(Corpus(out).versions())
    proc = start_run(pipeline, "--workers", workers, "--force")
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    finish(proc, 10)
    try:
        left = wait_gone(proc.pid, 5)
        assert not left, f"processes outlived a SIGKILLed run: {left}"
    finally:
        kill_session(proc.pid)
    no_partial_versions(out)
    after = set(Corpus(out).versions())
    assert len(after - before) <= 1
    return proc.pid


def _complete_run(pipeline: Path, out: Path) -> None:
    proc = start_run(pipeline, "--workers", "2", "--force")
    stdout, stderr, hung = finish(proc, 120)
    assert not hung, stderr
    assert proc.returncode == 0, stderr
    assert "wrote" in stdout
    assert _tmp_dirs(out) == [], "the run did not clean the drafts of the killed runs"
    no_partial_versions(out)
    assert os.readlink(out / "latest") == Corpus(out).versions()[-1]
    assert not session_members(proc.pid)


def test_sigkill_once_then_next_run_succeeds(tmp_path: Path) -> None:
    src = make_jsonl(tmp_path / "in.jsonl", 30_000)
    out = tmp_path / "corpus"
    pipeline = write_pipeline(tmp_path / "p.yaml", [src], out)
    _kill_and_check(pipeline, out, random.uniform(1.2, 2.5))
    _complete_run(pipeline, out)


@pytest.mark.slow
def test_sigkill_at_random_points(tmp_path: Path, big_input: Path) -> None:
    out = tmp_path / "corpus"
    pipeline = write_pipeline(tmp_path / "p.yaml", [big_input], out)
    rng = random.Random(int(os.environ.get("WINNOW_SEED", time.time())))
    # startup + ingest (< 3.5 s), the global stage's pass, the shards (> 5 s)
    delays = [rng.uniform(0.5, 3.5), rng.uniform(3.5, 5.0), rng.uniform(5.0, 7.5), rng.uniform(0.5, 7.5)]
    dead = [_kill_and_check(pipeline, out, d) for d in delays]
    _complete_run(pipeline, out)
    assert not any(re.match(rf"\.tmp-({'|'.join(map(str, dead))})-", n) for n in corpus_entries(out))


def _interrupt(pipeline: Path, out: Path, delay: float, workers: str = "2") -> None:
    before = set(Corpus(out).versions())
    proc = start_run(pipeline, "--workers", workers, "--force")
    time.sleep(delay)
    children = [c.pid for c in descendants(proc.pid)]
    started = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal signals the whole group
    _stdout, stderr, hung = finish(proc, 10)
    took = time.monotonic() - started
    try:
        assert not hung, f"Ctrl-C did not stop the run:\n{stderr}"
        left = wait_gone(proc.pid, 2)
        assert not left, f"processes outlived Ctrl-C: {left} (children were {children})"
    finally:
        kill_session(proc.pid)
    lines = [line for line in stderr.splitlines() if line.strip()]
    after = set(Corpus(out).versions())
    if proc.returncode == 0:  # Ctrl-C came after the run had finished its work
        assert len(after - before) == 1, stderr
    else:
        assert proc.returncode == 130, stderr
        assert took < 2.0, f"Ctrl-C took {took:.1f} s"
        if after == before:
            assert lines == ["interrupted: nothing was written"], stderr
        else:  # Ctrl-C came once the version was published: the message must say so
            (new,) = after - before
            assert lines == [f"interrupted after writing {out / new} (complete)"], stderr
    no_partial_versions(out)


@pytest.mark.slow
def test_ctrl_c_stops_quickly_with_one_line_and_no_orphans(tmp_path: Path, big_input: Path) -> None:
    out = tmp_path / "corpus"
    pipeline = write_pipeline(tmp_path / "p.yaml", [big_input], out)
    rng = random.Random(int(os.environ.get("WINNOW_SEED", time.time())))
    # includes the moment the fork server starts and imports winnow (≈ 3-4 s in)
    for delay in [rng.uniform(0.5, 3.0), *[rng.uniform(3.0, 5.0) for _ in range(3)], rng.uniform(5.0, 7.0)]:
        _interrupt(pipeline, out, delay)
    _complete_run(pipeline, out)


def test_ctrl_c_during_a_small_run(tmp_path: Path) -> None:
    src = make_jsonl(tmp_path / "in.jsonl", 30_000)
    out = tmp_path / "corpus"
    pipeline = write_pipeline(tmp_path / "p.yaml", [src], out)
    _interrupt(pipeline, out, random.uniform(1.2, 2.2))


def test_ctrl_c_while_the_command_starts(tmp_path: Path) -> None:
    """In the first half second the CLI is still importing its libraries: same one line."""
    src = make_jsonl(tmp_path / "in.jsonl", 1_000)
    out = tmp_path / "corpus"
    pipeline = write_pipeline(tmp_path / "p.yaml", [src], out)
    _interrupt(pipeline, out, random.uniform(0.25, 0.6))


def test_ctrl_c_after_the_version_is_published_says_so(tmp_path: Path) -> None:
    """Ctrl-C once the version is in place (here: as a pipeline's `train:` step would start)."""
    src = make_jsonl(tmp_path / "in.jsonl", 50)
    out = tmp_path / "corpus"
    pipeline = write_pipeline(tmp_path / "p.yaml", [src], out)
    script = tmp_path / "run.py"
    script.write_text(
        "import os, signal, sys\n"
        "from winnow.pipeline import Pipeline\n"
        "from winnow.cli import main\n"
        "Pipeline._train = lambda self, result, progress: os.kill(os.getpid(), signal.SIGINT)\n"
        f"main(['run', {str(pipeline)!r}, '--workers', '1', '--no-progress'])\n"
    )
    proc = subprocess.run([PYTHON, str(script)], capture_output=True, text=True, env=env(), timeout=120)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip() == f"interrupted after writing {out / 'v1'} (complete)"
    assert Corpus(out).versions() == ["v1"]
    no_partial_versions(out)
