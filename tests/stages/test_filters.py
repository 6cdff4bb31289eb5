from __future__ import annotations

import pickle
import re
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from tests import engine_util
from tests.conftest import conversation, table
from winnow.errors import ConfigError, MissingDependencyError
from winnow.stages.base import from_config
from winnow.stages.filters import ExpressionFilter, LengthFilter, RegexFilter


def test_default_drops_empty_and_blank_responses(sample_rows) -> None:
    out = LengthFilter().process(sample_rows)
    assert out.rejected.column("source_index").to_pylist() == [2, 8]
    assert out.rejected.column("reason").to_pylist() == ["response has 0 chars, fewer than 1"] * 2
    assert out.counts == {"response too short": 2}


def test_limits_in_chars_and_words() -> None:
    t = table([("Tell me", "one two three"), ("Tell me more please now", "one"), ("x", "a" * 50)])
    out = LengthFilter(min_response=2, unit="words").process(t)
    assert out.rejected.column("reason").to_pylist() == ["response has 1 words, fewer than 2"] * 2
    out = LengthFilter(max_response=20).process(t)
    assert out.rejected.column("reason").to_pylist() == ["response has 50 chars, more than 20"]
    out = LengthFilter(max_instruction=3, unit="words").process(t)
    assert out.rejected.column("reason").to_pylist() == ["instruction has 5 words, more than 3"]
    assert out.counts == {"instruction too long": 1}


def test_near_miss_at_the_limit_is_kept() -> None:
    t = table([("q", "ab"), ("q", "a")])
    out = LengthFilter(min_response=2, max_response=2).process(t)
    assert out.kept.column("source_index").to_pylist() == [0]


def test_response_rule_is_named_first_when_several_break() -> None:
    out = LengthFilter(min_instruction=10, min_response=5).process(table([("short", "no")]))
    assert out.rejected.column("reason").to_pylist() == ["response has 2 chars, fewer than 5"]


def test_multi_turn_counts_every_turn_of_a_role() -> None:
    t = table([conversation("q1", "ab", "q2", "cd")])
    assert LengthFilter(min_response=5).process(t).kept.num_rows == 1  # "ab\ncd" is 5 chars
    assert LengthFilter(min_response=6).process(t).kept.num_rows == 0


def test_prompt_only_rows_have_an_empty_response() -> None:
    t = table([conversation("first question", "")[:1] + conversation("second")])
    assert LengthFilter().process(t).rejected.column("reason").to_pylist() == ["response has 0 chars, fewer than 1"]


def test_off_limits_keep_everything(sample_rows) -> None:
    assert LengthFilter(min_response=None).process(sample_rows).kept.num_rows == sample_rows.num_rows


# -- length: tokens ---------------------------------------------------------------------------


def _tokenizer_file(folder: Path) -> Path:
    """A tiny word-level tokenizer trained in-process (never downloaded): one token per word or
    punctuation mark, unknown words as [UNK]."""
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    trainer = tokenizers.trainers.WordLevelTrainer(special_tokens=["[UNK]", "[BOS]"])
    tok.train_from_iterator(["the cat sat on the mat", "hello world, how are you?"], trainer)
    tok.post_processor = tokenizers.processors.TemplateProcessing(
        single="[BOS] $A", special_tokens=[("[BOS]", 1)]
    )  # special tokens must not be counted
    path = folder / "tokenizer.json"
    tok.save(str(path))
    return path


def test_tokens_are_counted_with_a_local_tokenizer_file(tmp_path) -> None:
    path = _tokenizer_file(tmp_path)
    t = table([("q", "the cat, sat!"), ("q", "hello world"), ("q", "  zebra  ")])
    out = LengthFilter(min_response=3, unit="tokens", tokenizer=str(path)).process(t)
    # "the cat, sat!" is 5 tokens (words and punctuation) and stays; the near miss has 2.
    assert out.rejected.column("reason").to_pylist() == [
        "response has 2 tokens, fewer than 3",
        "response has 1 tokens, fewer than 3",
    ]
    assert out.counts == {"response too short": 2}


def test_tokens_of_a_role_are_the_sum_over_its_turns(tmp_path) -> None:
    path = _tokenizer_file(tmp_path)
    t = table([conversation("q", "the cat", "q", "sat on"), conversation("q", "the cat", "q", "sat on the")])
    out = LengthFilter(min_response=5, unit="tokens", tokenizer=str(path)).process(t)
    assert out.rejected.column("reason").to_pylist() == ["response has 4 tokens, fewer than 5"]


def test_tokenizer_folder_and_max_limit(tmp_path) -> None:
    _tokenizer_file(tmp_path)
    t = table([("the cat sat on the mat", "x"), ("the cat", "x")])
    out = LengthFilter(max_instruction=5, unit="tokens", tokenizer=str(tmp_path)).process(t)
    assert out.rejected.column("reason").to_pylist() == ["instruction has 6 tokens, more than 5"]


def test_tokens_need_a_tokenizer_and_a_tokenizer_needs_tokens() -> None:
    with pytest.raises(ConfigError, match="needs a tokenizer") as e:
        LengthFilter(unit="tokens")
    assert e.value.key == "tokenizer"
    with pytest.raises(ConfigError, match="only used with unit: tokens"):
        from_config({"length": {"tokenizer": "gpt2"}})


def test_hub_name_not_in_the_local_cache_fails_clearly_and_never_downloads(monkeypatch) -> None:
    pytest.importorskip("tokenizers")
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.setitem(sys.modules, "transformers", None)  # no silent fallback that could download
    stage = LengthFilter(unit="tokens", tokenizer="some-org/some-model")  # built fine: loads lazily
    with pytest.raises(ConfigError, match="not in the local Hugging Face cache.*network") as e:
        stage.setup()
    assert e.value.key == "tokenizer"


def test_hub_name_found_in_the_local_cache_is_used(monkeypatch, tmp_path) -> None:
    path = _tokenizer_file(tmp_path)
    import huggingface_hub

    asked = []
    monkeypatch.setattr(
        huggingface_hub, "try_to_load_from_cache", lambda repo, name, **k: asked.append((repo, name)) or str(path)
    )
    out = LengthFilter(min_response=2, unit="tokens", tokenizer="gpt2").process(table([("q", "hello")]))
    assert asked == [("gpt2", "tokenizer.json")]
    assert out.rejected.column("reason").to_pylist() == ["response has 1 tokens, fewer than 2"]


def test_missing_path_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no such file"):
        LengthFilter(unit="tokens", tokenizer="./missing/tokenizer.json").setup()


def test_missing_tokenizers_package_fails_at_setup_with_the_pip_line(monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    (tmp_path / "tokenizer.json").write_text("{}")
    stage = LengthFilter(unit="tokens", tokenizer=str(tmp_path / "tokenizer.json"))
    with pytest.raises(MissingDependencyError, match="pip install tokenizers"):
        stage.setup()


def test_tokenizer_loads_once_and_does_not_travel_with_the_stage(tmp_path) -> None:
    path = _tokenizer_file(tmp_path)
    stage = LengthFilter(unit="tokens", tokenizer=str(path))
    stage.setup()
    loaded = stage._counter
    stage.setup()
    assert stage._counter is loaded
    again = pickle.loads(pickle.dumps(stage))
    assert again._counter is None and again == stage
    assert from_config(stage.to_config()) == stage


def test_tokens_give_the_same_output_for_any_batching(tmp_path) -> None:
    path = _tokenizer_file(tmp_path)
    stage = LengthFilter(min_response=3, unit="tokens", tokenizer=str(path), per_turn={"max_response": 4})
    rows = table([("q", "the cat sat"), ("q", "hi"), conversation("a", "the cat sat on the mat", "b", "ok ok ok")] * 3)
    results = [
        engine_util.run(rows, [stage], tmp_path / str(i), size, workers)
        for i, (size, workers) in enumerate([(100, 1), (1, 1), (2, 2)])
    ]
    for kept, rejected, _ in results[1:]:
        assert kept.equals(results[0][0]) and rejected.equals(results[0][1])
    assert (
        results[0][1].column("reason").to_pylist()
        == [
            "response has 1 tokens, fewer than 3",
            "assistant turn 1 has 6 tokens, more than 4",
        ]
        * 3
    )


# -- length: single turns and the number of turns ----------------------------------------------------


def test_an_empty_answer_inside_a_long_chat_is_caught() -> None:
    chat = conversation("q1", "a long first answer", "q2", "  ", "q3", "another answer")
    fine = conversation("q1", "a long first answer", "q2", "ok", "q3", "another answer")
    stage = LengthFilter(per_turn={"min_response": 1})
    assert LengthFilter().process(table([chat])).kept.num_rows == 1  # the joined response is long
    out = stage.process(table([chat, fine]))
    assert out.rejected.column("reason").to_pylist() == ["assistant turn 2 has 0 chars, fewer than 1"]
    assert out.counts == {"assistant turn too short": 1}
    assert out.kept.column("source_index").to_pylist() == [1]


def test_one_huge_turn_is_caught_and_the_first_bad_turn_is_named() -> None:
    chat = conversation("hi", "hello", "x" * 50, "ok", "y" * 60, "fine")
    near = conversation("hi", "hello", "x" * 40, "ok")
    out = LengthFilter(per_turn={"max_instruction": 40}).process(table([chat, near]))
    assert out.rejected.column("reason").to_pylist() == ["user turn 2 has 50 chars, more than 40"]
    assert out.counts == {"user turn too long": 1}


def test_per_turn_limits_use_the_unit_and_the_response_rule_comes_first() -> None:
    chat = conversation("q", "one two three", "q", "one")
    out = LengthFilter(per_turn={"min_response": 2}, unit="words").process(table([chat]))
    assert out.rejected.column("reason").to_pylist() == ["assistant turn 2 has 1 words, fewer than 2"]
    # A whole-response rule a row breaks is named before a single turn.
    out = LengthFilter(min_response=10, per_turn={"min_response": 2}).process(table([("q", "")]))
    assert out.rejected.column("reason").to_pylist() == ["response has 0 chars, fewer than 10"]


def test_per_turn_keys_are_checked() -> None:
    with pytest.raises(ConfigError, match="per_turn: unknown limit 'min_respnse'") as e:
        from_config({"length": {"per_turn": {"min_respnse": 1}}})
    assert e.value.key == "per_turn"
    stage = from_config({"length": {"per_turn": {"max_response": 100}, "max_turns": 4}})
    assert from_config(stage.to_config()) == stage


def test_number_of_turns_counts_user_messages() -> None:
    one = conversation("q", "a", system="be brief")
    three = conversation("q1", "a1", "q2", "a2", "q3", "a3")
    prompt_only = conversation("q1", "")[:1] + conversation("q2")  # two user turns, no answers
    t = table([one, three, prompt_only])
    out = LengthFilter(min_response=None, min_turns=2).process(t)
    assert out.rejected.column("reason").to_pylist() == ["conversation has 1 turns, fewer than 2"]
    assert out.counts == {"too few turns": 1}
    out = LengthFilter(min_response=None, max_turns=2).process(t)
    assert out.rejected.column("reason").to_pylist() == ["conversation has 3 turns, more than 2"]
    assert out.counts == {"too many turns": 1}
    assert LengthFilter(min_response=None, min_turns=1, max_turns=3).process(t).kept.num_rows == 3


# -- regex ------------------------------------------------------------------------------------------


def test_regex_drops_matching_rows_and_quotes_the_match() -> None:
    t = table(
        [
            ("Where can I read more?", "See https://example.com/docs for details."),
            ("Visit https://example.com and summarize it.", "It is a test page."),  # only the instruction
            ("What is HTTP?", "HTTP is a protocol; an address starts with http but this has none."),
        ]
    )
    out = RegexFilter(pattern=r"https?://\S+", label="no-urls").process(t)
    assert out.rejected.column("reason").to_pylist() == [
        "regex 'no-urls' matched the response: 'https://example.com/docs'"
    ]
    assert out.counts == {"regex: no-urls": 1}
    out = RegexFilter(pattern=r"https?://", roles=["user"]).process(t)
    assert out.rejected.column("reason").to_pylist() == ["regex 'https?://' matched the instruction: 'https://'"]
    out = RegexFilter(pattern=r"https?://", roles=["user", "assistant"]).process(t)
    assert out.rejected.column("source_index").to_pylist() == [0, 1]


def test_regex_ignore_case_and_keep_action() -> None:
    t = table([("q", "As an AI language model, I cannot."), ("q", "as an ai language model I can't"), ("q", "Sure.")])
    assert RegexFilter(pattern="As an AI language model").process(t).rejected.num_rows == 1
    out = RegexFilter(pattern="as an ai language model", ignore_case=True, label="ai-disclaimer").process(t)
    assert out.rejected.column("source_index").to_pylist() == [0, 1]
    assert out.counts == {"regex: ai-disclaimer": 2}
    assert out.rejected.column("reason").to_pylist()[0] == (
        "regex 'ai-disclaimer' matched the response: 'As an AI language model'"
    )
    out = RegexFilter(pattern=r"\bcan(not|'t)\b", action="keep", label="refusal").process(t)
    assert out.rejected.column("reason").to_pylist() == ["regex 'refusal' did not match the response"]
    assert out.kept.column("source_index").to_pylist() == [0, 1]


def test_regex_searches_each_turn_so_anchors_are_per_turn() -> None:
    t = table([conversation("q1", "Fine.", "q2", "Sure! Here it is."), ("q", "I am Sure about it.")])
    out = RegexFilter(pattern="^Sure").process(t)
    assert out.rejected.column("source_index").to_pylist() == [0]


def test_regex_pattern_is_validated_as_re2() -> None:
    with pytest.raises(ConfigError, match=r"parameter 'pattern' of stage 'regex' is not a valid RE2 pattern.*") as e:
        from_config({"regex": {"pattern": "(unclosed"}})
    assert e.value.key == "pattern"
    with pytest.raises(ConfigError, match="look-around"):
        RegexFilter(pattern=r"foo(?=bar)")
    with pytest.raises(ConfigError, match="roles") as e:
        RegexFilter(pattern="x", roles=["bot"])
    assert e.value.key == "roles"


def test_regex_without_pattern_keeps_everything_and_round_trips(sample_rows) -> None:
    assert RegexFilter().process(sample_rows).kept.num_rows == sample_rows.num_rows
    stage = from_config({"regex": {"pattern": "x+", "roles": ["user"], "action": "keep", "label": "xs"}})
    assert from_config(stage.to_config()) == stage


# -- expression ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "offending"),
    [
        ("__import__('os').system('x')", "__import__"),
        ("().__class__.__bases__[0].__subclasses__()", "subclasses"),
        ("open('/etc/passwd')", "open"),
        ("(lambda: 1)()", "lambda"),
        ("len([x for x in response]) > 1", "comprehension"),
        ("'abc'.upper() == 'ABC'", "may be called"),
        ("'abc'.__class__ == 1", "__class__"),
        ("response.__len__ > 1", "__len__"),
        ("quality[0] > 1", "subscripts"),
        ("eval('1') == 1", "eval"),
        ("_order > 3", "_order"),
        ("len(response, 2) > 1", "takes 1"),
        ("contains(response, instruction)", "string literal"),
        ("(x := 1) > 0", "assignment"),
        ("response is None", "is not"),
        ("matches(response, '(?=x)')", "RE2"),
        ("len(response) >", "not valid syntax"),
        ("not " * 100 + "True", "nested more than"),
        ("1" + " + 1" * 400 + " > 0", "nested more than"),
        ("x > 0 or " * 300 + "True", "chars long"),
        ("99999999999999999999 > 1", "literal"),
    ],
)
def test_expression_sandbox_refuses_everything_else(source: str, offending: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(offending)) as e:
        from_config({"expression": {"keep": source}})
    assert e.value.key == "keep"


def _rows() -> pa.Table:
    t = table(
        [
            ("Summarize the text.", "A short but complete summary of the text."),
            ("Say hi.", "hi"),
            ("Visit http://x.y", "Done: see http://x.y"),
            ("Classify this.", "positive"),
        ]
    )
    t = t.set_column(
        t.schema.get_field_index("task_type"), "task_type", pa.array(["summarization", "other", None, None])
    )
    t = t.set_column(t.schema.get_field_index("lang"), "lang", pa.array(["en", "en", "de", None]))
    quality = pa.array(
        [{"score": 0.9}, {"score": 0.2}, {"score": None}, None], pa.struct([pa.field("score", pa.float64())])
    )
    return t.append_column("quality", quality)


def _kept(keep: str) -> list[int]:
    return ExpressionFilter(keep=keep).process(_rows()).kept.column("source_index").to_pylist()


def test_expression_keep_and_drop_with_reasons() -> None:
    out = ExpressionFilter(keep="len(response) > 20 and task_type != 'other'").process(_rows())
    assert out.kept.column("source_index").to_pylist() == [0]
    assert (
        out.rejected.column("reason").to_pylist()
        == ["expression \"len(response) > 20 and task_type != 'other'\" is false"] * 3
    )
    assert out.counts == {"expression": 3}
    out = ExpressionFilter(drop="'http' in response").process(_rows())
    assert out.rejected.column("source_index").to_pylist() == [2]
    assert out.rejected.column("reason").to_pylist() == ["expression \"'http' in response\" is true"]


@pytest.mark.parametrize(
    ("keep", "kept"),
    [
        ("len(response) > 20", [0]),
        ("len(response) >= 2", [0, 1, 2, 3]),  # the near miss: "hi" has exactly 2
        ("words(response) <= 2 and len(instruction) < 10", [1]),
        ("lang in ['en', 'fr']", [0, 1]),
        ("lang not in ('en',)", [2, 3]),
        ("lower(instruction) == 'say hi.' or startswith(response, 'Done')", [1, 2]),
        ("contains(upper(response), 'SUMMARY') or endswith(response, 'tive')", [0, 3]),
        ("matches(response, '^[a-z]+$')", [1, 3]),
        ("not 'http' in response and source == 'test'", [0, 1, 3]),
        ("quality.score > 0.5", [0]),
        ("2 < len(response) < 10", [3]),
        ("len(response) / len(instruction) > 2", [0]),
        ("len(response) - 2 * len(strip(instruction)) + 1 >= -11", [0, 1, 2]),  # row 3: -19
        ("turns == 1 and len(messages) == 2", [0, 1, 2, 3]),
        ("True", [0, 1, 2, 3]),
        ("1 > 2", []),
    ],
)
def test_expression_supported_forms(keep: str, kept: list[int]) -> None:
    assert _kept(keep) == kept


@pytest.mark.parametrize(
    ("keep", "kept"),
    [
        ("task_type != 'other'", [0, 2, 3]),  # null is not 'other', as in Python
        ("task_type == None", [2, 3]),
        ("task_type != None", [0, 1]),
        ("task_type < 'p'", [1]),  # "other" < "p"; an ordering comparison with null is false
        ("lang in ['de', None]", [2, 3]),
        ("quality.score > 0.1", [0, 1]),  # a null struct or a null field is false, not kept
        ("not quality.score > 0.1", [2, 3]),
        ("quality == None", [3]),
        ("len(task_type) > 0", [0, 1]),
        ("contains(task_type, 'sum')", [0]),
    ],
)
def test_expression_null_rules(keep: str, kept: list[int]) -> None:
    assert _kept(keep) == kept


def test_expression_drop_keeps_rows_whose_condition_is_false_because_of_null() -> None:
    out = ExpressionFilter(drop="quality.score < 0.5").process(_rows())
    assert out.rejected.column("source_index").to_pylist() == [1]


def test_expression_errors_at_run_time_name_the_problem() -> None:
    with pytest.raises(ConfigError, match="no column 'score'; columns: id, messages") as e:
        ExpressionFilter(keep="score > 1").process(_rows())
    assert e.value.key == "keep"
    with pytest.raises(ConfigError, match="must be a condition"):
        ExpressionFilter(keep="len(response)").process(_rows())
    with pytest.raises(ConfigError, match=r"at 'task_type > 3'"):
        ExpressionFilter(keep="task_type > 3").process(_rows())
    with pytest.raises(ConfigError, match="no field 'grade'; fields: score"):
        ExpressionFilter(drop="quality.grade > 1").process(_rows())
    with pytest.raises(ConfigError, match="not a struct"):
        ExpressionFilter(drop="lang.code == 'x'").process(_rows())
    with pytest.raises(ConfigError, match="not both") as e:
        ExpressionFilter(keep="True", drop="False")
    assert e.value.key == "drop"


def test_expression_without_condition_keeps_everything_and_round_trips(sample_rows) -> None:
    assert ExpressionFilter().process(sample_rows).kept.num_rows == sample_rows.num_rows
    stage = from_config({"expression": {"drop": "turns > 3"}})
    assert from_config(stage.to_config()) == stage


def test_regex_and_expression_give_the_same_output_for_any_batching(sample_rows, tmp_path) -> None:
    stages = [
        RegexFilter(pattern=r"(?i)paris", label="paris"),
        ExpressionFilter(keep="len(strip(response)) > 0 and turns <= 1"),
    ]
    results = [
        engine_util.run(sample_rows, stages, tmp_path / str(i), size, workers)
        for i, (size, workers) in enumerate([(100, 1), (1, 1), (3, 2)])
    ]
    for kept, rejected, _ in results[1:]:
        assert kept.equals(results[0][0]) and rejected.equals(results[0][1])
    assert sorted(results[0][1].column("source_index").to_pylist()) == [0, 1, 2, 4, 6, 7, 8]
