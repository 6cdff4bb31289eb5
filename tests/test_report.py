"""The run report: every version has one, it is self-contained, and it renders in a real browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile

import pytest

import winnow as wn
from tests.conftest import ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
ARTIFACTS = ROOT / "tests" / "artifacts"


@pytest.fixture(scope="module")
def quickstart_version(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "qs"
    p = wn.Pipeline.from_yaml(ROOT / "pipelines" / "quickstart.yaml")
    inputs = [{"path": str(ROOT / i.path)} for i in p.inputs]
    wn.Pipeline(inputs=inputs, stages=p.stages, name="quickstart", split=p.split).run(output=out, progress=False)
    return wn.Corpus(out).resolve()


def test_report_is_written_and_self_contained(quickstart_version) -> None:
    html = (quickstart_version / "report.html").read_text()
    assert html.count("<svg") >= 4  # funnel, task types, lengths, dedup clusters
    for caption in ("Rows through the stages", "Task types, before and after", "Lengths", "Duplicate clusters"):
        assert caption in html
    assert "<script" not in html  # nothing to run, nothing to fetch
    assert not re.search(r"""(src|href)=["']?https?://""", html)
    assert "near-duplicate of" in html and "exact duplicate of" in html  # sample removed rows with reasons


def test_row_text_is_escaped(tmp_path) -> None:
    data = tmp_path / "d.jsonl"
    rows = [{"instruction": "<script>alert(1)</script>", "output": ""}, {"instruction": "ok", "output": "ok"}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = wn.Pipeline(inputs=[str(data)], stages=[wn.stages.LengthFilter()], output=tmp_path / "c").run(progress=False)
    html = (r.path / "report.html").read_text()
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed (.ci/run installs Debian's chromium)")
def test_report_renders_in_a_headless_browser(quickstart_version) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "report.png"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={tempfile.mkdtemp()}",
        "--enable-logging=stderr",
        "--v=0",
    ]
    url = (quickstart_version / "report.html").as_uri()
    shot = subprocess.run(
        [CHROMIUM, *flags, "--window-size=1100,3200", f"--screenshot={screenshot}", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.returncode == 0, shot.stderr[-500:]
    assert screenshot.stat().st_size > 50_000  # a page with charts, not a blank one
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0
    assert dom.stdout.count("<svg") >= 4 and dom.stdout.count("<path") > 50  # the charts are in the rendered DOM
    problems = ("CONSOLE", "Uncaught", "net::ERR")
    console = [line for line in dom.stderr.splitlines() if any(p in line for p in problems)]
    assert console == [], console


def test_counts_cover_every_row_and_samples_follow_each_stage(tmp_path, monkeypatch) -> None:
    """The report reads the version in batches: counts are exact however many batches and files
    there are; only the length histograms stop at LENGTH_ROWS, and the report says so."""
    from winnow import report

    data = tmp_path / "d.jsonl"
    rows = [{"instruction": f"Question {i}?", "output": "" if i % 5 == 0 else f"Answer {i}."} for i in range(60)]
    rows += [rows[1]] * 4  # four exact duplicates
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    stages = [wn.stages.ExactDedup(), wn.stages.LengthFilter(), wn.stages.TaskTypeTagger()]
    out = wn.Pipeline(inputs=[str(data)], stages=stages, output=tmp_path / "c").run(progress=False).path
    manifest = json.loads((out / "manifest.json").read_text())
    monkeypatch.setattr(report, "_BATCH_ROWS", 7)
    monkeypatch.setattr(report, "LENGTH_ROWS", 20)
    kept = report._tally(sorted((out / "data").glob("*.parquet")), want_samples=False)
    removed = report._tally(sorted((out / "rejected").glob("*.parquet")), want_samples=True)
    assert (kept.rows, removed.rows) == (48, 16)
    assert sum(kept.counts["task_type"].values()) == 48
    assert sum(kept.plus(removed).counts["task_type"].values()) == 64
    assert len(kept.length("user")) == 20
    assert [(s["stage"], s["source"].split("#")[1]) for s in removed.samples] == [
        ("exact_dedup", "60"), ("exact_dedup", "61"), ("exact_dedup", "62"),
        ("length", "0"), ("length", "5"), ("length", "10"),
    ]  # fmt: skip
    html = report.render_report(out, manifest)
    assert "Length histograms are computed from the first 20 rows of each side" in html


def test_the_same_version_renders_the_same_bytes(quickstart_version) -> None:
    from winnow.report import render_report

    manifest = json.loads((quickstart_version / "manifest.json").read_text())
    assert render_report(quickstart_version, manifest) == render_report(quickstart_version, manifest)
