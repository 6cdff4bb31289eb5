"""The template and rephrase stages."""

from __future__ import annotations

import json
import time

import pyarrow as pa
import pytest

from tests import engine_util
from tests.conftest import SHARED_DATA, needs_shared, table
from winnow import schema
from winnow.chat_template import BUILTINS
from winnow.errors import ConfigError, InputError
from winnow.stages.base import from_config
from winnow.stages.template import DEFAULT_PHRASINGS, ChatTemplateRenderer, InstructionRephraser

SYSTEM = {"role": "system", "content": "Be brief."}


def rows_with_system() -> pa.Table:
    return table(
        [
            [SYSTEM, {"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi there"}],
            [
                SYSTEM,
                {"role": "user", "content": "Hello"},
                {"role": "assistant", "content": "Hi"},
                {"role": "user", "content": "Who are you"},
                {"role": "assistant", "content": "  An assistant  "},
            ],
        ]
    )


def alpaca_rows() -> pa.Table:
    t = table([("Translate to English.\n\nBonjour", "Hello"), ("Name a color.", "Blue")])
    return t.set_column(t.column_names.index("meta"), "meta", pa.array(['{"input": "Bonjour"}', '{"input": ""}']))


# -- template ---------------------------------------------------------------------------------


def test_yaml_shape_and_default() -> None:
    stage = from_config({"template": {"template": {"name": "chatml"}}})
    assert stage == ChatTemplateRenderer()
    assert stage.to_config() == {
        "template": {
            "template": {"name": "chatml"},
            "bos_token": None,
            "eos_token": None,
            "add_generation_prompt": True,
            "system": None,
            "date": None,
            "on_error": "raise",
        }
    }


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_every_builtin_keeps_the_invariants(name: str, sample_rows) -> None:
    out = ChatTemplateRenderer(template={"name": name}).process(sample_rows)
    assert out.rejected.num_rows == 0
    for row in out.kept.to_pylist():
        assert row["prompt"] + row["completion"] == row["text"]
        answers = [m["content"] for m in row["messages"] if m["role"] == "assistant"]
        assert len(row["assistant_spans"]) == len(answers)
        for span, answer in zip(row["assistant_spans"], answers):
            covered = row["text"][span["start"] : span["end"]]
            assert answer.strip() in covered  # the content as rendered...
            assert covered.rstrip() == covered  # ...and its end marker, no trailing whitespace
            assert covered.endswith(("<|im_end|>", "<|eot_id|>", "</s>", "<end_of_turn>", "<|end|>", "<|endoftext|>"))
        assert row["completion"].startswith(row["text"][row["assistant_spans"][-1]["start"] :].rstrip()[:1])


def test_columns_for_a_system_prompt_and_two_turns() -> None:
    out = ChatTemplateRenderer(template={"name": "llama-3"}).process(rows_with_system())
    row = out.kept.to_pylist()[1]
    assert row["text"] == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nAn assistant<|eot_id|>"
    )
    assert row["completion"] == "An assistant<|eot_id|>"
    assert row["prompt"].endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert [row["text"][s["start"] : s["end"]] for s in row["assistant_spans"]] == [
        "Hi<|eot_id|>",
        "An assistant<|eot_id|>",
    ]
    assert out.kept.schema.field("assistant_spans").type == pa.list_(
        pa.struct([pa.field("start", pa.int64()), pa.field("end", pa.int64())])
    )
    assert out.kept.column("messages").equals(rows_with_system().column("messages"))


def test_row_without_an_answer_gets_the_generation_prompt() -> None:
    rows = table([[{"role": "user", "content": "Q1"}, {"role": "user", "content": "Q2"}]])
    row = ChatTemplateRenderer().process(rows).kept.to_pylist()[0]
    assert (
        row["text"]
        == row["prompt"]
        == "<|im_start|>user\nQ1<|im_end|>\n<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n"
    )
    assert row["completion"] == "" and row["assistant_spans"] == []
    row = ChatTemplateRenderer(add_generation_prompt=False).process(rows).kept.to_pylist()[0]
    assert row["text"] == row["prompt"] == "<|im_start|>user\nQ1<|im_end|>\n<|im_start|>user\nQ2<|im_end|>\n"


def test_default_system_prompt_only_where_there_is_none() -> None:
    rows = table([("Hello", "Hi"), [SYSTEM, {"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]])
    texts = ChatTemplateRenderer(system="You help.").process(rows).kept.column("text").to_pylist()
    assert texts[0].startswith("<|im_start|>system\nYou help.<|im_end|>\n<|im_start|>user\nHello")
    assert texts[1].startswith("<|im_start|>system\nBe brief.<|im_end|>")


def test_alpaca_uses_the_input_kept_in_meta() -> None:
    texts = ChatTemplateRenderer(template={"name": "alpaca"}).process(alpaca_rows()).kept.column("text").to_pylist()
    assert "paired with an input" in texts[0]
    assert "### Instruction:\nTranslate to English.\n\n### Input:\nBonjour\n\n### Response:Hello</s>" in texts[0]
    assert texts[1].endswith("### Instruction:\nName a color.\n\n### Response:Blue</s>")
    assert "paired with an input" not in texts[1]


def test_custom_string_file_and_tokenizer_config(tmp_path) -> None:
    source = "{{ bos_token }}{% for m in messages %}{{ m.role }}: {{ m.content }}{{ eos_token }}\n{% endfor %}"
    rows = table([("Hi", "Yo")])
    text = ChatTemplateRenderer(template={"chat_template": source}, bos_token="<B>", eos_token="<E>").process(rows)
    assert text.kept.column("text").to_pylist() == ["<B>user: Hi<E>\nassistant: Yo<E>\n"]
    config = tmp_path / "tokenizer_config.json"
    config.write_text(json.dumps({"chat_template": source, "bos_token": {"content": "<s>"}, "eos_token": "</s>"}))
    out = ChatTemplateRenderer(template={"path": str(config)}).process(rows).kept.to_pylist()[0]
    assert out["text"] == "<s>user: Hi</s>\nassistant: Yo</s>\n"
    # This template has no generation prompt: the model must write the role header too.
    assert out["text"][out["assistant_spans"][0]["start"] : out["assistant_spans"][0]["end"]] == "assistant: Yo</s>"
    overridden = ChatTemplateRenderer(template={"path": str(config)}, eos_token="<E>").process(rows)
    assert overridden.kept.column("text").to_pylist() == ["<s>user: Hi<E>\nassistant: Yo<E>\n"]


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"template": {"name": "llama3"}}, "template"),
        ({"template": {"name": "chatml", "path": "x"}}, "template"),
        ({"template": {"path": "/no/such/file.jinja"}}, "template"),
        ({"template": {"chat_template": ""}}, "template"),
        ({"date": "26 Jul 2024"}, "date"),
    ],
)
def test_bad_parameters_fail_before_any_data(params: dict, key: str) -> None:
    with pytest.raises(ConfigError) as e:
        from_config({"template": params})
    assert e.value.key == key


def test_a_template_error_names_the_template_and_the_row() -> None:
    rows = rows_with_system()
    row_id = rows.column("id")[0].as_py()
    with pytest.raises(InputError, match=f"gemma raised: System role not supported \\(row {row_id}\\)"):
        ChatTemplateRenderer(template={"name": "gemma"}).process(rows)
    with pytest.raises(InputError, match=f"undefined value: 'tools' is undefined \\(row {row_id}\\)"):
        ChatTemplateRenderer(template={"chat_template": "{{ tools }}"}).process(rows)
    with pytest.raises(InputError, match="sandbox forbids"):
        ChatTemplateRenderer(template={"chat_template": "{{ cycler.__init__.__globals__ }}"}).process(rows)


def test_on_error_drop_rejects_with_the_reason() -> None:
    rows = pa.concat_tables([rows_with_system(), table([("Hello", "Hi")], source="other")])
    out = ChatTemplateRenderer(template={"name": "gemma"}, on_error="drop").process(rows)
    assert out.kept.num_rows == 1
    assert out.kept.column("text").to_pylist() == [
        "<bos><start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\nHi<end_of_turn>\n"
    ]
    assert out.rejected.column("reason").to_pylist() == ["chat template gemma raised: System role not supported"] * 2
    assert out.counts == {"template error": 2}


def test_strftime_now_uses_the_date_parameter() -> None:
    stage = ChatTemplateRenderer(template={"chat_template": "{{ strftime_now('%d %b %Y') }}"}, date="2024-07-26")
    assert stage.process(table([("a", "b")])).kept.column("text").to_pylist() == ["26 Jul 2024"]


def test_same_output_for_any_batch_size_and_worker_count(tmp_path, sample_rows) -> None:
    stage = ChatTemplateRenderer(template={"name": "mistral"})
    results = [
        engine_util.run(sample_rows, [stage], tmp_path / str(i), size, w)[0]
        for i, (size, w) in enumerate([(100, 1), (1, 1), (3, 2)])
    ]
    assert results[0].column_names[-4:] == ["text", "prompt", "completion", "assistant_spans"]
    assert all(r.equals(results[0]) for r in results[1:])


def test_fingerprint_follows_the_template_file(tmp_path) -> None:
    path = tmp_path / "t.jinja"
    path.write_text("{{ messages[0].content }}")
    stage = ChatTemplateRenderer(template={"path": str(path)})
    before = stage.external_fingerprint()
    path.write_text("{{ messages[-1].content }}")
    assert stage.external_fingerprint() != before
    assert ChatTemplateRenderer().external_fingerprint() != ChatTemplateRenderer(eos_token="x").external_fingerprint()


# -- rephrase ---------------------------------------------------------------------------------


def typed_rows(n: int = 40) -> pa.Table:
    t = table([(f"Summarize point {i}.\n\nThe text number {i}.", f"Summary {i}.") for i in range(n)])
    t = t.set_column(t.column_names.index("task_type"), "task_type", pa.array(["summarization"] * n))
    metas = [json.dumps({"input": f"The text number {i}."}) for i in range(n)]
    return t.set_column(t.column_names.index("meta"), "meta", pa.array(metas))


def test_rephrase_keeps_the_original_and_the_input() -> None:
    stage = InstructionRephraser(fraction=1.0, templates={"summarization": ["Task: {instruction}\nText: {input}"]})
    out = stage.process(typed_rows(3)).kept.to_pylist()
    for i, row in enumerate(out):
        assert row["messages"][0]["content"] == f"Task: Summarize point {i}.\nText: The text number {i}."
        assert row["messages"][1]["content"] == f"Summary {i}."
        meta = json.loads(row["meta"])
        assert meta["original_instruction"] == f"Summarize point {i}.\n\nThe text number {i}."
        assert meta["input"] == f"The text number {i}."


def test_rephrase_is_deterministic_per_row_id(tmp_path) -> None:
    stage = InstructionRephraser(seed=3)
    rows = typed_rows()
    once = stage.process(rows).kept
    # same row, other batch: same phrasing
    alone = stage.process(rows.slice(7, 1)).kept
    assert alone.column("messages")[0] == once.column("messages")[7]
    # reversed order: each row keeps its phrasing
    backwards = stage.process(rows.take(list(range(rows.num_rows))[::-1])).kept
    assert backwards.column("messages").to_pylist()[::-1] == once.column("messages").to_pylist()
    results = [
        engine_util.run(rows, [stage], tmp_path / str(i), size, w)[0]
        for i, (size, w) in enumerate([(100, 1), (1, 1), (7, 2)])
    ]
    assert all(r.equals(results[0]) for r in results[1:])
    # another seed gives another choice
    assert InstructionRephraser(seed=4).process(rows).kept.column("messages") != once.column("messages")


def test_rephrase_fraction_and_variety() -> None:
    rows = typed_rows(200)
    changed = lambda out: sum("original_instruction" in m for m in out.kept.column("meta").to_pylist())  # noqa: E731
    assert changed(InstructionRephraser(fraction=0.0).process(rows)) == 0
    half = changed(InstructionRephraser(fraction=0.5).process(rows))
    # 3 of the 4 summarization phrasings with {input} differ from the row's own form
    assert 50 < half < 100
    firsts = {
        m[0]["content"].split("\n")[0][:12]
        for m in InstructionRephraser(fraction=1.0).process(rows).kept.column("messages").to_pylist()
    }
    assert len(firsts) >= 3


def test_rephrase_templates_are_editable_and_can_be_turned_off() -> None:
    rows = typed_rows(5)
    stage = from_config({"rephrase": {"templates": {"summarization": ["TL;DR of this: {input}"]}, "fraction": 1.0}})
    assert [m[0]["content"] for m in stage.process(rows).kept.column("messages").to_pylist()] == [
        f"TL;DR of this: The text number {i}." for i in range(5)
    ]
    off = InstructionRephraser(templates={"summarization": []}, fraction=1.0).process(rows).kept
    assert off.equals(rows)
    assert stage.to_config()["rephrase"]["templates"] == {"summarization": ["TL;DR of this: {input}"]}
    assert set(InstructionRephraser().phrasings()) == set(DEFAULT_PHRASINGS)


def test_rephrase_leaves_other_rows_alone() -> None:
    rows = table(
        [
            ("Summarize this.", "Ok."),  # no task type
            ("Hi", "Hello", "More?", "Sure."),  # multi-turn
            ("Summarize the plot of Hamlet.", "A prince avenges his father."),  # no input: only no-input phrasings
        ]
    )
    rows = rows.set_column(
        rows.column_names.index("task_type"), "task_type", pa.array([None, "summarization", "summarization"])
    )
    stage = InstructionRephraser(templates={"summarization": ["Text: {input}\nDo: {instruction}"]}, fraction=1.0)
    assert stage.process(rows).kept.equals(rows)  # the only phrasing needs an input none of them has
    out = InstructionRephraser(templates={"summarization": ["Please: {instruction}"]}, fraction=1.0).process(rows).kept
    assert [m[0]["content"] for m in out.column("messages").to_pylist()] == [
        "Summarize this.",
        "Hi",
        "Please: Summarize the plot of Hamlet.",
    ]


def test_rephrase_skips_other_languages() -> None:
    rows = table(
        [
            ("为什么植物需要光合作用？", "因为……"),
            ("Why do plants need light?", "To make sugar."),
            ("Pourquoi ?", "Parce que."),
        ]
    )
    rows = rows.set_column(rows.column_names.index("task_type"), "task_type", pa.array(["open_qa"] * 3))
    rows = rows.set_column(rows.column_names.index("lang"), "lang", pa.array([None, None, "fr"]))
    stage = InstructionRephraser(templates={"open_qa": ["Q: {instruction}"]}, fraction=1.0)
    firsts = [m[0]["content"] for m in stage.process(rows).kept.column("messages").to_pylist()]
    assert firsts == ["为什么植物需要光合作用？", "Q: Why do plants need light?", "Pourquoi ?"]
    anywhere = InstructionRephraser(templates={"open_qa": ["Q: {instruction}"]}, fraction=1.0, languages=[])
    assert all(m[0]["content"].startswith("Q: ") for m in anywhere.process(rows).kept.column("messages").to_pylist())


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"templates": {"summarization": ["{question}"]}}, "templates"),
        ({"templates": {"summarization": ["no fields"]}}, "templates"),
        ({"templates": {"summarization": ["{instruction"]}}, "templates"),
        ({"fraction": 1.5}, "fraction"),
    ],
)
def test_rephrase_bad_parameters(params: dict, key: str) -> None:
    with pytest.raises(ConfigError) as e:
        from_config({"rephrase": params})
    assert e.value.key == key


# -- real data ----------------------------------------------------------------------------------


@needs_shared
def test_real_data_renders_and_spans_hold() -> None:
    from winnow.formats import open_input
    from winnow.pipeline import InputSpec

    path = SHARED_DATA / "dolly" / "dolly_15k_head.jsonl"
    rows = open_input(InputSpec(path=str(path))).to_table()
    rows = rows.append_column(schema.ORDER, pa.array(range(rows.num_rows), pa.int64()))
    started = time.perf_counter()
    out = ChatTemplateRenderer(template={"name": "llama-3"}).process(rows)
    assert time.perf_counter() - started < 5
    assert out.kept.num_rows == rows.num_rows
    for row in out.kept.to_pylist():
        assert row["prompt"] + row["completion"] == row["text"]
        (span,) = row["assistant_spans"]
        assert row["text"][span["start"] : span["end"]] == row["messages"][-1]["content"].strip() + "<|eot_id|>"
