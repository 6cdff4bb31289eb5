"""Every real file in ../shared/data ingests cleanly, with the counts PROVENANCE.md gives."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest

from winnow import schema
from winnow.formats import InputSpec, open_input

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"real data not found at {DATA}")

# path: (rows, record format, task-type labels or None)
EXPECTED = {
    "llamafactory/alpaca_en_demo.json": (999, "alpaca", None),
    "llamafactory/alpaca_zh_demo.json": (1000, "alpaca", None),
    "llamafactory/identity.json": (91, "alpaca", None),
    "llamafactory/glaive_toolcall_en_demo.json": (300, "sharegpt", None),
    "llamafactory/glaive_toolcall_zh_demo.json": (300, "sharegpt", None),
    "llamafactory/v1_sft_demo.jsonl": (500, "openai", None),
    "fastchat/dummy_conversation.json": (500, "sharegpt", None),
    "fastchat_mtbench/question.jsonl": (80, "mtbench", 8),
    "self_instruct/seed_tasks.jsonl": (175, "alpaca", None),
    "self_instruct/user_oriented_instructions.jsonl": (252, "alpaca", None),
    "datajuicer/alpaca-cot.jsonl": (11, "alpaca", None),
    "datajuicer/demo-dataset-chatml.jsonl": (4, "openai", None),
    "datajuicer/demo-dataset-deduplication.jsonl": (14, "text", None),
    "datajuicer_diversity/demo-dataset.jsonl": (29, "alpaca", None),
    "belle/eval_set.json": (1000, "prompt_completion", 10),
    "belle/zh_seed_tasks.json": (175, "alpaca", None),
    "natural_instructions/task363_sst2_polarity_classification.json": (20, "natural_instructions", 1),
    "natural_instructions/task288_gigaword_summarization.json": (20, "natural_instructions", 1),
    "natural_instructions/task117_spl_translation_en_de.json": (20, "natural_instructions", 1),
    "natural_instructions/task107_splash_question_to_sql.json": (15, "natural_instructions", 1),
    "natural_instructions/task085_unnatural_addsub_arithmetic.json": (15, "natural_instructions", 1),
    "natural_instructions/task073_commonsenseqa_answer_generation.json": (15, "natural_instructions", 1),
    "dolly/dolly_15k_head.jsonl": (421, "dolly", 8),
}

_tables: dict[str, tuple[pa.Table, dict]] = {}


def load(rel: str) -> tuple[pa.Table, dict]:
    if rel not in _tables:
        src = open_input(InputSpec(path=str(DATA / rel)))  # on_error="raise": no file may need skip
        _tables[rel] = (src.to_table(), src.describe())
    return _tables[rel]


def roles(table: pa.Table) -> list[list[str]]:
    return [[m["role"] for m in ms] for ms in table.column("messages").to_pylist()]


def test_every_data_file_is_covered() -> None:
    found = {p.relative_to(DATA).as_posix() for p in DATA.rglob("*") if p.is_file() and p.name != "PROVENANCE.md"}
    assert found == set(EXPECTED)


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_counts_format_and_labels(rel: str) -> None:
    n, fmt, labels = EXPECTED[rel]
    table, info = load(rel)
    assert table.schema == schema.SCHEMA
    assert table.num_rows == n
    f = info["files"][0]
    assert (f["format"], f["rows_read"], f["rows_rejected"]) == (fmt, n, 0)
    assert table.column("source_index").to_pylist() == list(range(n))
    assert len(set(table.column("id").to_pylist())) == n
    task_types = set(table.column("task_type").to_pylist())
    if labels is None:
        assert task_types == {None}
    else:
        assert None not in task_types and len(task_types) == labels
    assert all(len(ms) > 0 for ms in roles(table))


@pytest.mark.parametrize(
    "rel",
    [
        "llamafactory/alpaca_en_demo.json",
        "llamafactory/alpaca_zh_demo.json",
        "llamafactory/identity.json",
        "llamafactory/v1_sft_demo.jsonl",
        "self_instruct/seed_tasks.jsonl",
        "belle/eval_set.json",
        "dolly/dolly_15k_head.jsonl",
    ],
)
def test_single_turn_files(rel: str) -> None:
    assert all(r == ["user", "assistant"] for r in roles(load(rel)[0]))


@pytest.mark.parametrize(
    "rel", ["llamafactory/glaive_toolcall_en_demo.json", "llamafactory/glaive_toolcall_zh_demo.json"]
)
def test_glaive_tool_turns(rel: str) -> None:
    table, _ = load(rel)
    all_roles = Counter(r for rs in roles(table) for r in rs)
    assert set(all_roles) == {"user", "assistant", "tool"}
    assert all(rs[0] == "user" and rs[-1] == "assistant" for rs in roles(table))
    assert "tools" in table.column("meta")[0].as_py()


def test_fastchat_alternates() -> None:
    for rs in roles(load("fastchat/dummy_conversation.json")[0]):
        assert 2 <= len(rs) <= 6
        assert rs == ["user", "assistant"] * (len(rs) // 2)


def test_mtbench_two_user_turns() -> None:
    assert all(rs == ["user", "user"] for rs in roles(load("fastchat_mtbench/question.jsonl")[0]))


def test_chatml_has_system() -> None:
    assert all(rs[0] == "system" for rs in roles(load("datajuicer/demo-dataset-chatml.jsonl")[0]))


def test_labels() -> None:
    belle = Counter(load("belle/eval_set.json")[0].column("task_type").to_pylist())
    assert belle["closed_qa"] == 52 and belle["open_qa"] == 285
    dolly = Counter(load("dolly/dolly_15k_head.jsonl")[0].column("task_type").to_pylist())
    assert dolly["open_qa"] == 109 and dolly["creative_writing"] == 17


def test_whole_folder_at_once() -> None:
    src = open_input(InputSpec(path=str(DATA)))
    total = sum(b.rows.num_rows for b in src.batches(4096))
    assert total == sum(n for n, _, _ in EXPECTED.values())
    assert len(src.describe()["files"]) == len(EXPECTED)
