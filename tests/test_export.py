"""`winnow export`: what each trainer reads, round trips back through ingest, and the guard rails."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import datasets
import pytest
import yaml

import winnow as wn
from winnow import export as ex
from winnow.corpus import Corpus
from winnow.errors import ConfigError, CorpusError
from winnow.export import export_corpus, openai_problems

ALPACA = [
    {"instruction": "What is 2 + 2?", "input": "", "output": "4"},
    {"instruction": "Summarize the text.", "input": "Cats sleep a lot.", "output": "Cats sleep much."},
    {"id": 7, "instruction": "Translate to English.", "input": "hola", "output": "hello", "lang_hint": "es"},
    {
        "instruction": "And in French?",
        "input": "",
        "output": "bonjour",
        "system": "Be brief.",
        "history": [["Say hi.", "Hi!"]],
    },
    {"instruction": "Line\u2028separator and ünïcödé", "input": "x\n\ny", "output": "ok"},
]

SHAREGPT = [
    {"id": "a", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]},
    {
        "system": "You are terse.",
        "conversations": [
            {"from": "human", "value": "weather?"},
            {"from": "function_call", "value": '{"name": "weather", "arguments": {}}'},
            {"from": "observation", "value": "sunny"},
            {"from": "gpt", "value": "Sunny.", "weight": 1},
        ],
        "tools": '[{"name": "weather", "description": "w", "parameters": {}}]',
    },
    {
        "conversations": [
            {"from": "user", "value": "q"},
            {"from": "chatgpt", "value": "a"},
            {"from": "human", "value": "?"},
        ]
    },
    {
        "conversations": [
            {"from": "system", "value": ""},
            {"from": "human", "value": "q"},
            {"from": "gpt", "value": "a"},
        ]
    },
]

CALL = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}
TOOLS = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}}}]
OPENAI = [
    {
        "messages": [
            {"role": "system", "content": "Marv is sarcastic."},
            {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": "Paris, obviously.", "weight": 1},
        ]
    },
    {
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "assistant", "content": "It is sunny."},
        ],
        "tools": TOOLS,
    },
    {"messages": [{"role": "user", "name": "bob", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines(keepends=False) if line]


def build(tmp_path: Path, *groups: list[dict[str, Any]], name: str = "c", validation: float = 0.0) -> Path:
    """A corpus from one input file per group (a file holds one record format)."""
    inputs = [write_jsonl(tmp_path / f"{name}-{i}.jsonl", rows) for i, rows in enumerate(groups)]
    out = tmp_path / name
    wn.Pipeline(inputs=inputs, stages=[], output=out, split={"validation": validation}).run(progress=False, workers=1)
    return out


def ingest(path: Path) -> list[dict[str, Any]]:
    """Rows of a file as winnow reads them, in file order."""
    table = wn.Pipeline(inputs=[path], stages=[], split={"validation": 0.0}).run(output=None, progress=False, workers=1)
    rows = table.to_arrow().to_pylist()
    return sorted(rows, key=lambda r: r["source_index"])


def canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def comparable(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The content of canonical rows: messages, task type and the original fields in meta."""
    return [(r["messages"], r["task_type"], json.loads(r["meta"])) for r in rows]


# -- round trips -----------------------------------------------------------------------------------


def test_alpaca_round_trip_is_exact(tmp_path) -> None:
    corpus = build(tmp_path, ALPACA)
    result = export_corpus(corpus, tmp_path / "out", to="alpaca")
    written = read_jsonl(tmp_path / "out" / "train.jsonl")
    # the very records that were read, `input` not merged into the instruction, extra fields kept
    assert sorted(written, key=canon) == sorted(ALPACA, key=canon)
    assert result.counts == {"train": 5, "validation": 0, "rejected": 0}
    assert "\u2028" not in (tmp_path / "out" / "train.jsonl").read_text()  # escaped for line-splitting readers
    again = ingest(tmp_path / "out" / "train.jsonl")
    assert sorted(comparable(again), key=canon) == sorted(comparable(ingest(tmp_path / "c-0.jsonl")), key=canon)


def test_sharegpt_round_trip(tmp_path) -> None:
    corpus = build(tmp_path, SHAREGPT)
    export_corpus(corpus, tmp_path / "out", to="sharegpt")
    written = {json.dumps(r["conversations"]): r for r in read_jsonl(tmp_path / "out" / "train.jsonl")}
    glaive = next(r for r in written.values() if "tools" in r)
    assert glaive["system"] == "You are terse." and glaive["conversations"][1]["from"] == "function_call"
    assert glaive["conversations"][3] == {"from": "gpt", "value": "Sunny.", "weight": 1}
    original = sorted(comparable(ingest(tmp_path / "c-0.jsonl")), key=canon)
    assert sorted(comparable(ingest(tmp_path / "out" / "train.jsonl")), key=canon) == original


def test_openai_round_trip(tmp_path) -> None:
    corpus = build(tmp_path, OPENAI)
    result = export_corpus(corpus, tmp_path / "out", to="openai")
    assert result.counts["rejected"] == 0
    written = read_jsonl(tmp_path / "out" / "train.jsonl")
    assert sorted(written, key=canon) == sorted(OPENAI, key=canon)  # tool calls, weight, name kept
    assert all(openai_problems(r) == [] for r in written)
    original = sorted(comparable(ingest(tmp_path / "c-0.jsonl")), key=canon)
    assert sorted(comparable(ingest(tmp_path / "out" / "train.jsonl")), key=canon) == original


def test_dolly_context_becomes_alpaca_input(tmp_path) -> None:
    rows = [{"instruction": "Summarize.", "context": "A long text.", "response": "Short.", "category": "summarization"}]
    export_corpus(build(tmp_path, rows), tmp_path / "out", to="alpaca")
    assert read_jsonl(tmp_path / "out" / "train.jsonl") == [
        {"instruction": "Summarize.", "input": "A long text.", "output": "Short."}
    ]


# -- openai validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("messages", "problem"),
    [
        ([{"role": "user", "content": "hi"}], "no assistant message"),
        (
            [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "a"},
                {"role": "user", "content": "b"},
            ],
            "the last message is from user",
        ),
        (
            [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}],
            "message 1 (assistant) has empty",
        ),
        ([{"role": "human", "content": "hi"}, {"role": "assistant", "content": "a"}], "has role 'human'"),
        ([{"role": "tool", "content": "x"}, {"role": "assistant", "content": "a"}], "(tool) has no tool_call_id"),
        ([{"role": "user", "content": "q", "weight": 1}, {"role": "assistant", "content": "a"}], "weight 1"),
        ([], "non-empty list"),
    ],
)
def test_openai_problems_name_the_rule(messages, problem) -> None:
    assert any(problem in p for p in openai_problems({"messages": messages})), openai_problems({"messages": messages})


def test_openai_accepts_valid_examples() -> None:
    for example in OPENAI:
        assert openai_problems(example) == []


def test_openai_export_rejects_with_reasons_never_silently(tmp_path) -> None:
    bad = [
        {"messages": [{"role": "user", "content": "only a question"}]},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]},
    ]
    glaive = [{"conversations": [{"from": "human", "value": "q"}, {"from": "observation", "value": "r"}]}]
    corpus = build(tmp_path, [*OPENAI, *bad], glaive)
    result = export_corpus(corpus, tmp_path / "out", to="openai")
    assert result.counts == {"train": 3, "validation": 0, "rejected": 3}
    rejected = read_jsonl(tmp_path / "out" / "rejected.jsonl")
    reasons = sorted(r["reason"] for r in rejected)
    assert any("no assistant message" in r for r in reasons)
    assert any("message 1 (assistant) has empty content" in r for r in reasons)
    assert any("(tool) has no tool_call_id" in r for r in reasons)
    assert {r["split"] for r in rejected} == {"train"}
    ids = set(Corpus(corpus).load()["id"])
    assert {r["id"] for r in rejected} <= ids
    assert any("rejected.jsonl" in w for w in result.warnings)
    assert any("at least 10" in w for w in result.warnings)


# -- trainer targets ---------------------------------------------------------------------------------


def test_llama_factory_sharegpt_and_dataset_info(tmp_path) -> None:
    two_users = [{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}]
    rows = [*SHAREGPT, *OPENAI, *two_users, *ALPACA * 3]  # enough rows that both splits get some
    corpus = build(tmp_path, SHAREGPT, [*OPENAI, *two_users], ALPACA * 3, name="my-set", validation=0.3)
    result = export_corpus(corpus, tmp_path / "lf", to="llama-factory")
    info = json.loads((tmp_path / "lf" / "dataset_info.json").read_text())
    assert set(info) == {"my-set", "my-set_validation"}
    entry = info["my-set"]
    assert entry["file_name"] == "train.jsonl" and entry["formatting"] == "sharegpt"
    assert entry["columns"] == {"messages": "conversations", "system": "system", "tools": "tools"}
    assert entry["tags"]["role_tag"] == "from" and entry["tags"]["assistant_tag"] == "gpt"
    assert entry["tags"]["function_tag"] == "function_call" and entry["tags"]["observation_tag"] == "observation"
    assert info["my-set_validation"]["file_name"] == "validation.jsonl"
    written = read_jsonl(tmp_path / "lf" / "train.jsonl") + read_jsonl(tmp_path / "lf" / "validation.jsonl")
    for r in written:  # LLaMA-Factory's own rule (SharegptDatasetConverter): alternating, even count
        tags = [t["from"] for t in r["conversations"]]
        assert len(tags) % 2 == 0
        assert all(t in (("human", "observation"), ("gpt", "function_call"))[i % 2] for i, t in enumerate(tags))
    calls = [t["value"] for r in written for t in r["conversations"] if t["from"] == "function_call"]
    # OpenAI tool calls as LLaMA-Factory's own OpenAI converter writes them: the `function` objects
    assert json.dumps([CALL["function"]]) in calls and '{"name": "weather", "arguments": {}}' in calls
    rejected = read_jsonl(tmp_path / "lf" / "rejected.jsonl")
    assert result.counts["rejected"] == len(rejected) == 2  # ends with the user; two users in a row
    assert all("alternating" in r["reason"] for r in rejected)
    assert result.counts["train"] + result.counts["validation"] + result.counts["rejected"] == len(rows)


def test_llama_factory_alpaca_layout(tmp_path) -> None:
    corpus = build(tmp_path, ALPACA)
    export_corpus(corpus, tmp_path / "lf", to="llama-factory", layout="alpaca", name="mine")
    info = json.loads((tmp_path / "lf" / "dataset_info.json").read_text())
    assert info == {
        "mine": {
            "file_name": "train.jsonl",
            "formatting": "alpaca",
            "columns": {
                "prompt": "instruction",
                "query": "input",
                "response": "output",
                "system": "system",
                "history": "history",
            },
        }
    }
    written = read_jsonl(tmp_path / "lf" / "train.jsonl")
    assert all(set(r) <= {"instruction", "input", "output", "system", "history"} for r in written)  # no extras
    assert {"instruction": "Translate to English.", "input": "hola", "output": "hello"} in written


def test_axolotl_writes_messages_and_a_chat_template_config(tmp_path) -> None:
    corpus = build(tmp_path, ALPACA * 4, validation=0.3)
    export_corpus(corpus, tmp_path / "ax", to="axolotl", chat_template="chatml")
    config = yaml.safe_load((tmp_path / "ax" / "axolotl.yaml").read_text())
    assert config["chat_template"] == "chatml"
    for key, file_name in (("datasets", "train.jsonl"), ("test_datasets", "validation.jsonl")):
        (d,) = config[key]
        assert d["path"] == str((tmp_path / "ax" / file_name).resolve())
        assert d["type"] == "chat_template" and d["field_messages"] == "messages" and d["ds_type"] == "json"
        assert d["message_property_mappings"] == {"role": "role", "content": "content"}
        assert d["roles_to_train"] == ["assistant"]
        assert Path(d["path"]).is_file()
    rows = read_jsonl(tmp_path / "ax" / "train.jsonl")
    assert all(set(r) == {"messages"} and all(set(m) == {"role", "content"} for m in r["messages"]) for r in rows)


@pytest.mark.parametrize("file_format", ["jsonl", "parquet"])
def test_trl_loads_with_datasets_as_conversational(tmp_path, file_format, monkeypatch) -> None:
    monkeypatch.setattr(ex, "_ROWS_PER_READ", 3)  # several read batches and Parquet flushes
    corpus = build(tmp_path, ALPACA * 4, validation=0.3)
    result = export_corpus(corpus, tmp_path / "trl", to="trl", file_format=file_format)
    loader = "json" if file_format == "jsonl" else "parquet"
    files = {s: str(tmp_path / "trl" / f"{s}.{file_format}") for s in ("train", "validation")}
    ds = datasets.load_dataset(loader, data_files=files)
    assert ds.column_names == {"train": ["messages"], "validation": ["messages"]}
    assert ds["train"].num_rows == result.counts["train"] and ds["validation"].num_rows == result.counts["validation"]
    assert ds["train"].num_rows + ds["validation"].num_rows == 20
    expected = sorted(json.dumps(m) for m in Corpus(corpus).load(format="arrow").column("messages").to_pylist())
    got = sorted(json.dumps(m) for s in ("train", "validation") for m in ds[s]["messages"])
    assert got == expected


def _tiny_tokenizer() -> Any:
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    words = sorted({w for r in ALPACA for v in r.values() if isinstance(v, str) for w in v.split()})
    vocab = {"[UNK]": 0, "[EOS]": 1, **{w: i + 2 for i, w in enumerate(words)}}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="[EOS]")
    fast.pad_token = "[EOS]"
    fast.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} [EOS] {% endfor %}"
        "{% if add_generation_prompt %}<assistant> {% endif %}"
    )
    return fast


@pytest.mark.parametrize("layout", ["messages", "prompt-completion"])
def test_trl_accepts_the_export(tmp_path, layout) -> None:
    """TRL's own checks: the example type it detects, and its chat-template application (which
    refuses any mix of columns that is not one of its dataset types)."""
    data_utils = pytest.importorskip("trl.data_utils", reason="trl is not installed (pip install trl)")
    corpus = build(tmp_path, ALPACA, [{"messages": [{"role": "user", "content": "no answer"}]}])
    result = export_corpus(corpus, tmp_path / "trl", to="trl", layout=layout)
    ds = datasets.load_dataset("json", data_files=str(tmp_path / "trl" / "train.jsonl"), split="train")
    tokenizer = _tiny_tokenizer()
    for example in ds:
        assert data_utils.is_conversational(example)
        rendered = data_utils.apply_chat_template(example, tokenizer)
        assert ("text" in rendered) if layout == "messages" else {"prompt", "completion"} <= set(rendered)
    if layout == "prompt-completion":
        assert ds.column_names == ["prompt", "completion"]
        assert result.counts["rejected"] == 1  # the row without a final assistant message
        assert "final assistant message" in read_jsonl(tmp_path / "trl" / "rejected.jsonl")[0]["reason"]
    else:
        assert result.counts["rejected"] == 0


@pytest.mark.parametrize(("layout", "file_format"), [("messages", "jsonl"), ("prompt-completion", "parquet")])
def test_trl_sft_trainer_trains_on_the_export(tmp_path, layout, file_format) -> None:
    """One optimizer step of TRL's SFTTrainer (tiny random model, CPU) on the files as written."""
    trl = pytest.importorskip("trl", reason="trl is not installed (pip install trl)")
    transformers = pytest.importorskip("transformers")
    corpus = build(tmp_path, ALPACA * 2, validation=0.3)
    export_corpus(corpus, tmp_path / "trl", to="trl", layout=layout, file_format=file_format)
    loader = "json" if file_format == "jsonl" else "parquet"
    ds = datasets.load_dataset(loader, data_files=str(tmp_path / "trl" / f"train.{file_format}"), split="train")
    tokenizer = _tiny_tokenizer()
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    args = trl.SFTConfig(
        output_dir=str(tmp_path / "run"),
        max_steps=1,
        per_device_train_batch_size=2,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        max_length=64,
        disable_tqdm=True,
    )
    trainer = trl.SFTTrainer(
        model=transformers.LlamaForCausalLM(config), args=args, train_dataset=ds, processing_class=tokenizer
    )
    assert trainer.train().training_loss > 0


def test_trl_text_layout_needs_a_template_stage(tmp_path) -> None:
    corpus = build(tmp_path, ALPACA)
    with pytest.raises(ConfigError, match="needs a `text` column"):
        export_corpus(corpus, tmp_path / "trl", to="trl", layout="text")
    assert not (tmp_path / "trl").exists() or not any((tmp_path / "trl").iterdir())


def test_hf_save_to_disk_with_splits_and_card(tmp_path) -> None:
    corpus = build(tmp_path, ALPACA * 4, validation=0.3)
    result = export_corpus(corpus, tmp_path / "hf", to="hf")
    ds = datasets.load_from_disk(str(tmp_path / "hf"))
    assert isinstance(ds, datasets.DatasetDict) and set(ds) == {"train", "validation"}
    original = Corpus(corpus).load(format="datasets")
    for split in ("train", "validation"):
        assert ds[split].to_list() == original[split].to_list()
        assert result.counts[split] == ds[split].num_rows
    assert (tmp_path / "hf" / "README.md").read_text() == (Corpus(corpus).resolve() / "README.md").read_text()
    assert not [p for p in (tmp_path / "hf").iterdir() if p.name.startswith(".")]  # no leftovers


# -- the record and the guard rails -------------------------------------------------------------------


def test_export_json_records_where_it_came_from(tmp_path) -> None:
    corpus = build(tmp_path, ALPACA, validation=0.5)
    Corpus(corpus)  # v1
    result = export_corpus(f"{corpus}@v1", tmp_path / "out", to="sharegpt")
    record = json.loads((tmp_path / "out" / "export.json").read_text())
    manifest = Corpus(corpus).manifest("v1")
    assert record["corpus"] == str(corpus.resolve())
    assert record["version"] == "v1" and record["fingerprint"] == manifest["fingerprint"]
    assert record["format"] == "sharegpt" and record["layout"] == "sharegpt" and record["file_format"] == "jsonl"
    assert record["winnow_version"] == wn.__version__
    assert record["counts"] == result.counts
    assert record["counts"]["train"] + record["counts"]["validation"] == 5
    names = [f["path"] for f in record["files"]]
    assert names == [n for n in ("train.jsonl", "validation.jsonl") if (tmp_path / "out" / n).exists()]
    for f in record["files"]:
        assert len(read_jsonl(tmp_path / "out" / f["path"])) == f["rows"]
        assert len(f["sha256"]) == 64
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([*names, "export.json"])


def test_errors_are_clear(tmp_path) -> None:
    corpus = build(tmp_path, ALPACA)
    with pytest.raises(ConfigError, match=r"unknown export format 'tlr' \(did you mean 'trl'\?\); choose one of trl"):
        export_corpus(corpus, tmp_path / "o", to="tlr")
    with pytest.raises(ConfigError, match="'llama-factory' has no layout 'openai'; its layouts: sharegpt, alpaca"):
        export_corpus(corpus, tmp_path / "o", to="llama-factory", layout="openai")
    with pytest.raises(ConfigError, match="cannot write file format 'parquet'"):
        export_corpus(corpus, tmp_path / "o", to="openai", file_format="parquet")
    with pytest.raises(CorpusError, match="has no version 'v9'"):
        export_corpus(f"{corpus}@v9", tmp_path / "o", to="trl")
    with pytest.raises(CorpusError, match="holds no corpus version"):
        export_corpus(tmp_path / "nowhere", tmp_path / "o", to="trl")
    with pytest.raises(ConfigError, match="inside the corpus"):
        export_corpus(corpus, corpus / "v1" / "export", to="trl")
    with pytest.raises(ConfigError, match="dataset name"):
        export_corpus(corpus, tmp_path / "o", to="llama-factory", name="../evil")


def test_non_empty_out_needs_force_and_force_replaces_only_the_export(tmp_path) -> None:
    corpus = build(tmp_path, ALPACA, validation=0.5)
    out = tmp_path / "out"
    export_corpus(corpus, out, to="openai")
    with pytest.raises(ConfigError, match="is not empty; .* --force"):
        export_corpus(corpus, out, to="trl")
    (out / "notes.txt").write_text("mine")
    export_corpus(corpus, out, to="alpaca", force=True)
    assert json.loads((out / "export.json").read_text())["format"] == "alpaca"
    assert (out / "notes.txt").read_text() == "mine"  # not ours: left alone
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_paths_from_data_are_never_paths(tmp_path) -> None:
    rows = [{"instruction": "../../etc/passwd", "input": "", "output": "/tmp/x", "file_name": "../escape.jsonl"}]
    corpus = build(tmp_path, rows, name="lfname")
    out = tmp_path / "deep" / "out"
    export_corpus(corpus, out, to="llama-factory", layout="alpaca")
    assert sorted(p.name for p in out.iterdir()) == ["dataset_info.json", "export.json", "train.jsonl"]
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["out"]


# -- the command --------------------------------------------------------------------------------------


def winnow(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "winnow", *args], capture_output=True, text=True, timeout=300)


def test_cli_export_end_to_end(tmp_path) -> None:
    rows = [*OPENAI, {"messages": [{"role": "user", "content": "unanswered"}]}]
    corpus = build(tmp_path, rows)
    r = winnow("export", f"{corpus}@v1", "--to", "openai", str(tmp_path / "oa"))
    assert r.returncode == 0, r.stderr
    assert "3 train" in r.stdout and "1 rejected" in r.stdout and "fingerprint" in r.stdout
    assert "1 row(s) do not fit 'openai'" in r.stderr and "rejected.jsonl" in r.stderr
    assert (tmp_path / "oa" / "train.jsonl").is_file() and (tmp_path / "oa" / "rejected.jsonl").is_file()

    r = winnow("export", str(corpus), "--to", "trl", "--file-format", "parquet", str(tmp_path / "t"))
    assert r.returncode == 0, r.stderr
    assert 'load_dataset("parquet"' in r.stdout and (tmp_path / "t" / "train.parquet").is_file()

    r = winnow("export", str(corpus), "--to", "llama-factory", str(tmp_path / "lf"), "--name", "demo")
    assert r.returncode == 0 and "dataset: demo" in r.stdout


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--to", "open-ai"], ["unknown export format 'open-ai'", "did you mean 'openai'", "hf"]),
        (["--to", "trl", "--layout", "chatml"], ["no layout 'chatml'", "messages, prompt-completion, text"]),
    ],
)
def test_cli_errors_are_one_line(tmp_path, args, needles) -> None:
    corpus = build(tmp_path, ALPACA)
    r = winnow("export", str(corpus), str(tmp_path / "o"), *args)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error:") and len(r.stderr.strip().splitlines()) == 1, r.stderr
    for needle in needles:
        assert needle in r.stderr


def test_cli_refuses_existing_out_and_unknown_version(tmp_path) -> None:
    corpus = build(tmp_path, ALPACA)
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "x").write_text("")
    r = winnow("export", str(corpus), "--to", "trl", str(tmp_path / "o"))
    assert r.returncode == 1 and "is not empty" in r.stderr and "--force" in r.stderr
    r = winnow("export", f"{corpus}@v4", "--to", "trl", str(tmp_path / "p"))
    assert r.returncode == 1 and "has no version 'v4'" in r.stderr and "Traceback" not in r.stderr
