"""Language ID on the real data in ../shared/data: speed, agreement with langdetect, accuracy.

Run with ``python bench/language.py``. Texts are the instruction (user turns) and the response
(assistant turns) of every row of every file. The baseline is plain ``langdetect.detect``
(seeded with 0) on each raw text, measured in the same run; every speed is also given as a
ratio against it.

Accuracy is against the language PROVENANCE.md documents for the file (and role: task117's
responses are German), over the texts the stage judges (at least ``min_chars`` letters after
cleaning). Files documented as zh + en (identity, v1_sft) are scored against the script: zh
where Han characters are at least a third of the letters, else en. Files with no single
documented language (alpaca-cot, the dedup demo, arithmetic, SQL) are left out of accuracy.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from winnow import schema, text  # noqa: E402
from winnow.formats import open_input  # noqa: E402
from winnow.formats.source import InputSpec  # noqa: E402
from winnow.stages.language import (  # noqa: E402
    BACKENDS,
    LanguageFilter,
    _joined,
    letters,
    prose,
    script_checked,
)

DATA = ROOT.parent / "shared" / "data"
MIN_CHARS = LanguageFilter().min_chars
#: Documented language per file and role (None: no single language, left out of accuracy).
REFERENCE: dict[str, tuple[str | None, str | None]] = {
    "llamafactory/alpaca_en_demo.json": ("en", "en"),
    "llamafactory/glaive_toolcall_en_demo.json": ("en", "en"),
    "dolly/dolly_15k_head.jsonl": ("en", "en"),
    "fastchat/dummy_conversation.json": ("en", "en"),
    "fastchat_mtbench/question.jsonl": ("en", None),
    "self_instruct/seed_tasks.jsonl": ("en", "en"),
    "self_instruct/user_oriented_instructions.jsonl": ("en", "en"),
    "datajuicer_diversity/demo-dataset.jsonl": ("en", "en"),
    "natural_instructions/task363_sst2_polarity_classification.json": ("en", None),
    "natural_instructions/task288_gigaword_summarization.json": ("en", "en"),
    "natural_instructions/task073_commonsenseqa_answer_generation.json": ("en", None),
    "natural_instructions/task117_spl_translation_en_de.json": ("en", "de"),
    "natural_instructions/task107_splash_question_to_sql.json": ("en", None),
    "llamafactory/alpaca_zh_demo.json": ("zh", "zh"),
    "llamafactory/glaive_toolcall_zh_demo.json": ("zh", "zh"),
    "belle/eval_set.json": ("zh", "zh"),
    "belle/zh_seed_tasks.json": ("zh", "zh"),
    "datajuicer/demo-dataset-chatml.jsonl": ("zh", "zh"),
    "llamafactory/identity.json": ("script", "script"),
    "llamafactory/v1_sft_demo.jsonl": ("script", "script"),
}
LINGUA_LANGUAGES = ["en", "zh", "de", "fr", "es", "ja", "ko", "ru"]


def load(path: Path) -> pa.Table:
    t = open_input(InputSpec(path=str(path))).to_table()
    return t.append_column(schema.ORDER, pa.array(range(t.num_rows), pa.int64()))


def by_script(values: list[str]) -> list[str]:
    han = letters(pa.array(values)).to_pylist()  # weighted letters
    plain = pc.utf8_length(pc.replace_substring_regex(pa.array(values), r"[^\pL]+", "")).to_pylist()
    cjk = [(h - p) / 2 for h, p in zip(han, plain)]
    return ["zh" if c >= p / 3 and c > 0 else "en" for c, p in zip(cjk, plain)]


def timed(fn, *args):  # type: ignore[no-untyped-def]
    """Result and CPU seconds of the process (all its threads): steady on a shared machine."""
    started = time.process_time()
    out = fn(*args)
    return out, time.process_time() - started


def main() -> None:
    if not DATA.is_dir():
        sys.exit(f"{DATA} is missing: the real data lives in ../shared/data")
    import langdetect

    langdetect.DetectorFactory.seed = 0

    def plain_langdetect(texts: list[str]) -> list[str | None]:
        out: list[str | None] = []
        for t in texts:
            try:
                out.append(langdetect.detect(t).split("-")[0])
            except langdetect.LangDetectException:
                out.append(None)
        return out

    files = sorted(p for p in DATA.rglob("*.json*") if p.is_file())
    tables = {str(p.relative_to(DATA)): load(p) for p in files}
    everything = pa.concat_tables([schema.canonical(t) for t in tables.values()])
    everything = everything.append_column(schema.ORDER, pa.array(range(everything.num_rows), pa.int64()))

    # Per file and role: raw text, cleaned text, judged mask, reference.
    items = []  # (file, role, raw, clean, judged, reference)
    for name, t in tables.items():
        raw_msgs = t.column("messages")
        clean_msgs = text.map_contents(raw_msgs, lambda _r, c: prose(c))
        for i, role in enumerate(("instruction", "response")):
            raw = text.role_text(raw_msgs, text.TARGETS[role]).to_pylist()
            clean_arr = _joined(clean_msgs, role)
            clean = clean_arr.to_pylist()
            judged = pc.greater_equal(letters(clean_arr), MIN_CHARS).to_pylist()
            ref = REFERENCE.get(name, (None, None))[i]
            refs = by_script(clean) if ref == "script" else [ref] * len(clean)
            items.append((name, role, raw, clean, judged, refs))
    raw_all = [x for it in items for x in it[2]]
    clean_all = [x for it in items for x in it[3]]
    n_texts = len(raw_all)

    # -- speed ---------------------------------------------------------------------------------
    rows = []
    base_answers, base_s = timed(plain_langdetect, raw_all)
    rows.append(("langdetect.detect, each raw text (baseline)", n_texts / base_s))
    ld_clean, s = timed(plain_langdetect, clean_all)
    rows.append(("langdetect.detect, each cleaned text", n_texts / s))
    stage_ld = LanguageFilter()
    stage_ld.setup()
    out_ld, s = timed(stage_ld.process, everything)
    rows.append(("stage, backend langdetect (memo, skip short, numpy update)", n_texts / s))
    py3 = BACKENDS["py3langid"](None)
    py3_clean, s = timed(py3, clean_all)
    rows.append(("py3langid, each cleaned text", n_texts / s))
    stage_py = LanguageFilter(backend="py3langid")
    stage_py.setup()
    _, s = timed(stage_py.process, everything)
    rows.append(("stage, backend py3langid", n_texts / s))
    lingua = BACKENDS["lingua"](LINGUA_LANGUAGES)
    lingua_clean, s = timed(lingua, clean_all)
    rows.append((f"lingua ({len(LINGUA_LANGUAGES)} languages), each cleaned text", n_texts / s))
    stage_li = LanguageFilter(backend="lingua", languages=LINGUA_LANGUAGES)
    stage_li.setup()
    _, s = timed(stage_li.process, everything)
    rows.append((f"stage, backend lingua ({len(LINGUA_LANGUAGES)} languages)", n_texts / s))

    print(f"\n{n_texts} texts ({everything.num_rows} rows x instruction/response) from {len(files)} files\n")
    print(f"{'speed (texts per CPU second, one process)':58} {'texts/s':>9} {'vs baseline':>11}")
    for label, rate in rows:
        print(f"{label:58} {rate:9.0f} {rate / rows[0][1]:10.1f}x")

    # -- agreement -----------------------------------------------------------------------------
    judged_all = [j for it in items for j in it[4]]

    def agree(a: list, b: list, mask: list[bool]) -> str:
        pairs = [(x, y) for x, y, m in zip(a, b, mask) if m]
        same = sum(x == y for x, y in pairs)
        return f"{same}/{len(pairs)} ({same / max(len(pairs), 1):.1%})"

    clean_arr_all = pa.array(clean_all, pa.string())

    def fixed(answers: list) -> list:
        return script_checked(clean_arr_all, pa.array(answers, pa.string())).to_pylist()

    ld_stage = fixed(ld_clean)
    # The stage's own answers, in the order of ``items`` (instruction then response per file).
    stage_answers: list = []
    start = 0
    for t in tables.values():
        part = out_ld.kept.filter(
            pc.and_(
                pc.greater_equal(out_ld.kept.column(schema.ORDER), start),
                pc.less(out_ld.kept.column(schema.ORDER), start + t.num_rows),
            )
        )
        stage_answers += part.column("lang_instruction").to_pylist() + part.column("lang_response").to_pylist()
        start += t.num_rows
    print(f"\nagreement on judged texts (>= {MIN_CHARS} letters after cleaning), same cleaned text")
    print(f"  stage (langdetect) vs langdetect.detect + script check: {agree(stage_answers, ld_stage, judged_all)}")
    print(f"  py3langid vs langdetect:            {agree(py3_clean, ld_clean, judged_all)}")
    print(f"  lingua ({len(LINGUA_LANGUAGES)}) vs langdetect:            {agree(lingua_clean, ld_clean, judged_all)}")
    print(f"  py3langid vs langdetect, script-checked both: {agree(fixed(py3_clean), ld_stage, judged_all)}")
    print(f"  lingua vs langdetect, script-checked both:    {agree(fixed(lingua_clean), ld_stage, judged_all)}")
    print(f"  langdetect raw vs cleaned text:     {agree(base_answers, ld_clean, judged_all)}")

    # prefix: does detecting on the first N characters give the same answer?
    long_texts = [t for t, j in zip(clean_all, judged_all) if j and len(t) > 300]
    detect_ld = BACKENDS["langdetect"](None)
    full = detect_ld(long_texts)
    for cut in (300, 1000):
        sub = [t for t in long_texts if len(t) > cut]
        ans_full = [a for a, t in zip(full, long_texts) if len(t) > cut]
        ans_cut, s_cut = timed(detect_ld, [t[:cut] for t in sub])
        _, s_full = timed(detect_ld, sub)
        print(
            f"  first {cut} chars vs whole text (texts longer than {cut}): "
            f"{agree(ans_cut, ans_full, [True] * len(sub))}, "
            f"{s_full / max(s_cut, 1e-9):.1f}x faster on those"
        )

    # -- accuracy ------------------------------------------------------------------------------
    variants = {
        "ld raw": base_answers,
        "ld clean": ld_clean,
        "ld stage": ld_stage,
        "py3langid": fixed(py3_clean),
        "lingua": fixed(lingua_clean),
    }
    print(f"\naccuracy against the documented language, judged texts (>= {MIN_CHARS} letters)")
    print("  ld raw = langdetect on raw text; ld clean = after removing code/URLs/placeholders;")
    print("  ld stage = cleaned + script check (what the stage answers); py3langid/lingua as in the stage")
    print(f"{'file':52} {'role':5} {'n':>5} " + " ".join(f"{k:>10}" for k in variants))
    offset = 0
    totals: dict[str, Counter] = {k: Counter() for k in variants}
    for name, role, raw, _clean, judged, refs in items:
        n = len(raw)
        sl = slice(offset, offset + n)
        offset += n
        if refs[0] is None and not any(refs):
            continue
        idx = [i for i in range(n) if judged[i] and refs[i]]
        if not idx:
            continue
        cells = []
        for k, answers in variants.items():
            got = answers[sl]
            ok = sum(got[i] == refs[i] for i in idx)
            totals[k]["ok"] += ok
            totals[k]["n"] += len(idx)
            cells.append(f"{ok / len(idx):10.1%}")
        print(f"{name[:52]:52} {role[:5]:5} {len(idx):5} " + " ".join(cells))
    print(
        f"{'all':52} {'':5} {totals['ld raw']['n']:5} "
        + " ".join(f"{t['ok'] / max(t['n'], 1):10.1%}" for t in totals.values())
    )


if __name__ == "__main__":
    main()
