from __future__ import annotations

import pyarrow as pa
import pytest

from tests import engine_util
from winnow.engines.local import plan
from winnow.errors import InvariantError
from winnow.stages import ExactDedup, Filter, LengthFilter


def test_plan_fuses_row_stages_around_global_stages() -> None:
    a, b, g, c = LengthFilter(), LengthFilter(min_response=2), ExactDedup(), LengthFilter(max_response=9)
    passes = plan([a, b, g, c])
    assert len(passes) == 2
    assert [s for _, s in passes[0].rows] == [a, b] and passes[0].summarize == (3, g)
    assert passes[1].apply == (3, g) and [s for _, s in passes[1].rows] == [c]
    assert plan([]) == []


def test_funnel_counts_every_stage(sample_rows, tmp_path) -> None:
    kept, rejected, out = engine_util.run(sample_rows, [ExactDedup(), LengthFilter()], tmp_path, batch_size=3)
    assert [(s.name, s.rows_in, s.rows_out) for s in out.stats] == [
        ("ingest", 10, 10),
        ("exact_dedup", 10, 8),
        ("length", 8, 6),
    ]
    assert kept.num_rows == 6 and rejected.num_rows == 4
    assert out.stats[1].reasons == {"exact duplicate": 2}
    assert set(rejected.column("stage").to_pylist()) == {"exact_dedup", "length"}


def test_two_global_stages_in_a_row(sample_rows, tmp_path) -> None:
    stages = [ExactDedup(on="instruction"), ExactDedup(on="response")]
    kept, _, out = engine_util.run(sample_rows, stages, tmp_path, batch_size=2, workers=2)
    assert out.stats[1].rows_out == out.stats[2].rows_in
    assert kept.num_rows == out.stats[2].rows_out


def test_a_stage_that_loses_rows_is_caught(sample_rows, tmp_path) -> None:
    class Leaky(Filter):
        name = "leaky"

        def process(self, batch: pa.Table):  # a buggy stage: drops rows without rejecting them
            out = super().process(batch)
            out.kept = out.kept.slice(1)
            return out

        def reasons(self, batch: pa.Table) -> pa.Array:
            return pa.nulls(batch.num_rows, pa.string())

    with pytest.raises(InvariantError, match="stage 'leaky' removed 1 rows but rejected 0"):
        engine_util.run(sample_rows, [Leaky()], tmp_path)


def test_conservation_check_raises_on_a_gap() -> None:
    from winnow.engines.local import StageStats, _check_conservation

    with pytest.raises(InvariantError, match="rows lost"):
        _check_conservation([StageStats("ingest", 5, 5), StageStats("x", 4, 4)])
    _check_conservation([StageStats("ingest", 5, 5), StageStats("x", 5, 4, rejected=1)])
