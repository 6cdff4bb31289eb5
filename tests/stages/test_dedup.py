from __future__ import annotations

import pyarrow as pa
import pytest

from tests.conftest import conversation, table
from winnow.errors import ConfigError
from winnow.stages import ExactDedup


def kept_indexes(stage: ExactDedup, t) -> list[int]:
    return stage.run(t).kept.column("source_index").to_pylist()


def test_exact_duplicates_after_normalization(sample_rows) -> None:
    out = ExactDedup().run(sample_rows)
    assert out.kept.column("source_index").to_pylist() == [0, 2, 3, 4, 5, 6, 8, 9]
    first = sample_rows["id"][0].as_py()
    assert out.rejected.column("reason").to_pylist() == [f"exact duplicate of {first}"] * 2
    assert out.counts == {"exact duplicate": 2}


def test_normalization_covers_unicode_width_case_and_whitespace() -> None:
    t = table([("ＡＢＣ  is   here", "ok"), ("abc is here\n", "OK"), ("abc is here!", "ok")])
    assert kept_indexes(ExactDedup(), t) == [0, 2]
    assert kept_indexes(ExactDedup(normalize=False), t) == [0, 1, 2]


def test_on_instruction_and_keep_longest_response() -> None:
    t = table(
        [
            ("Capital of France?", "Paris."),
            ("capital of france?", "It is Paris, on the Seine."),
            ("Capital of Spain?", "Madrid."),
        ]
    )
    assert kept_indexes(ExactDedup(on="instruction"), t) == [0, 2]
    assert kept_indexes(ExactDedup(on="instruction", keep="longest_response"), t) == [1, 2]
    assert kept_indexes(ExactDedup(on="conversation"), t) == [0, 1, 2]


def test_keep_most_turns() -> None:
    t = table([("Hi", "Hello"), ("Hi", "Hello", "More?", "Sure.")])
    assert kept_indexes(ExactDedup(on="instruction", keep="most_turns"), t) == [0, 1]  # instructions differ
    t = table([("Hi", "Hello"), ("hi", "Hello there, friend")])  # a tie in turns: the smaller id wins
    smaller = min(range(2), key=lambda i: t["id"][i].as_py())
    assert kept_indexes(ExactDedup(on="instruction", keep="most_turns"), t) == [smaller]


def test_keep_by_a_column() -> None:
    t = table([("Hi", "a"), ("hi", "b"), ("HI", "c")]).append_column("score", pa.array([0.2, 0.9, 0.5]))
    assert kept_indexes(ExactDedup(on="instruction", keep={"by": "score"}), t) == [1]
    assert kept_indexes(ExactDedup(on="instruction", keep={"by": "score", "order": "asc"}), t) == [0]
    with pytest.raises(ConfigError, match="no column 'nope'"):
        ExactDedup(on="instruction", keep={"by": "nope"}).run(t)
    with pytest.raises(ConfigError, match="keep as a map"):
        ExactDedup(keep={"by": "score", "order": "up"})


def test_roles_matter_in_conversation_mode() -> None:
    a = [{"role": "user", "content": "a b"}, {"role": "assistant", "content": "c"}]
    b = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b c"}]
    assert kept_indexes(ExactDedup(), table([a, b])) == [0, 1]


def test_empty_text_is_never_a_duplicate() -> None:
    t = table([conversation("Q1"), conversation("Q2"), ("Q3", "")])
    assert kept_indexes(ExactDedup(on="response"), t) == [0, 1, 2]


def test_survivor_does_not_depend_on_how_rows_are_split_into_batches() -> None:
    t = table([("x", "1"), ("y", "2"), ("X", "1"), ("x", "1")])
    stage = ExactDedup()
    partials = [stage.summarize(t.slice(i, 1)) for i in range(t.num_rows)]
    state = stage.combine(list(reversed(partials)))  # order of partials must not matter
    kept = [stage.apply(t.slice(i, 1), state).kept for i in range(t.num_rows)]
    assert [k.num_rows for k in kept] == [1, 1, 0, 0]


@pytest.mark.parametrize("keep", ["first", "longest_response", "most_turns"])
def test_no_duplicates_no_removals(keep: str) -> None:
    t = table([("a", "1"), ("b", "2")])
    assert ExactDedup(keep=keep).run(t).rejected.num_rows == 0
