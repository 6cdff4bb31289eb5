from __future__ import annotations

import json
from pathlib import Path

import datasets
import pandas as pd
import pyarrow as pa
import pytest

import winnow as wn
from winnow.errors import ConfigError
from winnow.pipeline import load_yaml

ROWS = [
    {"instruction": "What is 2 + 2?", "input": "", "output": "4"},
    {"instruction": "what is 2 + 2?", "input": "", "output": "4"},
    {"instruction": "Name a planet.", "input": "", "output": ""},
    {"instruction": "Summarize the text.", "input": "Cats sleep a lot.", "output": "Cats sleep much."},
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_pipeline(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(body)
    return path


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "data.jsonl", ROWS)


# -- config ----------------------------------------------------------------------------------


def test_yaml_round_trips_through_python_objects(tmp_path, data) -> None:
    path = write_pipeline(
        tmp_path,
        f"""name: demo
inputs:
  - path: {data}
    format: alpaca
stages:
  - exact_dedup: {{on: instruction}}
  - length: {{min_response: 2}}
output: {tmp_path / "out"}
split: {{validation: 0.1, seed: 3}}
""",
    )
    p = wn.Pipeline.from_yaml(path)
    assert p.name == "demo"
    assert p.stages == [wn.stages.ExactDedup(on="instruction"), wn.stages.LengthFilter(min_response=2)]
    assert p.split == wn.Split(0.1, 3)
    again = wn.Pipeline.from_dict(load_yaml(p.to_yaml()))
    assert again.to_dict() == p.to_dict()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "inputs: [{path: a.jsonl}]\nstages:\n  - exact_dedupe: {}\n",
            r"p.yaml, line 3: unknown stage 'exact_dedupe' \(did you mean 'exact_dedup'\?\); valid stages:",
        ),
        (
            "inputs: [{path: a.jsonl}]\nstages:\n  - length:\n      min_respons: 2\n",
            r"p.yaml, line 4: unknown parameter 'min_respons' .*valid parameters: min_instruction",
        ),
        (
            "inputs: [{path: a.jsonl}]\nstages:\n  - length:\n      unit: lines\n",
            r"p.yaml, line 4: parameter 'unit' of stage 'length' must be 'chars' \| 'words' \| 'tokens'",
        ),
        (
            "inputs: [{path: a.jsonl}]\nstages:\n  - length: {min_response: two}\n",
            r"p.yaml, line 3: parameter 'min_response' .* must be int \| None, got 'two'",
        ),
        (
            "inputs: [{path: a.jsonl}]\nstagez: []\n",
            r"p.yaml, line 2: unknown key 'stagez' \(did you mean 'stages'\?\)",
        ),
        ("inputs: []\n", r"p.yaml, line 1: `inputs` must be a non-empty list"),
        ("inputs:\n  - pth: a.jsonl\n", r"p.yaml, line 2: unknown input key 'pth' \(did you mean 'path'\?\)"),
        (
            "inputs:\n  - path: a.jsonl\n    on_error: ignore\n",
            r"p.yaml, line 3: on_error must be 'raise' or 'skip'",
        ),
        (
            "inputs: [{path: a.jsonl}]\nsplit: {validation: 2}\n",
            r"p.yaml, line 2: split.validation must be a fraction",
        ),
        (
            "inputs: [{path: a.jsonl}]\nengine: spark\n",
            r"p.yaml, line 2: unknown engine 'spark'; valid engines: local",
        ),
        ("inputs: [{path: a.jsonl}\n", r"p.yaml, line 2: invalid YAML"),
        ("inputs: [{path: a.jsonl}]\ninputs: []\n", r"p.yaml, line 2: duplicate key 'inputs'"),
        ("- just\n- a list\n", r"p.yaml: a pipeline is a map"),
        (
            "inputs: [{path: a.jsonl}]\nstages:\n  - {length: {}, exact_dedup: {}}\n",
            r"line 3: each stage must be a one-key map",
        ),
    ],
)
def test_invalid_config_names_file_line_and_choices(tmp_path, body: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        wn.Pipeline.from_yaml(write_pipeline(tmp_path, body))


def test_yaml_is_loaded_safely(tmp_path) -> None:
    with pytest.raises(ConfigError, match="invalid YAML"):
        wn.Pipeline.from_yaml(write_pipeline(tmp_path, "inputs: !!python/object/apply:os.system ['true']\n"))


def test_missing_pipeline_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="pipeline file .*nope.yaml does not exist"):
        wn.Pipeline.from_yaml(tmp_path / "nope.yaml")


# -- running ---------------------------------------------------------------------------------


def test_run_writes_a_version_and_reruns_are_up_to_date(tmp_path, data) -> None:
    p = wn.Pipeline(
        inputs=[str(data)],
        stages=[wn.stages.ExactDedup(), wn.stages.LengthFilter()],
        output=tmp_path / "corpus",
        split={"validation": 0.0},
    )
    first = p.run(progress=False)
    assert first.version == "v1" and not first.up_to_date
    assert [(s.name, s.rows_out) for s in first.stats] == [("ingest", 4), ("exact_dedup", 3), ("length", 2)]
    again = p.run(progress=False)
    assert again.up_to_date and again.version == "v1"
    assert wn.Corpus(tmp_path / "corpus").versions() == ["v1"]
    forced = p.run(progress=False, force=True)
    assert forced.version == "v2"
    assert wn.Corpus(tmp_path / "corpus").manifest("v2")["parent"] == "v1"


def test_changed_config_or_input_makes_a_new_version(tmp_path, data) -> None:
    out = tmp_path / "corpus"
    wn.Pipeline(inputs=[str(data)], stages=[], output=out).run(progress=False)
    r = wn.Pipeline(inputs=[str(data)], stages=[wn.stages.LengthFilter()], output=out).run(progress=False)
    assert r.version == "v2"
    write_jsonl(data, [*ROWS, {"instruction": "New?", "input": "", "output": "Yes."}])
    r = wn.Pipeline(inputs=[str(data)], stages=[wn.stages.LengthFilter()], output=out).run(progress=False)
    assert r.version == "v3"
    fingerprints = {wn.Corpus(out).manifest(v)["fingerprint"] for v in ("v1", "v2", "v3")}
    assert len(fingerprints) == 3


def test_run_in_memory_on_dataframe_arrow_and_dataset() -> None:
    p = wn.Pipeline(stages=[wn.stages.ExactDedup(), wn.stages.LengthFilter()])
    df = pd.DataFrame(ROWS)
    r = p.run(df, progress=False)
    assert r.path is None
    assert isinstance(r.data, pd.DataFrame) and len(r.data) == 2
    assert set(r.rejected()["stage"]) == {"exact_dedup", "length"}
    assert isinstance(p.run(pa.Table.from_pandas(df), progress=False).data, pa.Table)
    ds = p.run(datasets.Dataset.from_pandas(df), progress=False).data
    assert isinstance(ds, datasets.Dataset) and ds.num_rows == 2
    assert ds[0]["messages"] == [
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "4"},
    ]


def test_run_dataframe_into_a_corpus(tmp_path) -> None:
    p = wn.Pipeline(stages=[wn.stages.LengthFilter()], output=tmp_path / "c")
    r = p.run(pd.DataFrame(ROWS), progress=False)
    loaded = wn.Corpus(tmp_path / "c").load(format="arrow")
    assert loaded.num_rows == 3 and r.version == "v1"


def test_conservation_in_the_manifest(tmp_path, data) -> None:
    r = wn.Pipeline(
        inputs=[str(data)], stages=[wn.stages.ExactDedup(), wn.stages.LengthFilter()], output=tmp_path / "c"
    ).run(progress=False)
    m = r.corpus.manifest()
    c = m["counts"]
    assert c["input"] == c["train"] + c["validation"] + c["rejected"] == 4
    assert [s["stage"] for s in m["stages"]] == ["ingest", "exact_dedup", "length"]
    assert m["stages"][1]["params"] == {"on": "conversation", "keep": "first", "normalize": True}


def test_card_takes_the_license_of_a_saved_dataset(tmp_path) -> None:
    ds = datasets.Dataset.from_pandas(pd.DataFrame(ROWS))
    ds.info.license = "cc-by-sa-3.0"
    ds.save_to_disk(str(tmp_path / "saved"))
    r = wn.Pipeline(inputs=[str(tmp_path / "saved")], output=tmp_path / "c").run(progress=False)
    card = (r.path / "README.md").read_text()
    assert "\nlicense: cc-by-sa-3.0\n" in card
