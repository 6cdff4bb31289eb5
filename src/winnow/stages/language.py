"""Language identification: tag each row's language and keep the languages asked for.

The instruction (every user turn) and the response (every assistant turn) are judged
separately, on their prose: fenced code, lines of code outside fences, whole-turn JSON (tool
calls), inline code, URLs, e-mail addresses and ``{{placeholders}}`` are removed first, because they say nothing about
the language a row is written in and pull short texts towards English. A text with fewer
than ``min_chars`` letters left is not judged (its language is null): short answers ("1945.",
"Paris.") are where every detector guesses.

Detection is a pure function of the text: langdetect runs with its own factory seeded with
0 in every worker, py3langid and lingua are deterministic. Each worker memoizes answers by a
128-bit hash of the text, because instruction data repeats a lot ("What is up?" ×167).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from winnow import text
from winnow.errors import ConfigError, MissingDependencyError
from winnow.stages.base import Filter, Verdict, register

log = logging.getLogger(__name__)

Backend = Literal["langdetect", "py3langid", "lingua"]
MismatchMode = Literal["drop", "tag", "off"]

#: Removed before detection, in this order (RE2 syntax, applied to each turn).
NOT_PROSE: tuple[tuple[str, str], ...] = (
    (r"(?s)```.*?(?:```|$)", " "),  # fenced code, also a fence left open at the end
    (r"(?s)~~~.*?(?:~~~|$)", " "),
    (r"(?s)^\s*(?:\{.*\}|\[\s*[\[{\"].*\])\s*$", ""),  # a turn that is one JSON value (tool calls)
    ("\u00a0", " "),
    (r"(?i)\b(?:https?://|www\.)\S+", " "),
    (r"[\w.+-]+@[\w-]+\.[\w.-]+", " "),
    (r"\{\{[^{}\n]*\}\}", " "),  # template placeholders such as {{name}}
    # Lines of code outside fences: a lower-case keyword with code punctuation on its line, or a
    # line ending in { } ; or ):. Keywords are case-sensitive, so "For example, ..." stays.
    (
        r"(?m)^[ \t]*(?:def|class|function|public|private|static|import|from|return|for|while|if|elif|else|"
        r"try|except|with|var|let|const|print|console\.log|SELECT|INSERT|UPDATE|DELETE|CREATE)\b"
        r"[^\n]*(?:[:{;()=])[^\n]*$",
        " ",
    ),
    (r"(?m)^[^\n]*(?:[{};]|\):)[ \t]*$", " "),
    (r"(?m)^[ \t]*[\w.\[\]'\"]+[ \t]*[-+*/%]?=[^=\n][^\n]*$", " "),  # an assignment: x = 1, total += n
    (r"`[^`\n]*`", " "),  # inline code
)

#: A translation task may answer in another language than it asks in. Matched (ignoring case)
#: against the instruction; a row whose ``task_type`` contains "translat" is one as well.
LANGUAGE_NAMES = (
    "english|chinese|mandarin|cantonese|german|french|spanish|italian|portuguese|japanese|korean|"
    "russian|arabic|hindi|dutch|swedish|polish|turkish|vietnamese|thai|indonesian|greek|hebrew|"
    "czech|danish|finnish|norwegian|ukrainian|persian|latin"
)
TRANSLATION_CUES = (
    r"translat|übersetz|uebersetz|traduc|tradui|traduz|tradur|перев[оеи]д|翻[译譯訳]|[译譯]成|번역|"
    rf"\b(?:in|into|to)\s+(?:{LANGUAGE_NAMES})\b|"
    r"\bauf\s+(?:deutsch|englisch|französisch|spanisch)\b|"
    r"\ben\s+(?:français|francais|anglais|allemand|español|espanol|inglés|ingles|alemán)\b|"
    r"(?:用|以|成|为|為|到)(?:英|中|汉|漢|日|法|德|西班牙|意大利|葡萄牙|俄|韩|韓|阿拉伯)(?:语|語|文)"
)

CJK = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}"
_CODE = re.compile(r"^[a-z]{2}$")
#: Instruction and response are compared only where both have this many times min_chars letters.
MISMATCH_FACTOR = 3
#: Entries in a worker's memo before it is emptied (about 100 bytes each).
CACHE_SIZE = 1 << 18


def prose(values: pa.Array) -> pa.Array:
    """``values`` without code, JSON turns, URLs, e-mails and placeholders, spaces collapsed."""
    for pattern, replacement in NOT_PROSE:
        values = pc.replace_substring_regex(values, pattern=pattern, replacement=replacement)
    values = pc.replace_substring_regex(values, pattern=r"\s+", replacement=" ")
    return pc.utf8_trim_whitespace(values)


def letters(values: pa.Array) -> pa.Array:
    """Letters (Unicode category L) in each string; digits, signs and spaces don't count.

    A Han, kana or Hangul character counts as 3: one carries about as much as a short word,
    and detectors are reliable on 6-character Chinese where they guess on 6-letter English.
    """
    alphabetic = pc.utf8_length(pc.replace_substring_regex(values, pattern=r"[^\pL]+", replacement=""))
    cjk = pc.utf8_length(pc.replace_substring_regex(values, pattern=f"[^{CJK}]+", replacement=""))
    return pc.add(alphabetic, pc.multiply(cjk, 2))


def base_code(code: str | None) -> str | None:
    """ISO 639-1 from a backend's label: ``zh-cn`` → ``zh``; ``unknown``/``und`` → None."""
    if not code or code in ("unknown", "und"):
        return None
    return code.split("-")[0].lower()


def script_checked(values: pa.Array, answers: pa.Array) -> pa.Array:
    """Answers that the text's script rules out, corrected to ``zh``.

    Korean is written in Hangul and Japanese with kana, so Han characters without them are
    Chinese: langdetect calls short Chinese texts Korean this way. And a text whose Han
    characters (counted 3 each, as in :func:`letters`) outweigh its other letters is Chinese
    whatever Latin names or code it quotes: detectors sample n-grams, and Latin text gives
    them more, so "为RideGreen的名片设计提供一个标语" comes out Dutch.
    """
    han = pc.utf8_length(pc.replace_substring_regex(values, pattern=r"[^\p{Han}]+", replacement=""))
    other = pc.subtract(letters(values), pc.multiply(han, 3))
    kana_or_hangul = pc.match_substring_regex(values, r"[\p{Hiragana}\p{Katakana}\p{Hangul}]")
    mostly_han = pc.greater_equal(pc.multiply(han, 3), other)
    ruled_out = pc.or_(pc.is_in(answers, pa.array(["ko", "ja"])), mostly_han)
    wrong = pc.and_(pc.and_(pc.greater(han, 0), pc.invert(kana_or_hangul)), ruled_out)
    return pc.if_else(pc.fill_null(pc.and_(wrong, pc.is_valid(answers)), False), pa.scalar("zh"), answers)


# -- backends -----------------------------------------------------------------------------------
# Each returns a function from a list of texts to their ISO 639-1 codes (None: no answer).


def _langdetect(languages: Sequence[str] | None) -> Callable[[list[str]], list[str | None]]:
    try:
        from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory
        from langdetect.lang_detect_exception import LangDetectException
    except ImportError:
        raise MissingDependencyError("langdetect", purpose="the language stage (backend: langdetect)") from None
    # Our own factory, not langdetect's global one: seeding it here makes every worker (and
    # every call) give the same answer for the same text, without touching other users' state.
    factory = DetectorFactory()
    profiles = sorted(Path(PROFILES_DIRECTORY).iterdir())
    if languages:
        wanted = set(languages)
        profiles = [p for p in profiles if base_code(p.name) in wanted]
        known = {base_code(p.name) for p in profiles}
        _check_known(languages, known, "langdetect")
    factory.load_json_profile([p.read_text(encoding="utf-8") for p in profiles])
    factory.seed = 0
    fast = _vectorized_detector(factory)

    def detect(texts: list[str]) -> list[str | None]:
        out: list[str | None] = []
        for t in texts:
            detector = fast(factory)
            detector.append(t)
            try:
                out.append(base_code(detector.detect()))
            except LangDetectException:  # no features (only digits or symbols)
                out.append(None)
        return out

    return detect


def _vectorized_detector(factory: Any) -> Any:
    """langdetect's Detector with its probability update done by numpy, same answers.

    The update (``prob[i] *= weight + p_word[i]`` over 55 languages, once per sampled n-gram)
    is 40% of langdetect's time as a Python loop. Done elementwise by numpy it computes the
    same IEEE products in the same order; the normalizing sum still uses Python's ``sum`` so it
    adds in the same order as langdetect on every Python version, and the random draws are
    langdetect's own. bench/language.py checks that every answer equals ``langdetect.detect``.
    """
    import numpy as np
    from langdetect.detector import Detector
    from langdetect.lang_detect_exception import ErrorCode, LangDetectException

    vectors: dict[str, Any] = {}

    class VectorizedDetector(Detector):  # type: ignore[misc]
        def _detect_block(self) -> None:
            self.cleaning_text()
            ngrams = self._extract_ngrams()
            if not ngrams:
                raise LangDetectException(ErrorCode.CantDetectError, "No features in text.")
            n_lang = len(self.langlist)
            langprob = np.zeros(n_lang)
            self.random.seed(self.seed)
            for _ in range(self.n_trial):
                prob = np.full(n_lang, 1.0 / n_lang)
                alpha = self.alpha + self.random.gauss(0.0, 1.0) * self.ALPHA_WIDTH
                weight = alpha / self.BASE_FREQ
                i = 0
                while True:
                    word = self.random.choice(ngrams)
                    vector = vectors.get(word)
                    if vector is None:
                        vector = vectors[word] = np.asarray(self.word_lang_prob_map[word], dtype=np.float64)
                    prob *= weight + vector
                    if i % 5 == 0:
                        prob /= sum(prob.tolist())
                        if prob.max() > self.CONV_THRESHOLD or i >= self.ITERATION_LIMIT:
                            break
                    i += 1
                langprob += prob / self.n_trial
            self.langprob = langprob.tolist()

    return VectorizedDetector


def _py3langid(languages: Sequence[str] | None) -> Callable[[list[str]], list[str | None]]:
    try:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier
    except ImportError:
        raise MissingDependencyError(
            "py3langid", extra="language", purpose="the language stage (backend: py3langid)"
        ) from None
    identifier = LanguageIdentifier.from_model_file(MODEL_FILE)
    if languages:
        _check_known(languages, set(identifier.labels), "py3langid")
        identifier.set_languages(list(languages))
    else:  # lang is ISO 639-1: leave out its languages that have no two-letter code (wuu, pcm, bcl…)
        identifier.set_languages([c for c in identifier.labels if _CODE.match(c)])

    def detect(texts: list[str]) -> list[str | None]:
        return [base_code(identifier.classify(t)[0]) for t in texts]

    return detect


def _lingua(languages: Sequence[str] | None) -> Callable[[list[str]], list[str | None]]:
    try:
        from lingua import IsoCode639_1, LanguageDetectorBuilder
    except ImportError:
        raise MissingDependencyError(
            "lingua-language-detector", extra="language", purpose="the language stage (backend: lingua)"
        ) from None
    if languages:
        codes = []
        for code in languages:
            try:
                codes.append(IsoCode639_1.from_str(code))
            except ValueError:
                raise ConfigError(f"languages: lingua does not know '{code}'", "languages") from None
        if len(codes) < 2:
            raise ConfigError("languages: lingua needs at least two languages to choose from", "languages")
        builder = LanguageDetectorBuilder.from_iso_codes_639_1(*codes)
    else:
        builder = LanguageDetectorBuilder.from_all_languages()
    detector = builder.build()

    def detect(texts: list[str]) -> list[str | None]:
        found = detector.detect_languages_in_parallel_of(texts)
        return [base_code(lang.iso_code_639_1.name) if lang is not None else None for lang in found]

    return detect


BACKENDS: dict[str, Callable[[Sequence[str] | None], Callable[[list[str]], list[str | None]]]] = {
    "langdetect": _langdetect,
    "py3langid": _py3langid,
    "lingua": _lingua,
}


def _check_known(languages: Sequence[str], known: set[str | None], backend: str) -> None:
    unknown = [c for c in languages if c not in known]
    if unknown:
        raise ConfigError(
            f"languages: {backend} does not know {', '.join(unknown)}; it knows {', '.join(sorted(map(str, known)))}",
            "languages",
        )


class Memo:
    """Answers of a detector by a 128-bit hash of the text, for one worker.

    Only ever stores what the detector answered, so it changes speed, never answers.
    """

    def __init__(self, detect: Callable[[list[str]], list[str | None]], size: int = CACHE_SIZE) -> None:
        self.detect = detect
        self.size = size
        self.answers: dict[bytes, str | None] = {}

    def __call__(self, texts: list[str]) -> list[str | None]:
        keys = [hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=16).digest() for t in texts]
        todo: dict[bytes, str] = {}
        for k, t in zip(keys, texts):
            if k not in self.answers:
                todo.setdefault(k, t)
        if todo:
            if len(self.answers) + len(todo) > self.size:
                self.answers.clear()
            self.answers.update(zip(todo, self.detect(list(todo.values()))))
        return [self.answers[k] for k in keys]


def _joined(messages: pa.Array, target: str) -> pa.Array:
    joined = text.role_text(messages, text.TARGETS[target], sep=" ")
    return pc.utf8_trim_whitespace(pc.replace_substring_regex(joined, pattern=r"\s+", replacement=" "))


@functools.lru_cache(maxsize=8)
def memo(backend: str, languages: tuple[str, ...]) -> Memo:
    """One detector and memo per backend configuration per process (profiles load once)."""
    return Memo(BACKENDS[backend](list(languages) or None))


# -- the stage ----------------------------------------------------------------------------------


@register
class LanguageFilter(Filter):
    """Detect the language of instruction and response; keep the wanted ones, flag mismatches.

    Adds ``lang_instruction`` and ``lang_response`` (ISO 639-1 of the user turns and of the
    assistant turns, null where not judged), ``lang_mismatch`` (both judged and different,
    outside translation tasks; null where not checked) and fills the canonical ``lang``: the
    response's language if it was judged, else the instruction's, else the value already there.
    With ``keep``, a row is dropped when neither its instruction nor its response was judged
    to be in a wanted language (at least one of them judged); a row with nothing long enough
    to judge is always kept.

    Args:
        keep: ISO 639-1 codes to keep, e.g. ``[en, zh]``; null or empty keeps every language
            and only tags.
        min_chars: fewest letters a text needs, after code, URLs and placeholders are removed,
            to be judged (a Han, kana or Hangul character counts as 3); shorter texts get a
            null language, because detectors guess on short text.
        mismatch: a response in another language than its instruction: ``drop`` the row,
            ``tag`` it in ``lang_mismatch`` and keep it, or ``off`` (not checked). Only texts
            with 3 × min_chars letters are compared (short ones are confused too often), and
            translation tasks (task_type, or "translate", "into French", "翻译"…) never mismatch.
        backend: ``langdetect`` (the reference, ≈600 texts/s, ≈1.3k in the stage), ``py3langid``
            (≈5k texts/s, needs ``pip install py3langid``) or ``lingua`` (best on short text with
            ``languages`` set; needs ``pip install lingua-language-detector``).
        languages: ISO 639-1 codes the detector may answer; null: every language the backend
            knows. Restricting helps accuracy and speed when the candidates are known.

    >>> LanguageFilter(keep=["en"], min_chars=20, mismatch="drop")
    LanguageFilter(keep=['en'], min_chars=20, mismatch='drop', backend='langdetect', languages=None)
    """

    name = "language"

    def __init__(
        self,
        keep: list[str] | None = None,
        min_chars: int = 20,
        mismatch: MismatchMode = "tag",
        backend: Backend = "langdetect",
        languages: list[str] | None = None,
    ) -> None:
        self.keep = keep
        self.min_chars = min_chars
        self.mismatch = mismatch
        self.backend = backend
        self.languages = languages
        for key in ("keep", "languages"):
            bad = [c for c in getattr(self, key) or [] if not isinstance(c, str) or not _CODE.match(c)]
            if bad:
                raise ConfigError(f"{key}: {bad[0]!r} is not an ISO 639-1 code (two lower-case letters, e.g. en)", key)
        if min_chars < 0:
            raise ConfigError(f"min_chars must be 0 or more, got {min_chars}", "min_chars")
        if mismatch not in ("drop", "tag", "off"):
            raise ConfigError(f"mismatch must be drop, tag or off, got {mismatch!r}", "mismatch")
        if backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}", "backend")

    def setup(self) -> None:
        if getattr(self, "_memo", None) is None:
            self._memo = memo(self.backend, tuple(self.languages or ()))

    def __getstate__(self) -> dict[str, Any]:
        # The detector stays behind: each worker loads its own in setup().
        return {k: v for k, v in self.__dict__.items() if k != "_memo"}

    def detect(self, values: pa.Array) -> pa.Array:
        """The language of each text (as :func:`prose` leaves it), null where not judged."""
        self.setup()
        judged = pc.greater_equal(letters(values), self.min_chars).to_numpy(zero_copy_only=False)
        texts = values.to_pylist()
        picked = [t for t, ok in zip(texts, judged) if ok]
        found = iter(self._memo(picked)) if picked else iter(())
        answers = pa.array([next(found) if ok else None for ok in judged], pa.string())
        if self.languages and "zh" not in self.languages:
            return answers
        return script_checked(values, answers)

    def annotate(self, batch: pa.Table) -> pa.Table:
        # Cleaned per turn, so that a code fence left open ends with its turn.
        messages = text.map_contents(batch.column("messages"), lambda _role, content: prose(content))
        instruction_text = _joined(messages, "instruction")
        response_text = _joined(messages, "response")
        instruction = self.detect(instruction_text)
        response = self.detect(response_text)
        lang = pc.coalesce(response, instruction, batch.column("lang").combine_chunks())
        if self.mismatch == "off":
            mismatch = pa.nulls(batch.num_rows, pa.bool_())
        else:
            # Detectors confuse close languages on short text far more often than rows really
            # mismatch, so both sides need MISMATCH_FACTOR × min_chars letters to be compared.
            both = pc.and_(self._long(instruction_text), self._long(response_text))
            both = pc.and_(both, pc.and_(pc.is_valid(instruction), pc.is_valid(response)))
            differ = pc.and_not(pc.not_equal(instruction, response), self._translation(batch, messages))
            mismatch = pc.if_else(both, differ, pa.scalar(None, pa.bool_()))
        columns = {
            "lang": lang,
            "lang_instruction": instruction,
            "lang_response": response,
            "lang_mismatch": mismatch,
        }
        for name, values in columns.items():
            if name in batch.column_names:
                batch = batch.set_column(batch.column_names.index(name), name, values)
            else:
                batch = batch.append_column(name, values)
        return batch

    def _long(self, values: pa.Array) -> pa.Array:
        return pc.greater_equal(letters(values), MISMATCH_FACTOR * max(self.min_chars, 1))

    @staticmethod
    def _translation(batch: pa.Table, messages: pa.Array) -> pa.Array:
        by_type = pc.match_substring(batch.column("task_type"), "translat", ignore_case=True)
        instruction = text.role_text(messages, text.TARGETS["instruction"], sep=" ")
        by_words = pc.match_substring_regex(instruction, TRANSLATION_CUES, ignore_case=True)
        return pc.or_(pc.fill_null(by_type, False), by_words)

    def reasons(self, batch: pa.Table) -> Verdict:
        n = batch.num_rows
        reasons = pa.nulls(n, pa.string())
        kinds = pa.nulls(n, pa.string())
        if self.mismatch == "drop":
            bad = pc.fill_null(batch.column("lang_mismatch"), False)
            why = pc.binary_join_element_wise(
                "response in ", batch.column("lang_response"), ", instruction in ", batch.column("lang_instruction"), ""
            )
            reasons = pc.if_else(bad, why, reasons)
            kinds = pc.if_else(bad, pa.scalar("language mismatch"), kinds)
        if self.keep:  # checked last, so an unwanted language is the reason named
            # Dropped only when no judged side is wanted: a short list of names or a formula
            # under an English question is where detectors guess most, and a real answer in
            # another language than its instruction is a mismatch (see ``mismatch``).
            wanted = pa.array(self.keep, pa.string())
            judged = pc.or_(pc.is_valid(batch.column("lang_instruction")), pc.is_valid(batch.column("lang_response")))
            some_wanted = pc.or_(
                pc.is_in(batch.column("lang_instruction"), wanted), pc.is_in(batch.column("lang_response"), wanted)
            )
            lang = batch.column("lang")
            bad = pc.fill_null(pc.and_(judged, pc.invert(some_wanted)), False)
            why = pc.binary_join_element_wise("detected ", lang, f", wanted [{', '.join(self.keep)}]", "")
            reasons = pc.if_else(bad, why, reasons)
            kinds = pc.if_else(bad, pa.scalar("language"), kinds)
        return Verdict(reasons, kinds)
