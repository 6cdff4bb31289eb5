"""One contract for every registered stage (built-in or plugin), as scikit-learn's check_estimator."""

from __future__ import annotations

import pyarrow as pa
import pytest

from tests import engine_util
from winnow import schema
from winnow.stages import GlobalStage, registry
from winnow.stages.base import from_config

STAGES = sorted(registry().items())


@pytest.fixture(params=[name for name, _ in STAGES])
def stage(request):
    return registry()[request.param]()


def test_config_round_trips(stage) -> None:
    again = from_config(stage.to_config())
    assert again == stage
    assert again.to_config() == stage.to_config()


def test_every_parameter_is_documented(stage) -> None:
    for p in stage.params():
        assert p.doc, f"{stage.name}.{p.name} has no line in the docstring's Args section"
    assert stage.__doc__ and ">>>" in stage.__doc__, f"{stage.name} needs a short >>> example"


def test_empty_batch_gives_empty_batch(stage, sample_rows) -> None:
    empty = sample_rows.slice(0, 0)
    out = stage.run(empty) if isinstance(stage, GlobalStage) else stage.process(empty)
    assert out.kept.num_rows == 0
    assert schema.canonical(out.kept).schema == schema.SCHEMA
    assert out.rejected.schema == schema.REJECTED_SCHEMA


def test_rejected_rows_carry_stage_and_reason(stage, sample_rows) -> None:
    out = stage.run(sample_rows) if isinstance(stage, GlobalStage) else stage.process(sample_rows)
    assert out.kept.num_rows + out.rejected.num_rows == sample_rows.num_rows
    assert set(out.rejected.column("stage").to_pylist()) <= {stage.name}
    assert all(r for r in out.rejected.column("reason").to_pylist())
    assert sum(out.counts.values()) == out.rejected.num_rows


def test_same_output_for_any_batch_size_and_worker_count(stage, sample_rows, tmp_path) -> None:
    results = []
    for i, (size, workers) in enumerate([(1000, 1), (1, 1), (3, 2)]):
        kept, rejected, _ = engine_util.run(sample_rows, [stage], tmp_path / str(i), size, workers)
        results.append((kept, rejected))
    for kept, rejected in results[1:]:
        assert kept.equals(results[0][0])
        assert rejected.equals(results[0][1])


def test_ids_and_canonical_columns_are_never_changed(stage, sample_rows) -> None:
    out = stage.run(sample_rows) if isinstance(stage, GlobalStage) else stage.process(sample_rows)
    by_id = {r["id"]: r for r in schema.canonical(sample_rows).to_pylist()}
    for row in schema.canonical(out.kept).to_pylist():
        assert row["id"] in by_id
        assert row["source"] == by_id[row["id"]]["source"]
        assert row["source_index"] == by_id[row["id"]]["source_index"]
    assert isinstance(out.kept, pa.Table)
