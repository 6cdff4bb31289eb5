"""Record-format adapters: messages, task_type and meta for each format, and detection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from winnow import schema
from winnow.formats import ADAPTERS, InputSpec, normalize_label, open_input

from ._helpers import ingest, rows, write_jsonl


def one(tmp_path: Path, record: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    got = rows(ingest(write_jsonl(tmp_path / "r.jsonl", [record]), **kwargs))
    assert len(got) == 1
    got[0]["meta"] = json.loads(got[0]["meta"])
    return got[0]


def roles(row: dict[str, Any]) -> list[str]:
    return [m["role"] for m in row["messages"]]


def test_registry_names() -> None:
    assert set(ADAPTERS) >= {
        "alpaca",
        "sharegpt",
        "openai",
        "dolly",
        "prompt_completion",
        "mtbench",
        "text",
        "natural_instructions",
        "columns",
        "canonical",
    }


def test_normalize_label() -> None:
    assert normalize_label("closed\u00a0qa") == "closed_qa"
    assert normalize_label("Open QA") == "open_qa"
    assert normalize_label(None) is None


def test_alpaca_with_system_and_history(tmp_path: Path) -> None:
    row = one(
        tmp_path,
        {
            "instruction": "Q2",
            "input": "ctx",
            "output": "A2",
            "system": "Be brief.",
            "history": [["Q1", "A1"]],
            "extra": 1,
        },
    )
    assert row["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2\n\nctx"},
        {"role": "assistant", "content": "A2"},
    ]
    assert row["meta"] == {"input": "ctx", "extra": 1}
    assert row["task_type"] is None


def test_alpaca_text_as_instruction(tmp_path: Path) -> None:
    row = one(tmp_path, {"text": "Give tips.", "input": "", "output": "1. Sleep."})
    assert row["messages"][0] == {"role": "user", "content": "Give tips."}


def test_self_instruct_one_instance(tmp_path: Path) -> None:
    rec = {
        "id": "seed_task_0",
        "name": "x",
        "instruction": "Do it.",
        "instances": [{"input": "in", "output": "out"}],
        "is_classification": True,
    }
    row = one(tmp_path, rec)
    assert row["messages"] == [
        {"role": "user", "content": "Do it.\n\nin"},
        {"role": "assistant", "content": "out"},
    ]
    assert row["meta"] == {
        "id": "seed_task_0",
        "name": "x",
        "is_classification": True,
        "instance": {"input": "in"},
    }
    assert row["task_type"] is None


def test_self_instruct_several_instances_get_distinct_ids(tmp_path: Path) -> None:
    rec = {"instruction": "Same.", "instances": [{"input": "", "output": "o"}, {"input": "", "output": "o"}]}
    got = rows(ingest(write_jsonl(tmp_path / "s.jsonl", [rec])))
    assert [r["source_index"] for r in got] == [0, 0]
    assert got[0]["id"] != got[1]["id"]
    assert [json.loads(r["meta"])["instance_index"] for r in got] == [0, 1]


def test_sharegpt_tool_calls(tmp_path: Path) -> None:
    rec = {
        "conversations": [
            {"from": "human", "value": "Weather?"},
            {"from": "function_call", "value": '{"name": "weather", "arguments": {}}'},
            {"from": "observation", "value": '{"temp": 20}'},
            {"from": "gpt", "value": "20 degrees."},
        ],
        "tools": '[{"name": "weather"}]',
        "system": "You can call tools.",
    }
    row = one(tmp_path, rec)
    assert roles(row) == ["system", "user", "assistant", "tool", "assistant"]
    assert row["messages"][2]["content"] == '{"name": "weather", "arguments": {}}'
    assert row["meta"]["tools"] == '[{"name": "weather"}]'
    assert row["meta"]["message_extras"][2] == {"from": "function_call"}
    assert "system" not in row["meta"]


def test_sharegpt_role_aliases(tmp_path: Path) -> None:
    convo = [{"from": f, "value": f} for f in ("system", "user", "chatgpt", "human", "bard", "tool")]
    row = one(tmp_path, {"conversations": convo, "id": "x"})
    assert roles(row) == ["system", "user", "assistant", "user", "assistant", "tool"]
    assert row["meta"]["id"] == "x"


def test_openai_content_parts_and_extras(tmp_path: Path) -> None:
    rec = {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "value": "hi "}, {"type": "text", "value": "there"}],
                "loss_weight": 0.0,
            },
            {"role": "assistant", "content": [{"type": "text", "text": "hello"}], "loss_weight": 1.0},
        ]
    }
    row = one(tmp_path, rec)
    assert row["messages"] == [
        {"role": "user", "content": "hi there"},
        {"role": "assistant", "content": "hello"},
    ]
    assert [e["loss_weight"] for e in row["meta"]["message_extras"]] == [0.0, 1.0]


def test_openai_plain(tmp_path: Path) -> None:
    rec = {"messages": [{"content": "sys", "role": "system"}, {"role": "user", "content": "u"}]}
    row = one(tmp_path, rec)
    assert roles(row) == ["system", "user"]
    assert row["meta"] == {}


def test_dolly(tmp_path: Path) -> None:
    row = one(tmp_path, {"instruction": "Who?", "context": "Text.", "response": "Me.", "category": "open_qa"})
    assert row["messages"][0]["content"] == "Who?\n\nText."
    assert row["task_type"] == "open_qa"
    assert row["meta"] == {"context": "Text."}


def test_belle_nbsp_label(tmp_path: Path) -> None:
    row = one(tmp_path, {"question": "问", "std_answer": "", "class": "closed\u00a0qa"})
    assert row["task_type"] == "closed_qa"
    assert row["messages"] == [{"role": "user", "content": "问"}, {"role": "assistant", "content": ""}]
    assert row["meta"] == {"class": "closed\u00a0qa"}  # the original label survives


def test_prompt_completion(tmp_path: Path) -> None:
    row = one(tmp_path, {"prompt": "p", "completion": "c"})
    assert row["messages"] == [{"role": "user", "content": "p"}, {"role": "assistant", "content": "c"}]


def test_mtbench(tmp_path: Path) -> None:
    row = one(tmp_path, {"question_id": 81, "category": "writing", "turns": ["t1", "t2"], "reference": ["r"]})
    assert roles(row) == ["user", "user"]
    assert row["task_type"] == "writing"
    assert row["meta"] == {"question_id": 81, "reference": ["r"]}


def test_text_only(tmp_path: Path) -> None:
    row = one(tmp_path, {"text": "Today is Sunday.", "meta": {"k": 1}})
    assert row["messages"] == [{"role": "user", "content": "Today is Sunday."}]
    assert row["meta"] == {"meta": {"k": 1}}


def _ni_task(definition: Any) -> dict[str, Any]:
    return {
        "Contributors": ["A"],
        "Source": ["sst2"],
        "Categories": ["Sentiment Analysis", "Other"],
        "Definition": definition,
        "Positive Examples": [{"input": "x", "output": "y"}],
        "Input_language": ["English"],
        "Instances": [
            {"id": "t-1", "input": "good film", "output": ["POS"]},
            {"id": "t-2", "input": "bad film", "output": ["NEG", "negative"]},
        ],
    }


@pytest.mark.parametrize("definition", [["Classify.", "Say POS or NEG."], "Classify.\nSay POS or NEG."])
def test_natural_instructions(tmp_path: Path, definition: Any) -> None:
    path = tmp_path / "task363.json"
    path.write_text(json.dumps(_ni_task(definition), indent=4))
    got = rows(ingest(path))
    assert [r["source_index"] for r in got] == [0, 1]
    assert got[0]["messages"] == [
        {"role": "user", "content": "Classify.\nSay POS or NEG.\n\ngood film"},
        {"role": "assistant", "content": "POS"},
    ]
    assert {r["task_type"] for r in got} == {"sentiment_analysis"}
    meta = [json.loads(r["meta"]) for r in got]
    assert meta[0] == {
        "id": "t-1",
        "input": "good film",
        "Contributors": ["A"],
        "Source": ["sst2"],
        "Categories": ["Sentiment Analysis", "Other"],
        "Input_language": ["English"],
    }
    assert meta[1]["other_outputs"] == ["negative"]


def test_columns_mapping(tmp_path: Path) -> None:
    rec = {"q": "Question", "ctx": "More", "a": "Answer", "sys": "S", "kind": "Open QA", "keep": 1}
    cols = {"instruction": "q", "input": "ctx", "response": "a", "system": "sys", "task_type": "kind"}
    row = one(tmp_path, rec, columns=cols)
    assert row["messages"] == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Question\n\nMore"},
        {"role": "assistant", "content": "Answer"},
    ]
    assert row["task_type"] == "open_qa"
    assert row["meta"] == {"ctx": "More", "kind": "Open QA", "keep": 1}


def test_format_override_beats_detection(tmp_path: Path) -> None:
    # Has 'text' and 'output' (alpaca by detection) but the user says it is plain text.
    row = one(tmp_path, {"text": "t", "output": "o"}, format="text")
    assert roles(row) == ["user"]
    assert row["meta"] == {"output": "o"}


def test_canonical_parquet_round_trip(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    first = ingest(write_jsonl(tmp_path / "a.jsonl", [{"instruction": "i", "output": "o", "x": 1}]))
    pq.write_table(first, tmp_path / "corpus.parquet")
    src = open_input(InputSpec(path=str(tmp_path / "corpus.parquet")))
    again = src.to_table()
    assert src.describe()["files"][0]["format"] == "canonical"
    assert again.equals(first)
    assert again.schema == schema.SCHEMA
