"""``winnow train`` as a user runs it: a subprocess, the tiny model, five steps."""

from __future__ import annotations

import json
import subprocess
import sys


def winnow(*args: str, cwd=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "winnow", *args], capture_output=True, text=True, cwd=cwd, timeout=240)


def test_cli_trains_tiny_end_to_end(sample_corpus, tmp_path):
    out = tmp_path / "run"
    r = winnow(
        "train", f"{sample_corpus}@v1", "--model", "tiny", "--output", str(out), "--steps", "5", "--max-len", "256"
    )
    assert r.returncode == 0, r.stderr
    assert "rows: " in r.stdout and "longer than 256 tokens" in r.stdout  # dropped rows are reported
    assert "5 steps: train loss" in r.stdout and f"wrote {out}" in r.stdout.replace("\n", "")
    record = json.loads((out / "train_run.json").read_text())
    assert record["corpus"]["version"] == "v1" and record["steps"] == 5
    assert record["counts"]["train"]["dropped_too_long"] > 0
    assert (out / "model.safetensors").is_file() and (out / "loss.png").is_file()

    again = winnow("train", str(sample_corpus), "--model", "tiny", "--output", str(out), "--steps", "5")
    assert again.returncode == 1 and "error:" in again.stderr and "--force" in again.stderr
    assert "Traceback" not in again.stderr


def test_cli_errors_are_one_line(sample_corpus, tmp_path):
    r = winnow("train", str(sample_corpus), "--model", str(tmp_path / "nope"), "--output", str(tmp_path / "o"))
    assert r.returncode == 1 and "expected a local Hugging Face model folder" in r.stderr
    r = winnow(
        "train", str(sample_corpus), "--model", "tiny", "--output", str(tmp_path / "o"), "--steps", "2", "--epochs", "1"
    )
    assert r.returncode == 1 and "not both" in r.stderr
    r = winnow("train", str(sample_corpus), "--model", "tiny", "--output", str(tmp_path / "o"), "--template", "nope")
    assert r.returncode == 1 and "neither a built-in" in r.stderr
