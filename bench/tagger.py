"""How well the inferred task-type tagger agrees with human labels, and how fast it runs.

Run with plain ``python bench/tagger.py`` (from the repo root, with winnow installed). The
labels are hidden from the tagger (``use_labels: false``) and mapped onto the taxonomy by the
stage's own label table; each labeled file prints a confusion matrix (rows: gold, columns:
predicted), per-class precision/recall/F1, accuracy and macro-F1 (over the gold classes).

- Dolly (first 421 rows, 8 categories; general_qa → open_qa): the main benchmark, 7 classes.
- BELLE eval set (1000 rows, Chinese, 10 classes). BELLE files translation under ``rewrite``,
  so a second line scores it with translation counted as rewriting.
- MT-bench (80 questions, 8 categories): first turn only (every question has two turns, which
  the stage would tag as conversation).
- Super-NaturalInstructions (6 task files): gold per file from its Categories.
- Self-Instruct seeds: ``is_classification`` against "tagged classification".

The baseline printed beside the macro-F1 is a majority-class tagger measured in the same run,
and the design doc's anchors (a 35-line keyword tagger ≈ 0.64 on Dolly; TF-IDF + logistic
regression ≈ 0.65).
"""

from __future__ import annotations

import collections
import json
import sys
import time
from pathlib import Path

import pyarrow as pa

from winnow import schema
from winnow.formats import open_input
from winnow.formats.source import InputSpec
from winnow.stages.tasks import TaskTypeTagger

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
#: Each NI file's Categories mapped by the stage's label table (Answer Generation names no
#: task, so task085 is Arithmetic → math). A prediction that matches any of a file's
#: categories counts as right (task073 is both question answering and commonsense reasoning).
NI_GOLD = {
    "task363_sst2_polarity_classification.json": ("classification",),
    "task288_gigaword_summarization.json": ("summarization",),
    "task117_spl_translation_en_de.json": ("translation",),
    "task107_splash_question_to_sql.json": ("code",),
    "task085_unnatural_addsub_arithmetic.json": ("math",),
    "task073_commonsenseqa_answer_generation.json": ("open_qa", "reasoning"),
}


def load(path: Path) -> pa.Table:
    t = open_input(InputSpec(path=str(path))).to_table()
    return t.append_column(schema.ORDER, pa.array(range(t.num_rows), pa.int64()))


def first_turn(t: pa.Table) -> pa.Table:
    msgs = [m[:1] for m in t.column("messages").to_pylist()]
    return t.set_column(t.column_names.index("messages"), "messages", pa.array(msgs, t.schema.field("messages").type))


def scores(gold: list[str], pred: list[str]) -> tuple[dict[str, tuple[float, float, float, int]], float, float]:
    classes = sorted(set(gold))
    per = {}
    for c in classes:
        tp = sum(g == c and p == c for g, p in zip(gold, pred))
        fp = sum(g != c and p == c for g, p in zip(gold, pred))
        fn = sum(g == c and p != c for g, p in zip(gold, pred))
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per[c] = (prec, rec, f1, tp + fn)
    acc = sum(g == p for g, p in zip(gold, pred)) / len(gold)
    macro = sum(v[2] for v in per.values()) / len(per)
    return per, acc, macro


def report(title: str, gold: list[str], pred: list[str]) -> float:
    per, acc, macro = scores(gold, pred)
    majority = collections.Counter(gold).most_common(1)[0][0]
    _, base_acc, base_macro = scores(gold, [majority] * len(gold))
    print(f"\n## {title}: {len(gold)} rows")
    cols = sorted(set(gold) | set(pred))
    short = {c: c[:6] for c in cols}
    print("gold \\ pred".ljust(24) + "".join(short[c].rjust(7) for c in cols))
    conf = collections.Counter(zip(gold, pred))
    for g in sorted(set(gold)):
        print(g.ljust(24) + "".join(str(conf[(g, c)] or ".").rjust(7) for c in cols))
    print(f"{'class':24}{'prec':>7}{'rec':>7}{'F1':>7}{'n':>6}")
    for c, (p, r, f, n) in per.items():
        print(f"{c:24}{p:7.2f}{r:7.2f}{f:7.2f}{n:6d}")
    print(
        f"accuracy {acc:.3f}  macro-F1 {macro:.3f}   (majority class '{majority}': accuracy {base_acc:.3f}, "
        f"macro-F1 {base_macro:.3f}; ratio {macro / base_macro if base_macro else float('inf'):.1f}x)"
    )
    return macro


def predict(t: pa.Table, **params: object) -> list[str]:
    out = TaskTypeTagger(use_labels=False, **params).process(t).kept  # type: ignore[arg-type]
    return out.column("task_type").to_pylist()


def main() -> int:
    if not DATA.is_dir():
        print(f"no data at {DATA}", file=sys.stderr)
        return 1
    tagger = TaskTypeTagger()
    gold_of = lambda t: tagger.map_labels(t.column("task_type").combine_chunks()).to_pylist()  # noqa: E731

    dolly = load(DATA / "dolly" / "dolly_15k_head.jsonl")
    macro = report("Dolly (use_labels=false)", gold_of(dolly), predict(dolly))
    print("design-doc anchors on Dolly-style data: keyword tagger ≈ 0.64, TF-IDF+LR ≈ 0.65 macro-F1")
    report("Dolly, instruction rules only (use_response=false)", gold_of(dolly), predict(dolly, use_response=False))

    belle = load(DATA / "belle" / "eval_set.json")
    gold, pred = gold_of(belle), predict(belle)
    report("BELLE eval set", gold, pred)
    report(
        "BELLE eval set, translation counted as rewriting (BELLE files it under rewrite)",
        gold,
        ["rewriting" if p == "translation" else p for p in pred],
    )

    mt = load(DATA / "fastchat_mtbench" / "question.jsonl")
    report("MT-bench (first turn)", gold_of(mt), predict(first_turn(mt)))
    print("MT-bench as stored (2 user turns):", dict(collections.Counter(predict(mt))))

    ni_gold: list[str] = []
    ni_pred: list[str] = []
    for name, classes in NI_GOLD.items():
        t = load(DATA / "natural_instructions" / name)
        for p in predict(t):
            ni_gold.append(p if p in classes else classes[0])
            ni_pred.append(p)
    report("Super-NaturalInstructions (6 tasks)", ni_gold, ni_pred)

    seeds = load(DATA / "self_instruct" / "seed_tasks.jsonl")
    is_cls = [json.loads(m)["is_classification"] for m in seeds.column("meta").to_pylist()]
    pred = predict(seeds)
    tp = sum(c and p == "classification" for c, p in zip(is_cls, pred))
    print(
        f"\n## Self-Instruct seeds: is_classification {sum(is_cls)}/{len(is_cls)}; tagged classification "
        f"{sum(p == 'classification' for p in pred)}, of which {tp} are; recall {tp / sum(is_cls):.2f}, "
        f"precision {tp / max(1, sum(p == 'classification' for p in pred)):.2f}"
    )
    print("   all seed tags:", dict(collections.Counter(pred).most_common()))

    # speed: every Alpaca/BELLE/Dolly row, single process
    rows = pa.concat_tables(
        [
            schema.canonical(load(DATA / p))
            for p in ("llamafactory/alpaca_en_demo.json", "llamafactory/alpaca_zh_demo.json", "belle/eval_set.json")
        ]
        + [schema.canonical(dolly)]
    )
    stage = TaskTypeTagger(use_labels=False)
    stage.setup()
    start = time.perf_counter()
    for _ in range(3):
        stage.process(rows)
    secs = (time.perf_counter() - start) / 3
    print(f"\nspeed: {rows.num_rows} rows in {secs:.3f} s = {rows.num_rows / secs:,.0f} rows/s (one process)")
    return 0 if macro > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
