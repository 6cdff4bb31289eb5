"""Third-party stages: a small package registered through the `winnow.stages` entry-point group."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from winnow.stages import base

PLUGIN = '''
import pyarrow as pa
import pyarrow.compute as pc

from winnow import text
from winnow.stages import Filter


class NoQuestions(Filter):
    """Drop rows whose instruction ends with a question mark.

    Args:
        mark: the character that makes an instruction a question.

    >>> NoQuestions()
    NoQuestions(mark='?')
    """

    name = "no_questions"

    def __init__(self, mark: str = "?") -> None:
        self.mark = mark

    def reasons(self, batch: pa.Table) -> pa.Array:
        ask = pc.ends_with(pc.utf8_rtrim_whitespace(text.role_text(batch["messages"], ["user"])), self.mark)
        return pc.if_else(ask, pa.scalar("instruction is a question"), pa.scalar(None, pa.string()))
'''


@pytest.fixture
def plugin_path(tmp_path: Path) -> Path:
    """An installed distribution as pip lays it out: the module and its .dist-info."""
    (tmp_path / "winnow_demo_plugin.py").write_text(textwrap.dedent(PLUGIN))
    info = tmp_path / "winnow_demo_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: winnow-demo-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[winnow.stages]\nno_questions = winnow_demo_plugin:NoQuestions\n")
    return tmp_path


def test_entry_point_stage_is_registered(plugin_path: Path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(plugin_path))
    monkeypatch.setattr(base, "_DISCOVERED", False)
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    stages = base.registry()
    assert "no_questions" in stages and "exact_dedup" in stages
    stage = base.from_config({"no_questions": {"mark": "?"}})
    assert stage.name == "no_questions"


def test_plugin_stage_runs_by_name_from_yaml_in_workers(plugin_path: Path, tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    rows = '{"instruction": "Is water wet?", "output": "Yes."}\n{"instruction": "Name one.", "output": "Fig."}\n'
    data.write_text(rows * 3)
    pipeline = tmp_path / "p.yaml"
    out = tmp_path / "c"
    pipeline.write_text(f"inputs: [{{path: {data}}}]\nstages: [no_questions: {{}}]\noutput: {out}\n")
    env = {**os.environ, "PYTHONPATH": str(plugin_path)}
    cmd = [sys.executable, "-m", "winnow"]
    listed = subprocess.run([*cmd, "stages"], capture_output=True, text=True, env=env)
    assert "no_questions" in listed.stdout
    r = subprocess.run(
        [sys.executable, "-m", "winnow", "run", str(pipeline), "--workers", "2", "--batch-size", "1"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert "instruction is a question (3)" in r.stdout


def test_a_broken_plugin_does_not_break_winnow(tmp_path: Path, monkeypatch, caplog) -> None:
    info = tmp_path / "broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[winnow.stages]\nbroken = no_such_module:Stage\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(base, "_DISCOVERED", False)
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    assert "exact_dedup" in base.registry()
    assert "could not load stage 'broken'" in caplog.text
