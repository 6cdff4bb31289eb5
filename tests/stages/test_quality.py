from __future__ import annotations

import time

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tests import engine_util
from tests.conftest import ROOT, SHARED_DATA, conversation, needs_shared, table
from winnow import schema
from winnow.errors import ConfigError, MissingDependencyError
from winnow.formats import InputSpec, open_input
from winnow.stages import QualityFilter
from winnow.stages.base import from_config

LAMB = (
    "Lamb Air Ltd. was a Canadian airline that began operations in 1934 in The Pas, Manitoba, and "
    "went out of business in 1981. Tom Lamb was the son of a fur trader who had emigrated from "
    "England, and he grew up in northern Manitoba working for his father's store."
)
ZH = "无人驾驶汽车最先进的已经测试行驶近五十万公里，其中最后八万公里是在没有任何人为安全干预措施"
PROSE = (
    "Vaccines go through several stages of testing. First, preclinical studies in the lab check "
    "whether the vaccine produces an immune response, and then small trials check safety."
)


def removed(stage: QualityFilter, rows: list) -> dict[int, str]:
    out = stage.process(table(rows))
    return dict(zip(out.rejected.column("source_index").to_pylist(), out.rejected.column("reason").to_pylist()))


def kinds(stage: QualityFilter, rows: list) -> dict[int, str]:
    out = stage.process(table(rows))
    return {i: k for i, k in zip(out.rejected.column("source_index").to_pylist(), out.counts.elements())}


def test_short_correct_answers_are_kept() -> None:
    rows = [
        ("What year did World War II end?", "1945."),
        ("Highest mountain?", "Mount Everest."),
        ("Chemical symbol for gold?", "Au."),
        ("Chemical symbol for sodium?", "Na"),
        ("Past tense of run?", "ran"),
        ("Classify the sentiment (positive, negative, neutral): I love it.", "positive"),
        ("12 - 24 = ?", "-12"),
        ("Which of these numbers are prime: 4, 6, 8?", "None"),
        ("你好", "你好！有什么可以帮你的吗？"),
    ]
    assert removed(QualityFilter(), rows) == {}


def test_empty_and_placeholder_responses() -> None:
    rows = [
        ("Write a story.", ""),
        ("Write a story.", "   \n"),
        ("Summarize the text.", "N/A"),
        ("Describe the headphones.", "<noinput>"),
        ("Describe the headphones.", "TODO."),
        ("Write an intro.", "Lorem ipsum dolor sit amet, consectetur adipiscing elit."),
        ("Give me some lorem ipsum filler text.", "Lorem ipsum dolor sit amet."),  # asked for
        ("Show LaTeX.", "```\n\\begin{document}\nLorem ipsum dolor sit amet.\n\\end{document}\n```"),
        ("Who are you?", "I am {{name}}, an AI assistant developed by {{author}}."),
        ("What does N/A mean?", "N/A means not applicable."),
    ]
    assert removed(QualityFilter(), rows) == {
        0: "response is empty",
        1: "response is empty",
        2: "response is a placeholder: 'N/A'",
        3: "response is a placeholder: '<noinput>'",
        4: "response is a placeholder: 'TODO.'",
        5: "response is a placeholder: '…, consectetur adipiscing elit.'",
    }
    assert list(removed(QualityFilter(template_placeholders=True), rows)) == [0, 1, 2, 3, 4, 5, 8]
    assert removed(QualityFilter(empty=False, placeholder=False), rows) == {}


def test_bare_acknowledgement_only_answers_a_yes_no_question() -> None:
    rows = [
        ("Explain how a refrigerator keeps food cold.", "Yes."),
        ("Explain how compound interest works.", "OK."),
        ("Is the Earth round?", "Yes."),
        ("Tell me if the following email is a promotion email.\n\nSubject: your receipt", "no"),
        ("Answer yes or no: water is wet.", "Yes"),
        ("这句话是否正确？", "Yes."),
    ]
    assert removed(QualityFilter(), rows) == {
        0: "response 'Yes.' does not answer a prompt that is not a yes/no question",
        1: "response 'OK.' does not answer a prompt that is not a yes/no question",
    }
    assert removed(QualityFilter(non_answer=False), rows) == {}


def test_instruction_copy_needs_the_whole_instruction_not_a_span() -> None:
    context = "The sky is blue and sunny. The birds are chirping in the trees. The air is fresh."
    rows = [
        ("磷", "磷"),
        ("Rewrite this sentence in the passive voice: The cat chased the mouse.",
         "Rewrite this sentence in the passive voice: The cat chased the mouse."),
        ("Lamb Air?\n\n" + LAMB, LAMB),
        ("Classify as positive or negative: I hate rain.", "negative"),  # a label from the options
        ("Divide these sentences into two paragraphs.\n\n" + context,
         "The sky is blue and sunny. The birds are chirping in the trees.\n\nThe air is fresh."),
        ("Extract the first sentence.\n\n" + context, "The sky is blue and sunny."),
    ]  # fmt: skip
    got = removed(QualityFilter(), rows)
    assert got == {
        0: "response repeats the instruction",
        1: "response repeats the instruction",
        2: "response is copied from the instruction: 96% of it (max 90%)",
    }
    assert list(removed(QualityFilter(max_instruction_copy=None), rows)) == []


def test_repeated_lines_and_looped_phrases() -> None:
    looped = "Read a book. " * 15 + "Read a"
    lines = "\n".join(["Exercise is good for your health."] * 8)
    code = "```python\n" + "print(x)\n" * 10 + "```\nThat prints x ten times, as asked."
    song = "Verse one line here\nChorus we sing along\nVerse two goes on\nChorus we sing along\n"
    rows = [
        ("Things to do on a rainy day?", looped),
        ("Benefits of exercise?", lines),
        ("Print x ten times in Python.", code),
        ("Write a song with a chorus.", song),
    ]
    assert removed(QualityFilter(), rows) == {
        0: "response repeats itself: 86% of characters in duplicate 5-grams (max 50%)",
        1: "response repeats lines: 88% of characters in duplicate lines (max 30%)",
    }
    q = QualityFilter().annotate(table(rows)).column("quality").to_pylist()
    assert q[3]["repeated_lines"] == pytest.approx(len("Chorus we sing along") / 76)
    off = QualityFilter(max_repeated_line_fraction=None, max_top_ngram_fraction=None, max_duplicate_ngram_fraction=None)
    assert 0 not in removed(off, rows) or "repeats" not in removed(off, rows)[0]


def test_short_lists_and_multi_turn_structure_are_not_repetition() -> None:
    labels = "Alligator: Animal\nGrass: Not an Animal\nTree: Not an Animal\nBoat: Not an Animal\nDog: Animal"
    call = '{"name": "get_movie_details", "arguments": {"title": "Inception"}}'
    chat = conversation(
        "Tell me about Inception and The Dark Knight.",
        call,
        "And the other one?",
        call.replace("Inception", "The Dark Knight"),
    )
    top = "The opportunity cost of the shift is the concert, and the opportunity cost of the concert is pay."
    assert removed(QualityFilter(), [("Classify these.", labels), chat, ("Explain opportunity cost.", top)]) == {}
    # Gopher's own web-text thresholds flag the short explanation
    gopher = QualityFilter(min_words=10, min_top_ngram_words=10, max_top_ngram_fraction=[0.2, 0.18, 0.16])
    assert "2-gram" in removed(gopher, [("Explain opportunity cost.", top)])[0]


def test_chinese_is_measured_in_two_character_pieces() -> None:
    essay = "气候变化是全球性的问题，它不仅关系到地球的未来，也直接影响人们的生活。" * 1
    looped = "我们应该努力学习。" * 12
    rows = [("谈谈气候变化。", essay), ("说点什么。", looped)]
    got = removed(QualityFilter(), rows)
    assert list(got) == [1] and got[1].startswith("response repeats")


def test_symbols_are_judged_outside_code_and_for_every_script() -> None:
    soup = "### *** ### --- @@@ !!! ??? ~~~ ### *** ### $$$ %%% ^^^ &&& ### O s l o ### *** ###"
    regex = r"^(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])\.){3}(?:25[0-5]|2[0-4][0-9])$"
    table_md = "| Column 1 | Column 2 |\n|:--------:|:--------:|\n| Row 1,1  | Row 1,2  |"
    art = "\\ | / \\ | / \\ | / \\ | / \\ | / \\ | / \\ | / ~~~ *** ~~~"
    rows = [
        ("Name the capital of Norway.", soup),
        ("Convert to regex: a valid IP address.", regex),
        ("Compose a table with two rows.", table_md),
        ("Draw an ASCII picture of rain.", art),
        ("Write JSON.", '```json\n{"a": [1, 2], "b": {"c": "d"}}\n```'),
        ("Give the subsets.", "{12,2}, {7,3,4}, {8,2,4}"),
        ("用中文解释。", "这是一个很长的中文回答，里面几乎没有标点符号但全是文字所以不是符号"),
    ]
    assert removed(QualityFilter(), rows) == {0: "response is mostly symbols: 89% of non-space characters (max 75%)"}
    assert list(removed(QualityFilter(max_symbol_fraction=0.3), rows)) == [0, 1, 5]
    alpha = QualityFilter().annotate(table(rows)).column("quality").to_pylist()[6]["alpha"]
    assert alpha > 0.95  # Han characters are letters


def test_url_and_markup_dominated_responses() -> None:
    spam = "https://en.wikipedia.org/wiki/Paris https://www.example.com/paris-guide-2024"
    html = "<p><b>Paris</b></p><br><div><span>capital</span></div><br/><p>&nbsp;</p>"
    rows = [
        ("What is the capital of France?", spam),
        ("What is the capital of France?", html),
        ("Give me links to Python tutorials.", spam),
        ("Write the HTML for an image.", '<img src="cat.png" alt="a cat">'),
        ("In SQL, how do I filter rows?", "SELECT <columns> FROM <table> WHERE <column> = <value>"),
        ("Where is the source?", "It is at https://github.com/org/repo, in the src folder of the main branch."),
    ]
    got = removed(QualityFilter(), rows)
    assert list(got) == [0, 1]
    assert got[0].startswith("response is mostly URLs or markup: ") and got[0].endswith("(max 50%)")


def test_unbalanced_fences_and_brackets() -> None:
    rows = [
        ("Write a loop.", "Here it is:\n```python\nfor i in range(3):\n    print(i)\n"),
        ("Convert to JSON.", '{\n "root": {\n  "item": "1"\n }'),
        ("List steps.", "1) Mix the flour. 2) Add water. :)"),
        ("Write a loop.", "```python\nprint('(')\n```"),
    ]
    assert removed(QualityFilter(), rows) == {
        0: "response has 1 unclosed code fence(s) or bracket(s)",
        1: "response has 1 unclosed code fence(s) or bracket(s)",
    }
    assert removed(QualityFilter(unbalanced=False), rows) == {}


def test_truncated_prose_but_not_lists_poems_or_headlines() -> None:
    rows = [
        ("How are vaccines tested?", PROSE + " Phase 2 trials expand to several hundred people to"),
        ("What is marketing automation?", PROSE + " It is used for upsell and retention marketing. In"),
        ("Summarize the events.", PROSE + " These events built up tension that finally boiled over"),
        ("Write a poem.", "Soft rain on tin roofs\nthe gutters hum low\nwe stay in"),
        ("Headline?", "taiwan shares close down #.## percent"),
        ("List ingredients.", "- flour\n- salt and pepper\n- water"),
        ("Quiz answers?", PROSE + "\n1. A\n2. C\n3. A"),
        ("总结一下。", ZH + "下完成的"),
        ("总结一下。", ZH + "和"),
    ]  # fmt: skip
    assert removed(QualityFilter(), rows) == {
        0: "response ends mid-sentence: '…d to several hundred people to'",
        1: "response ends mid-sentence: '…ll and retention marketing. In'",
        8: "response ends mid-sentence: '…近五十万公里，其中最后八万公里是在没有任何人为安全干预措施和'",
    }


def test_mojibake_is_dropped_or_fixed() -> None:
    rows = [
        ("Describe a café breakfast.", "A cafÃ© crÃ¨me and a croissant, as the French eat it."),
        ("Say it.", "It\u2019s â€œquotedâ€\x9d text."),
        ("Bad bytes.", "The file said \ufffd\ufffd here."),
        ("Accents.", "Déjà vu: crème brûlée à la française, « très » bien, 25 °C ± 2."),
    ]
    got = removed(QualityFilter(), rows)
    assert list(got) == [0, 1, 2]
    assert got[0] == "mojibake in response: 2 mis-decoded sequence(s)"
    pytest.importorskip("ftfy")
    out = QualityFilter(fix_text=True).process(table(rows))
    assert out.rejected.column("source_index").to_pylist() == [2]  # U+FFFD cannot be repaired
    fixed = out.kept.column("messages").to_pylist()
    assert fixed[0][1]["content"] == "A café crème and a croissant, as the French eat it."
    assert fixed[1][1]["content"] == "It\u2019s \u201cquoted\u201d text."
    assert fixed[2] == table(rows).column("messages").to_pylist()[3]  # clean text is untouched


def test_fix_text_without_ftfy_names_the_install(monkeypatch) -> None:
    import builtins

    real = builtins.__import__

    def no_ftfy(name, *args, **kwargs):
        if name == "ftfy":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ftfy)
    stage = QualityFilter(fix_text=True)  # constructing needs nothing
    with pytest.raises(MissingDependencyError, match="pip install ftfy"):
        stage.setup()
    assert QualityFilter().process(table([("q", "a")])).kept.num_rows == 1


def test_quality_column_scores_every_row() -> None:
    rows = [("q", "Paris."), ("q", ""), ("Explain.", PROSE), ("q", "Read a book. " * 20)]
    annotated = QualityFilter().annotate(table(rows))
    q = annotated.column("quality")
    assert q.type.field("score").type == pa.float64()
    scores = pc.struct_field(q, "score").to_pylist()
    assert scores[0] == 1.0 and scores[1] == 0.0
    assert 0.5 <= scores[2] <= 1.0 and scores[3] < 0.5
    assert q.to_pylist()[0]["top_2gram"] is None  # too short to measure
    out = QualityFilter().process(table(rows))
    kept = pc.struct_field(out.kept.column("quality"), "score").to_pylist()
    assert all(s >= 0.5 for s in kept)
    # annotating twice replaces the column
    again = QualityFilter().annotate(annotated)
    assert again.column_names.count("quality") == 1


def test_dedup_can_keep_the_best_copy_by_score() -> None:
    from winnow.stages import ExactDedup

    rows = [("Capital of France?", "Paris")] * 2
    t = QualityFilter().annotate(table(rows))
    out = ExactDedup(on="instruction", keep={"by": "quality.score"}).run(t)
    assert out.kept.num_rows == 1


def test_parameters_are_validated_and_round_trip() -> None:
    with pytest.raises(ConfigError) as e:
        QualityFilter(max_repeated_line_fraction=1.5)
    assert e.value.key == "max_repeated_line_fraction"
    with pytest.raises(ConfigError) as e:
        QualityFilter(max_top_ngram_fraction=[0.2, 0.2])
    assert e.value.key == "max_top_ngram_fraction"
    with pytest.raises(ConfigError) as e:
        from_config({"quality": {"min_words": -1}})
    assert e.value.key == "min_words"
    stage = from_config({"quality": {"max_duplicate_ngram_fraction": None, "truncated": False}})
    assert from_config(stage.to_config()) == stage


def test_same_output_for_any_batch_size_and_worker_count(tmp_path) -> None:
    rows = [
        ("q", "Paris."),
        ("q", ""),
        ("Explain.", PROSE),
        ("q", "Read a book. " * 20),
        ("Explain.", "Yes."),
        ("q", "cafÃ©"),
    ] * 3
    t = table(rows)
    results = [engine_util.run(t, [QualityFilter()], tmp_path / str(i), size, w) for i, (size, w) in
               enumerate([(100, 1), (1, 1), (4, 2)])]  # fmt: skip
    for kept, rejected, _ in results[1:]:
        assert kept.equals(results[0][0])
        assert rejected.equals(results[0][1])
    assert results[0][1].num_rows == 12


SAMPLE = ROOT / "sample_data"
#: sample_data/README.md: the planted empty, degenerate, placeholder and low-quality rows.
PLANTED = {
    "alpaca.jsonl": {35: "non-answer", 42: "empty", 58: "mojibake", 88: "placeholder", 94: "repetition"},
    "sharegpt.json": {23: "placeholder", 29: "empty", 57: "truncated"},
    "openai.jsonl": {12: "non-answer", 58: "symbols", 59: "empty"},
    "dolly.jsonl": {4: "repetition", 27: "empty", 49: "non-answer"},
    "prompt_completion.csv": {1: "empty"},
}
CONTROLS = {
    "alpaca.jsonl": [25, 73, 43, 61, 104, 17, 107, 84, 10, 37, 39],
    "prompt_completion.csv": [18, 6, 28, 36, 0, 27],
    "openai.jsonl": [35, 14, 37, 30, 33],
    "sharegpt.json": [26, 31],
    "dolly.jsonl": [0],
}


def load(path: str) -> pa.Table:
    t = open_input(InputSpec(path=path)).to_table()
    return t.append_column(schema.ORDER, pa.array(range(t.num_rows), pa.int64()))


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_sample_data_planted_rows_are_caught_and_controls_kept(name: str) -> None:
    t = load(str(SAMPLE / name))
    start = time.perf_counter()
    out = QualityFilter().process(t)
    assert time.perf_counter() - start < 2
    got = dict(zip(out.rejected.column("source_index").to_pylist(), out.rejected.column("reason").to_pylist()))
    kinds_by_row = {}
    for i, reason in got.items():
        kinds_by_row[i] = next(k for k in PLANTED[name].values() if _matches(k, reason))
    assert kinds_by_row == PLANTED[name]
    assert not set(CONTROLS.get(name, [])) & set(got)


def _matches(kind: str, reason: str) -> bool:
    words = {
        "empty": "is empty",
        "placeholder": "placeholder",
        "non-answer": "does not answer",
        "mojibake": "mojibake",
        "repetition": "repeats",
        "truncated": "mid-sentence",
        "symbols": "symbols",
    }
    return words[kind] in reason


@needs_shared
def test_real_data_keeps_known_good_answers() -> None:
    """The false positives found by reading rejected rows stay fixed."""
    keep = {
        "natural_instructions/task085_unnatural_addsub_arithmetic.json": None,  # "-12"
        "natural_instructions/task107_splash_question_to_sql.json": None,  # SQL
        "llamafactory/identity.json": None,  # {{name}} placeholders
        "fastchat/dummy_conversation.json": None,
        "datajuicer_diversity/demo-dataset.jsonl": None,
        "llamafactory/glaive_toolcall_zh_demo.json": [235],  # a cut-off turn
        "datajuicer/alpaca-cot.jsonl": [7, 8, 9, 10],  # XXX template, 磷 → 磷, 酶 → 酶, empty
        "self_instruct/user_oriented_instructions.jsonl": None,  # URL lists, regex, sudoku
    }
    for path, expected in keep.items():
        out = QualityFilter().process(load(str(SHARED_DATA / path)))
        assert sorted(out.rejected.column("source_index").to_pylist()) == (expected or []), path
