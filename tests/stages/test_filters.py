from __future__ import annotations

from tests.conftest import conversation, table
from winnow.stages import LengthFilter


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
    assert LengthFilter().process(t).rejected.column("reason").to_pylist() == [
        "response has 0 chars, fewer than 1"
    ]


def test_off_limits_keep_everything(sample_rows) -> None:
    assert LengthFilter(min_response=None).process(sample_rows).kept.num_rows == sample_rows.num_rows
