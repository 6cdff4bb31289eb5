from __future__ import annotations

import pytest

import winnow as wn
from tests.test_pipeline import ROWS, write_jsonl
from winnow import history
from winnow.errors import CorpusError


@pytest.fixture
def two_versions(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [*ROWS, {"instruction": "Name a colour.", "input": "", "output": "Red"}])
    out = tmp_path / "c"
    wn.Pipeline(inputs=[str(data)], stages=[wn.stages.ExactDedup()], output=out).run(progress=False)
    wn.Pipeline(
        inputs=[str(data)], stages=[wn.stages.ExactDedup(), wn.stages.LengthFilter(min_response=4)], output=out
    ).run(progress=False)
    return out


def test_diff_counts_rows_by_id(two_versions) -> None:
    d = history.diff(f"{two_versions}@v1", f"{two_versions}@v2", show=5)
    # v1 keeps 4 of 5 rows (one exact duplicate); v2 also drops the answers shorter than 4 chars: "4", "", "Red"
    assert (len(d.added), len(d.removed), d.unchanged) == (0, 3, 1)
    assert d.config == ["+ stage length"]
    assert [s for s, _, _ in d.funnel] == ["ingest", "exact_dedup", "length"]
    assert d.funnel[2][1] is None and d.funnel[2][2]["removed"] == 3
    notes = {r["messages"][1]["content"]: r.get("note") for r in d.samples["removed"]}
    assert notes == {
        "4": "removed in B by length: response has 1 chars, fewer than 4",
        "": "removed in B by length: response has 0 chars, fewer than 4",
        "Red": "removed in B by length: response has 3 chars, fewer than 4",
    }
    assert d.to_dict()["removed"] == 3


def test_log_newest_first_with_config_changes(two_versions) -> None:
    entries = history.log(wn.Corpus(two_versions))
    assert [e.version for e in entries] == ["v2", "v1"]
    assert entries[0].parent == "v1" and entries[0].changes == ["+ stage length"]
    assert entries[1].changes == ["first version"]
    assert entries[0].rows == 1 and entries[1].rows == 4


def test_config_changes_are_readable() -> None:
    old = {
        "name": "x",
        "inputs": [{"path": "a"}],
        "stages": [{"length": {"min_response": 1}}, {"exact_dedup": {}}],
        "split": {"validation": 0.02},
    }
    new = {
        "name": "x",
        "inputs": [{"path": "b"}],
        "stages": [{"exact_dedup": {}}, {"length": {"min_response": 2}}],
        "split": {"validation": 0.05},
    }
    assert history.config_changes(old, new) == [
        "split.validation: 0.02 → 0.05",
        '- input {"path": "a"}',
        '+ input {"path": "b"}',
        "stage order: exact_dedup → length",
        "length.min_response: 1 → 2",
    ]


def test_trace_follows_a_row_across_versions(two_versions) -> None:
    rows = wn.Corpus(two_versions).load("v1")
    short = rows[rows["messages"].map(lambda m: m[1]["content"] == "Red")]["id"].iloc[0]
    row, steps = history.trace(str(two_versions), short)
    assert row["messages"][0]["content"] == "Name a colour."
    assert [(s.version, s.where, s.stage) for s in steps][1] == ("v2", "rejected", "length")
    assert steps[0].where in ("train", "validation")
    with pytest.raises(CorpusError, match="no row with id nope"):
        history.trace(str(two_versions), "nope")


def test_notebook_summaries(two_versions) -> None:
    html = wn.Corpus(two_versions)._repr_html_()
    assert html.index("<td>v2</td>") < html.index("<td>v1</td>")
    r = wn.Pipeline(stages=[wn.stages.LengthFilter()]).run([{"instruction": "a", "output": ""}], progress=False)
    assert "response too short (1)" in r._repr_html_() and "in memory" in r._repr_html_()
