from __future__ import annotations

import time

import pytest

from tests import engine_util
from tests.conftest import ROOT, SHARED_DATA, conversation, needs_shared, table
from winnow.errors import ConfigError
from winnow.formats import InputSpec, open_input
from winnow.stages import from_config
from winnow.stages.refusal import RefusalFilter, phrase_regex

REFUSALS = [
    ("Write a poem about the sea.", "As an AI language model, I cannot write poems about feelings."),
    ("Help me.", "I'm sorry, but I can't help with that."),
    ("Summarize it.", "I apologize, but I cannot assist with that request."),
    ("Opinion?", "I don't have personal opinions, but here are some views."),
    ("Do it.", "I cannot fulfill this request."),
    ("你的使命？", "作为一个AI，我的能力是帮助人们。"),
    ("预订机票", "抱歉，我无法帮助您预订机票。"),
    ("Schreib ein Gedicht.", "Als KI-Sprachmodell kann ich keine Gefühle haben."),
    ("Écris un poème.", "En tant qu'IA, je n'ai pas de sentiments."),
    ("Escribe un poema.", "Como modelo de lenguaje, no tengo sentimientos."),
]
KEEPS = [
    ("My dog died.", "I'm sorry to hear that. Losing a pet is hard; here are some ways to cope."),
    ("Who are you?", "I am an AI assistant developed by Acme. How can I help?"),
    ("Who are you?", "As a language model, I go by the name Vicuna and was trained by LMSYS."),
    ("你是谁？", "您好，我是 {{name}}，一个由 {{author}} 开发的人工智能助手。"),
    ("Write a sick note.", "I'm sorry, but I'm unable to come into work today due to a migraine."),
    ("Report it.", "I'm sorry, but the website www.example.com is unavailable."),
    ("Describe the workflow.", "作为一名AI语音助手的日常工作流程通常分为以下几个步骤。"),
    ("Word?", "The unfulfilled promise, I cannot fulfilled… is not a phrase here: unfulfillment."),
]


def test_catches_refusals_in_every_language_with_the_phrase_in_the_reason() -> None:
    out = RefusalFilter().process(table(REFUSALS))
    assert out.kept.num_rows == 0
    reasons = out.rejected.column("reason").to_pylist()
    assert reasons[0] == 'refusal: "as an ai language model" at the start of the response'
    assert reasons[1] == "refusal: \"i'm sorry, but i can't help\" at the start of the response"
    assert reasons[5] == 'refusal: "作为一个ai," at the start of the response'
    assert reasons[7] == 'refusal: "als ki-sprachmodell" at the start of the response'
    assert out.counts == {"refusal": len(REFUSALS)}


def test_keeps_identity_answers_and_apologies_that_are_not_refusals() -> None:
    out = RefusalFilter().process(table(KEEPS))
    assert out.rejected.column("reason").to_pylist() == []


def test_within_chars_in_both_directions() -> None:
    late = "Here is a long and helpful answer. " * 6 + "As an AI language model, I cannot feel."
    early = "Good question! As an AI language model, I cannot feel."
    t = table([("q", late), ("q", early)])
    assert RefusalFilter().process(t).rejected.column("source_index").to_pylist() == [1]
    out = RefusalFilter(within_chars=None).process(t)
    assert out.rejected.column("reason").to_pylist()[0] == 'refusal: "as an ai language model" in the response'
    assert RefusalFilter(within_chars=0).process(t).rejected.num_rows == 0
    starts = table([("q", "As an AI language model, no.")])
    assert RefusalFilter(within_chars=0).process(starts).rejected.num_rows == 1


def test_every_assistant_turn_is_checked_and_named() -> None:
    t = table([conversation("Find a recipe.", "Here is one.", "Order pizza.", "I'm sorry, but I can't order food.")])
    reasons = RefusalFilter().process(t).rejected.column("reason").to_pylist()
    assert reasons == ["refusal: \"i'm sorry, but i can't order\" at the start of assistant turn 2"]
    only_user = table([("As an AI language model, answer me.", "Sure: 42.")])
    assert RefusalFilter().process(only_user).rejected.num_rows == 0


def test_matching_normalizes_case_width_and_apostrophes() -> None:
    t = table(
        [("q", "I’M SORRY, BUT I CAN’T HELP WITH THAT."), ("q", "ＡＳ ＡＮ ＡＩ ＬＡＮＧＵＡＧＥ ＭＯＤＥＬ, no.")]
    )
    assert RefusalFilter().process(t).rejected.num_rows == 2


def test_phrases_replace_and_extra_phrases_add() -> None:
    t = table([("q", "As an AI language model, no."), ("q", "Beep boop, I'm just a bot.")])
    assert RefusalFilter(extra_phrases=["i'm just a bot"]).process(t).rejected.num_rows == 2
    out = RefusalFilter(phrases=["{i'm|i am} just a bot"]).process(t)
    assert out.rejected.column("reason").to_pylist() == ['refusal: "i\'m just a bot" at the start of the response']
    assert RefusalFilter(phrases=[]).process(t).rejected.num_rows == 0
    assert RefusalFilter(languages=["zh"]).process(t).rejected.num_rows == 0


def test_tag_mode_keeps_rows_and_writes_the_phrase() -> None:
    out = RefusalFilter(mode="tag").process(table([("q", "I cannot fulfill that."), ("q", "Sure.")]))
    assert out.rejected.num_rows == 0
    assert out.kept.column("refusal").to_pylist() == ["i cannot fulfill", None]


def test_word_boundaries_for_latin_phrases_only() -> None:
    assert phrase_regex("i cannot fulfill") == r"\bi\ cannot\ fulfill\b"
    assert phrase_regex("作为{ai|人工智能}").startswith("作为")
    assert not phrase_regex("作为{ai|人工智能}").endswith(r"\b")


@pytest.mark.parametrize(
    "params,key",
    [
        ({"within_chars": 5000}, "within_chars"),
        ({"languages": ["xx"]}, "languages"),
        ({"phrases": ["{unclosed"]}, "phrases"),
        ({"extra_phrases": ["  "]}, "extra_phrases"),
        ({"mode": "delete"}, "mode"),
    ],
)
def test_bad_parameters_name_the_key(params: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        from_config({"refusal": params})
    assert err.value.key == key


def test_same_result_for_any_batch_size_and_worker_count(tmp_path) -> None:
    t = table(REFUSALS + KEEPS)
    runs = [
        engine_util.run(t, [RefusalFilter()], tmp_path / str(i), size, w)
        for i, (size, w) in enumerate([(100, 1), (1, 1), (3, 2)])
    ]
    for kept, rejected, _ in runs[1:]:
        assert kept.equals(runs[0][0]) and rejected.equals(runs[0][1])
    assert runs[0][1].num_rows == len(REFUSALS)


def test_sample_data_refusals_are_exactly_the_planted_rows() -> None:
    root = ROOT / "sample_data"
    found = set()
    for name in ("alpaca.jsonl", "sharegpt.json", "openai.jsonl", "dolly.jsonl", "prompt_completion.csv"):
        t = open_input(InputSpec(path=str(root / name))).to_table()
        out = RefusalFilter().process(t)
        found |= {(name, i) for i in out.rejected.column("source_index").to_pylist()}
    assert found == {
        ("alpaca.jsonl", 79),
        ("alpaca.jsonl", 118),
        ("sharegpt.json", 20),
        ("openai.jsonl", 40),
        ("openai.jsonl", 48),
        ("prompt_completion.csv", 32),
    }


@needs_shared
def test_real_data_identity_answers_are_kept_and_tool_refusals_caught() -> None:
    def rejected(path: str) -> int:
        t = open_input(InputSpec(path=str(SHARED_DATA / path))).to_table()
        return RefusalFilter().process(t).rejected.num_rows

    assert rejected("llamafactory/identity.json") == 0
    assert rejected("fastchat/dummy_conversation.json") == 0
    assert rejected("llamafactory/glaive_toolcall_en_demo.json") >= 40


@needs_shared
def test_speed_on_real_rows() -> None:
    t = open_input(InputSpec(path=str(SHARED_DATA / "llamafactory/alpaca_en_demo.json"))).to_table()
    stage = RefusalFilter()
    stage.process(t.slice(0, 10))
    started = time.perf_counter()
    stage.process(t)
    assert time.perf_counter() - started < 2.0
