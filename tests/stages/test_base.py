from __future__ import annotations

import collections

import pyarrow as pa
import pytest

from tests.conftest import table
from winnow import schema
from winnow.errors import ConfigError
from winnow.stages import ExactDedup, Filter, LengthFilter, registry, stage_class
from winnow.stages.base import Verdict, from_config, split


def test_split_routes_rejected_rows_with_stage_and_reason() -> None:
    t = table([("a", "1"), ("b", "2"), ("c", "3")])
    out = split("demo", t, pa.array([None, "bad b", None]))
    assert out.kept.column("id").to_pylist() == [t["id"][0].as_py(), t["id"][2].as_py()]
    assert out.rejected.schema == schema.REJECTED_SCHEMA
    assert out.rejected.to_pylist()[0]["stage"] == "demo"
    assert out.rejected.to_pylist()[0]["reason"] == "bad b"
    assert out.counts == {"bad b": 1}


def test_split_counts_kinds_not_row_specific_reasons() -> None:
    t = table([("a", "1"), ("b", "2"), ("c", "3")])
    out = split("demo", t, Verdict(pa.array(["dup of x", "dup of y", None]), pa.array(["dup", "dup", None])))
    assert out.counts == {"dup": 2}
    assert out.rejected.column("reason").to_pylist() == ["dup of x", "dup of y"]


def test_split_rejects_wrong_number_of_verdicts() -> None:
    with pytest.raises(ValueError, match="2 verdicts for 3 rows"):
        split("demo", table([("a", "1"), ("b", "2"), ("c", "3")]), pa.array([None, None], pa.string()))


def test_params_come_from_the_constructor_and_docstring() -> None:
    params = {p.name: p for p in LengthFilter.params()}
    assert list(params) == [
        "min_instruction",
        "max_instruction",
        "min_response",
        "max_response",
        "unit",
        "tokenizer",
        "per_turn",
        "min_turns",
        "max_turns",
    ]
    assert params["min_response"].default == 1
    assert params["unit"].annotation == "'chars' | 'words' | 'tokens'"
    assert "fewest units in the response" in params["min_response"].doc
    assert ">>>" not in params["unit"].doc


def test_config_round_trip() -> None:
    stage = LengthFilter(min_response=3, unit="words")
    assert stage.to_config() == {
        "length": {
            "min_instruction": None,
            "max_instruction": None,
            "min_response": 3,
            "max_response": None,
            "unit": "words",
            "tokenizer": None,
            "per_turn": None,
            "min_turns": None,
            "max_turns": None,
        }
    }
    assert from_config(stage.to_config()) == stage
    assert from_config(stage.to_config()) != LengthFilter()


def test_unknown_parameter_names_valid_ones_and_a_hint() -> None:
    with pytest.raises(ConfigError, match=r"unknown parameter 'min_respons'.*did you mean 'min_response'.*valid"):
        LengthFilter.from_config({"min_respons": 2})


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"min_response": "2"}, "must be int | None"),
        ({"min_response": True}, "must be int | None"),
        ({"unit": "lines"}, "'chars' | 'words' | 'tokens'"),
    ],
)
def test_wrong_types_are_config_errors(params: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as e:
        LengthFilter.from_config(params)
    assert e.value.key == next(iter(params))


def test_unknown_stage_lists_choices() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown stage 'exact_dedupe' \(did you mean 'exact_dedup'\?\); valid stages"
    ):
        stage_class("exact_dedupe")


def test_registry_has_the_built_ins() -> None:
    assert {"exact_dedup", "length"} <= set(registry())
    assert registry()["exact_dedup"] is ExactDedup


def test_a_filter_subclass_needs_only_reasons() -> None:
    class NoX(Filter):
        name = "no_x"

        def reasons(self, batch: pa.Table) -> pa.Array:
            return pa.array(["has x" if "x" in m[0]["content"] else None for m in batch["messages"].to_pylist()])

    out = NoX().process(table([("x marks", "1"), ("fine", "2")]))
    assert out.kept.num_rows == 1
    assert out.rejected["reason"].to_pylist() == ["has x"]


def test_events_count_changes_to_kept_rows(tmp_path) -> None:
    from tests import engine_util

    class Shout(Filter):
        """Upper-cases nothing, but reports an event per row (a stand-in for redaction).

        >>> Shout()
        Shout()
        """

        name = "shout"

        def reasons(self, batch: pa.Table) -> Verdict:
            events = collections.Counter({"shouted": batch.num_rows})
            return Verdict(pa.nulls(batch.num_rows, pa.string()), events=events)

    _, _, out = engine_util.run(table([("a", "1"), ("b", "2"), ("c", "3")]), [Shout()], tmp_path, batch_size=2)
    assert out.stats[1].events == {"shouted": 3}
    assert out.stats[1].to_dict()["events"] == {"shouted": 3}
