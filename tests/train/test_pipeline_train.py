"""A pipeline's `train:` section fine-tunes on the version it writes, once."""

from __future__ import annotations

import json

import pytest

import winnow as wn
from tests.conftest import ROOT
from winnow.errors import ConfigError

pytest.importorskip("torch", reason="training needs the train extra")


def test_train_section_trains_on_the_new_version_once(tmp_path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        f"inputs: [{{path: {ROOT / 'sample_data' / 'alpaca.jsonl'}}}]\n"
        f"output: {tmp_path / 'corpus'}\n"
        f"train: {{model: tiny, output: {tmp_path / 'run'}, steps: 2, max_len: 256}}\n"
    )
    p = wn.Pipeline.from_yaml(path)
    assert p.train is not None and p.train.steps == 2
    first = p.run(progress=False)
    assert first.trained is not None and first.trained.steps == 2
    run = json.loads((tmp_path / "run" / "train_run.json").read_text())
    assert run["corpus"]["version"] == "v1" and run["corpus"]["fingerprint"] == first.fingerprint
    again = wn.Pipeline.from_yaml(path).run(progress=False)
    assert again.up_to_date and again.trained is None  # this version is already trained


def test_train_section_errors_name_the_line(tmp_path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("inputs: [{path: x.jsonl}]\noutput: c\ntrain:\n  model: tiny\n  output: run\n  stepz: 3\n")
    with pytest.raises(ConfigError, match=r"p.yaml, line 6: unknown train key 'stepz' \(did you mean 'steps'\?\)"):
        wn.Pipeline.from_yaml(path)
