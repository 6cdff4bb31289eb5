"""The language stage: what it judges, what it keeps, and that its answers never depend on batching."""

from __future__ import annotations

import pyarrow as pa
import pytest

from tests import engine_util
from tests.conftest import SHARED_DATA, needs_shared, table
from winnow import schema
from winnow.errors import ConfigError, MissingDependencyError
from winnow.stages import registry
from winnow.stages.base import from_config
from winnow.stages.language import BACKENDS, LanguageFilter, letters, prose

EN_Q = "What is the capital of France, and why is it famous?"
EN_A = "The capital of France is Paris, famous for its museums, cafes and the Eiffel Tower."
DE_A = "Die Hauptstadt von Frankreich ist Paris, berühmt für seine Museen und den Eiffelturm."
FR_A = "La capitale de la France est Paris, célèbre pour ses musées et la tour Eiffel."
DE_Q = "Was ist die Hauptstadt von Frankreich, und warum ist sie berühmt?"
ZH_Q = "法国的首都是哪里？它为什么有名？"
ZH_A = "法国的首都是巴黎，以博物馆、咖啡馆和埃菲尔铁塔闻名。"
JA_A = "フランスの首都はパリです。美術館やエッフェル塔で有名です。"


def langs(out, column: str = "lang") -> list:
    return out.kept.column(column).to_pylist()


def test_registered_under_its_contract_name() -> None:
    assert registry()["language"] is LanguageFilter


def test_default_only_tags_every_role() -> None:
    out = LanguageFilter(min_chars=10).process(table([(EN_Q, EN_A), (ZH_Q, ZH_A), (EN_Q, DE_A)]))
    assert out.rejected.num_rows == 0
    assert langs(out, "lang_instruction") == ["en", "zh", "en"]
    assert langs(out, "lang_response") == ["en", "zh", "de"]
    assert langs(out) == ["en", "zh", "de"]  # the response's language
    assert langs(out, "lang_mismatch") == [False, False, True]


def test_keep_drops_other_languages_with_the_detected_one_named() -> None:
    out = LanguageFilter(keep=["en"]).process(table([(EN_Q, EN_A), (DE_Q, DE_A), (ZH_Q, ZH_A)]))
    assert langs(out) == ["en"]
    assert out.rejected.column("reason").to_pylist() == ["detected de, wanted [en]", "detected zh, wanted [en]"]
    assert out.counts == {"language": 2}


def test_keep_trusts_a_wanted_instruction_over_a_list_of_names() -> None:
    rows = [
        ("Identify which car manufacturer is German or American: Opel, GMC", "Opel is German, GMC is American"),
        ("Give some examples of national dishes from a given country: Italy", "Risotto, Spaghetti alla Carbonara"),
    ]
    out = LanguageFilter(keep=["en"]).process(table(rows))
    assert out.rejected.num_rows == 0


def test_keep_several_languages() -> None:
    out = LanguageFilter(keep=["en", "zh"]).process(
        table([(EN_Q, EN_A), (ZH_Q, ZH_A), ("Quelle est la capitale de la France ?", FR_A)])
    )
    assert langs(out) == ["en", "zh"]
    assert out.rejected.column("reason").to_pylist() == ["detected fr, wanted [en, zh]"]


def test_short_text_is_kept_and_not_judged() -> None:
    out = LanguageFilter(keep=["en"]).process(table([("Hi", "Hallo"), ("Danke!", "Bitte.")]))
    assert out.rejected.num_rows == 0
    assert langs(out) == [None, None]
    # ...but the same words, long enough, are judged
    long = LanguageFilter(keep=["en"], min_chars=5).process(table([("Hi", "Hallo, wie geht es dir heute?")]))
    assert long.rejected.column("reason").to_pylist() == ["detected de, wanted [en]"]


def test_short_response_falls_back_to_the_instruction() -> None:
    out = LanguageFilter(keep=["en"]).process(table([(ZH_Q, "1945."), (EN_Q, "Paris.")]))
    assert out.rejected.column("reason").to_pylist() == ["detected zh, wanted [en]"]
    assert langs(out, "lang_response") == [None]
    assert langs(out) == ["en"]


def test_mostly_chinese_text_quoting_latin_names_is_chinese() -> None:
    out = LanguageFilter(keep=["zh"]).process(
        table([("为RideGreen的名片设计提供一个标语。", '"RideGreen - 绿色出行，美好未来"')])
    )
    assert out.rejected.num_rows == 0 and langs(out) == ["zh"]
    english = "The Chinese word 你好 means hello; people say it when they meet someone for the first time."
    assert langs(LanguageFilter().process(table([(EN_Q, english)]))) == ["en"]


def test_chinese_characters_count_for_more_than_latin_letters() -> None:
    assert letters(pa.array(["你好世界", "abcd", "1945.", "안녕"])).to_pylist() == [12, 4, 0, 6]


def test_chinese_and_japanese() -> None:
    out = LanguageFilter().process(
        table([(ZH_Q, ZH_A), ("フランスの首都はどこですか？", JA_A), ("有哪些缓解压力的方法?", "")])
    )
    assert langs(out, "lang_response")[:2] == ["zh", "ja"]
    # langdetect alone calls this Korean; Han without Hangul is Chinese
    assert langs(out, "lang_instruction") == ["zh", "ja", "zh"]


def test_code_response_is_judged_by_its_prose_only() -> None:
    code = "```python\ndef add(first_number, second_number):\n    return first_number + second_number\n```"
    rows = [
        ("Schreibe eine Python-Funktion, die zwei Zahlen addiert.", code),  # only code: not judged
        (EN_Q, "Hier ist die Funktion, die du brauchst, ganz einfach:\n" + code),  # German prose + code
        (ZH_Q, "这个函数把两个数字加起来并返回它们的和。\n" + code + "\nSee https://docs.python.org/3/tutorial"),
    ]
    out = LanguageFilter().process(table(rows))
    assert langs(out, "lang_response") == [None, "de", "zh"]
    assert langs(out) == ["de", "de", "zh"]
    assert prose(pa.array(["see `x = 1` at www.example.com or a.b@mail.com, {{author}}"])).to_pylist() == [
        "see at or ,"
    ]


def test_tool_call_turns_are_not_prose() -> None:
    call = '{"name": "get_news", "arguments": {"category": "sports", "country": "United States of America"}}'
    rows = [[{"role": "user", "content": ZH_Q}, {"role": "assistant", "content": call}]]
    out = LanguageFilter(keep=["zh"]).process(table(rows))
    assert out.rejected.num_rows == 0
    assert langs(out, "lang_response") == [None]


def test_mixed_language_text_gets_its_main_language() -> None:
    mixed = "The German word Schadenfreude means the pleasure someone feels at another person's misfortune."
    out = LanguageFilter(keep=["en"]).process(table([("What does Schadenfreude mean in everyday usage?", mixed)]))
    assert langs(out) == ["en"]


def test_empty_responses_and_prompt_only_rows() -> None:
    rows = [
        (EN_Q, ""),
        (EN_Q, "   "),
        [{"role": "user", "content": DE_A}],  # prompt only: no assistant turn
    ]
    out = LanguageFilter(keep=["en"], mismatch="drop").process(table(rows))
    assert langs(out, "lang_response") == [None, None]
    assert langs(out) == ["en", "en"]
    assert out.rejected.column("reason").to_pylist() == ["detected de, wanted [en]"]


def test_mismatch_dropped_with_both_languages_named() -> None:
    rows = [(EN_Q, FR_A), (EN_Q, EN_A)]
    out = LanguageFilter(mismatch="drop", min_chars=10).process(table(rows))
    assert out.rejected.column("reason").to_pylist() == ["response in fr, instruction in en"]
    assert out.counts == {"language mismatch": 1}
    assert LanguageFilter(mismatch="tag", min_chars=10).process(table(rows)).rejected.num_rows == 0
    # short texts are not compared: 42 letters < 3 × 20
    assert LanguageFilter(mismatch="drop").process(table(rows)).rejected.num_rows == 0
    off = LanguageFilter(mismatch="off", min_chars=10).process(table(rows))
    assert langs(off, "lang_mismatch") == [None, None]


def test_translation_tasks_may_mismatch() -> None:
    rows = [
        ("Translate into German: the capital of France is Paris, famous for its museums.", DE_A),
        ("请把下面的句子翻译成英文：法国的首都是巴黎。", EN_A),
        ("Wie sagt man das auf Englisch: Die Hauptstadt von Frankreich ist Paris?", EN_A),
        (EN_Q, DE_A),  # not a translation: still a mismatch
    ]
    out = LanguageFilter(mismatch="drop", min_chars=10).process(table(rows))
    assert out.kept.num_rows == 3
    assert out.rejected.column("reason").to_pylist() == ["response in de, instruction in en"]
    by_type = table([(EN_Q, DE_A)]).set_column(4, "task_type", pa.array(["translation"]))
    assert LanguageFilter(mismatch="drop", min_chars=10).process(by_type).rejected.num_rows == 0


def test_unwanted_language_is_named_before_a_mismatch() -> None:
    out = LanguageFilter(keep=["fr"], mismatch="drop", min_chars=10).process(table([(EN_Q, DE_A), (EN_Q, FR_A)]))
    assert out.rejected.column("reason").to_pylist() == [
        "detected de, wanted [fr]",
        "response in fr, instruction in en",
    ]


def test_existing_lang_is_kept_when_nothing_is_judged() -> None:
    t = table([("Hi", "Ok"), (EN_Q, EN_A)]).set_column(5, "lang", pa.array(["de", "de"]))
    assert langs(LanguageFilter().process(t)) == ["de", "en"]


def test_parameters_are_checked() -> None:
    with pytest.raises(ConfigError) as e:
        from_config({"language": {"keep": ["english"]}})
    assert e.value.key == "keep"
    with pytest.raises(ConfigError):
        from_config({"language": {"backend": "fasttext"}})
    with pytest.raises(ConfigError) as e:
        LanguageFilter(min_chars=-1)
    assert e.value.key == "min_chars"
    with pytest.raises(ConfigError) as e:
        LanguageFilter(languages=["xx"]).setup()
    assert e.value.key == "languages"


def test_missing_backend_package_says_how_to_install(monkeypatch) -> None:
    import builtins

    real = builtins.__import__

    def no_py3langid(name, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name.startswith("py3langid"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    stage = LanguageFilter(backend="py3langid")  # building it needs nothing
    monkeypatch.setattr(builtins, "__import__", no_py3langid)
    with pytest.raises(MissingDependencyError, match="pip install 'winnow\\[language\\]'"):
        stage.setup()


@pytest.mark.parametrize("backend", ["py3langid", "lingua"])
def test_other_backends_agree_on_clear_text(backend: str) -> None:
    pytest.importorskip({"py3langid": "py3langid", "lingua": "lingua"}[backend])
    languages = ["en", "de", "fr", "zh", "ja"] if backend == "lingua" else None
    stage = LanguageFilter(backend=backend, languages=languages, keep=["en"])
    out = stage.process(
        table([(EN_Q, EN_A), (DE_Q, DE_A), (ZH_Q, ZH_A), ("Quelle est la capitale de la France ?", FR_A)])
    )
    assert langs(out) == ["en"]
    assert out.rejected.column("reason").to_pylist() == [
        "detected de, wanted [en]",
        "detected zh, wanted [en]",
        "detected fr, wanted [en]",
    ]


def test_vectorized_langdetect_gives_langdetect_s_own_probabilities() -> None:
    from langdetect import DetectorFactory, detect_langs

    DetectorFactory.seed = 0
    texts = [EN_A, DE_A, FR_A, ZH_A, JA_A, "Merci pour le movie .", "ok ok ok fine 123"]
    detect = BACKENDS["langdetect"](None)
    assert detect(texts) == [detect_langs(t)[0].lang.split("-")[0] for t in texts]


def test_same_answer_whatever_the_batch_size_or_worker(tmp_path) -> None:
    rows = [(EN_Q, EN_A), (ZH_Q, ZH_A), (DE_Q, DE_A), ("Hi", "Hallo"), (EN_Q, FR_A)] * 3
    t = table(rows)
    stage = LanguageFilter(keep=["en", "zh"], mismatch="drop", min_chars=10)
    results = [
        engine_util.run(t, [stage], tmp_path / str(i), size, w) for i, (size, w) in enumerate([(100, 1), (2, 2)])
    ]
    (kept_a, rej_a, _), (kept_b, rej_b, _) = results
    assert kept_a.equals(kept_b) and rej_a.equals(rej_b)
    assert kept_a.column("lang").to_pylist() == ["en", "zh", None] * 3


def test_pickled_stage_leaves_its_detector_behind() -> None:
    import pickle

    stage = LanguageFilter()
    stage.setup()
    again = pickle.loads(pickle.dumps(stage))
    assert again == stage and getattr(again, "_memo", None) is None


@needs_shared
def test_real_data_languages() -> None:
    from winnow.formats import open_input
    from winnow.formats.source import InputSpec

    def load(name: str) -> pa.Table:
        t = open_input(InputSpec(path=str(SHARED_DATA / name))).to_table()
        return t.append_column(schema.ORDER, pa.array(range(t.num_rows), pa.int64()))

    task117 = LanguageFilter(mismatch="drop").process(load("natural_instructions/task117_spl_translation_en_de.json"))
    assert task117.rejected.num_rows == 0  # en → de translation: allowed
    assert task117.kept.column("lang").to_pylist().count("de") >= 17
    belle = LanguageFilter(keep=["zh"], backend="py3langid").process(load("belle/zh_seed_tasks.json"))
    assert belle.rejected.num_rows <= 20  # the documented Latin-script (code, English) rows
