"""The README's first command: the quickstart pipeline on the bundled sample data."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT
from winnow.corpus import Corpus


def test_quickstart_runs_end_to_end(tmp_path) -> None:
    out = tmp_path / "quickstart"
    r = subprocess.run(
        [sys.executable, "-m", "winnow", "run", "pipelines/quickstart.yaml", "--output", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    for stage in ("ingest", "exact_dedup", "minhash_dedup", "length", "quality", "refusal", "pii", "template"):
        assert stage in r.stdout
    c = Corpus(out)
    assert c.versions() == ["v1"]
    m = c.manifest()
    assert m["counts"]["input"] == 340  # sample_data/README.md: 340 rows in five files
    removed = {s["stage"]: s["removed"] for s in m["stages"]}
    assert removed["exact_dedup"] == 23  # 15 planted copies + 8 that differ only by case/space/width
    assert removed["minhash_dedup"] == 10  # the 10 planted near-duplicate pairs
    assert removed["length"] == 5  # the planted empty and blank answers
    assert removed["quality"] == 10  # 5 low-quality rows, 2 placeholders, 3 bare "Yes."/"OK." answers
    assert removed["refusal"] == 6  # the 6 planted refusals
    events = {s["stage"]: s.get("events", {}) for s in m["stages"]}
    assert sum(events["pii"].values()) >= 5  # the planted fake e-mails, phones and IPs are redacted
    assert removed["pii"] == 0 and removed["template"] == 0
    clusters = c.table("clusters")
    assert clusters.num_rows == 20 and sum(clusters.column("kept").to_pylist()) == 10
    formats = {f["format"] for i in m["inputs"] for f in i["files"]}
    assert formats == {"alpaca", "sharegpt", "openai", "dolly", "prompt_completion"}
    assert "en" in m["languages"]
    mix = m["mix"][0]
    assert mix["stage"] == "balance" and float(mix["entropy_after"]) > float(mix["entropy_before"])
    assert max(g["after"] for g in mix["groups"]) == 60  # cap: 60
    card = (c.resolve() / "README.md").read_text()
    assert "\nlanguage:\n" in card and "\n- en\n" in card
    assert card.startswith("---\nconfigs:") and "exact_dedup" in card
    df = c.load()
    assert {"text", "prompt", "completion", "assistant_spans", "task_type", "lang", "quality"} <= set(df.columns)
    assert (df["prompt"] + df["completion"] == df["text"]).all()
    assert not df["text"].str.contains("@example.com").any()  # redacted
    assert df["id"].is_unique and set(df["source"]) == {
        f"sample_data/{n}"
        for n in ("alpaca.jsonl", "sharegpt.json", "openai.jsonl", "dolly.jsonl", "prompt_completion.csv")
    }
