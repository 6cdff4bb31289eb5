"""Helpers for the reliability tests: generated inputs, winnow subprocesses, process trees."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable

WORDS = (
    "the a data model answer question river mountain capital city number prime write explain "
    "summarize list three four apple banana cherry reason because therefore python code function "
    "loop value table row column France Paris Berlin haiku rain poem story short long"
).split()


def make_jsonl(path: Path, rows: int, seed: int = 0, dup_every: int = 7, words: int = 30) -> Path:
    """Alpaca-style JSONL with some exact duplicates, written in one go (fast)."""
    rng = random.Random(seed)
    lines = []
    prev = None
    for i in range(rows):
        if prev is not None and i % dup_every == 0:
            lines.append(prev)
            continue
        instruction = " ".join(rng.choices(WORDS, k=8)) + f" #{i}"
        output = " ".join(rng.choices(WORDS, k=words)) + "."
        prev = json.dumps({"instruction": instruction, "input": "", "output": output})
        lines.append(prev)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_pipeline(path: Path, inputs: list[Path], output: Path, stages: list[Any] | None = None) -> Path:
    stages = stages if stages is not None else [{"exact_dedup": {}}, {"length": {"min_response": 1}}]
    doc = {
        "name": "reliability",
        "inputs": [{"path": str(p)} for p in inputs],
        "stages": stages,
        "output": str(output),
        "split": {"validation": 0.1},
    }
    path.write_text(json.dumps(doc))  # JSON is YAML
    return path


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("COLUMNS", None)
    e["PYTHONUNBUFFERED"] = "1"
    return e


def start_run(pipeline: Path, *extra: str, cwd: Path | None = None, **kwargs: Any) -> subprocess.Popen[str]:
    """``python -m winnow run PIPELINE`` in its own process group (so SIGINT reaches the group)."""
    return subprocess.Popen(
        # -X faulthandler: a hung run sent SIGABRT (see `stop`) prints every thread's stack
        [PYTHON, "-X", "faulthandler", "-m", "winnow", "run", str(pipeline), "--no-progress", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
        cwd=cwd,
        start_new_session=True,
        **kwargs,
    )


def run_winnow(*args: str, timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "winnow", *args], capture_output=True, text=True, env=env(), timeout=timeout, **kwargs
    )


def descendants(pid: int) -> list[psutil.Process]:
    """Every process below ``pid`` (workers, the forkserver, resource trackers)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def session_members(sid: int) -> list[int]:
    """Live processes in session ``sid`` (a killed parent's children are re-parented, but keep
    their session, so this finds orphans)."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getsid(proc.pid) == sid and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            continue
    return found


def wait_gone(sid: int, timeout: float) -> list[int]:
    """Wait until no process of session ``sid`` is left; returns what is left at the deadline."""
    deadline = time.monotonic() + timeout
    left = session_members(sid)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = session_members(sid)
    return left


def kill_session(sid: int) -> None:
    """Clean-up: SIGKILL whatever is left of a session we started."""
    for pid in session_members(sid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def corpus_entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def finish(proc: subprocess.Popen[str], timeout: float) -> tuple[str, str, bool]:
    """Wait for ``proc``; if it hangs, SIGABRT it (faulthandler prints the stacks) and clean up
    its session. Returns (stdout, stderr, hung)."""
    try:
        out, err = proc.communicate(timeout=timeout)
        hung = False
    except subprocess.TimeoutExpired:
        hung = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGABRT)
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            kill_session(proc.pid)
            out, err = proc.communicate()
    return out, err, hung


def no_partial_versions(folder: Path) -> None:
    """What a reader sees is complete: every listed version loads, and nothing else is listed."""
    from winnow import Corpus

    corpus = Corpus(folder)
    for name in corpus.versions():
        manifest = corpus.manifest(name)
        table = corpus.load(name, format="arrow")
        assert table.num_rows == manifest["counts"]["train"] + manifest["counts"]["validation"], name
        rejected = corpus.rejected(name, format="arrow").num_rows
        assert rejected == manifest["counts"]["rejected"], name
        assert manifest["counts"]["input"] == table.num_rows + rejected, name
    if folder.is_dir():
        for child in folder.iterdir():
            if child.name.startswith("v") and child.name not in corpus.versions():
                raise AssertionError(f"{child} looks like a version but is not a complete one")
