"""Quality heuristics for instruction data: scores into a ``quality`` column, then a verdict.

Web-text rules (Gopher's 50-word minimum, C4's 5-sentence minimum) drop almost every short,
correct answer ("1945.", "Mount Everest."), so nothing here punishes a response for being short.
Each heuristic looks only for a defect that is wrong whatever the task — no answer, a
placeholder, a copy of the prompt, loops, symbol soup, broken encoding, an answer cut off — and
statistics that need length to mean something (n-gram repetition, character shares) are only
measured where the response is long enough.

The measurements go into a ``quality`` struct column (Data-Juicer's split: compute, then
decide), so rows can be sorted by them and thresholds re-tuned without recomputing; the
verdict names the first heuristic a row breaks, with the measured value and the limit.
"""

from __future__ import annotations

import collections
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from winnow import text
from winnow.errors import ConfigError, MissingDependencyError
from winnow.stages.base import Filter, Verdict, register

COLUMN = "quality"

#: Gopher (Rae et al. 2021, table A1): most frequent 2/3/4-gram, duplicate 5…10-grams.
TOP_NGRAMS = (2, 3, 4)
DUP_NGRAMS = (5, 6, 7, 8, 9, 10)

#: Han, kana: scripts written without spaces, where each character is one token.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]{{1,2}}|[^\W_{_CJK}]+")
#: UTF-8 read as Latin-1/cp1252 ("cafÃ©", "â€™"), the replacement character, C1 controls.
_MOJIBAKE = re.compile(
    "\ufffd|[\u0080-\u009f]|[\u00c2\u00c3][\u00a0-\u00bf]"
    "|\u00c3[\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2013\u2014\u2018-\u201e"
    "\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122]|\u00e2\u20ac"
)
#: Whole responses that stand for "no answer here" (compared lower-cased, without end dots).
PLACEHOLDERS = frozenset(
    {
        "<noinput>", "<no input>", "<nooutput>", "<no output>", "<none>", "<empty>", "n/a",
        "null", "nan", "todo", "tbd", "tba", "placeholder", "[placeholder]", "...", "…",
        "insert answer here", "[insert answer here]", "your answer here", "answer here",
        "output", "<output>", "response", "<response>",
    }
)  # fmt: skip
_LOREM = re.compile(r"lorem ipsum", re.I)
_TEMPLATE = re.compile(r"\{\{\s*\w+\s*\}\}")
#: A bare acknowledgement is an answer only to a yes/no question.
_ACK = re.compile(r"^(?:yes|no|ok|okay|sure|yep|nope|fine|done|correct|right)[.!]?$", re.I)
_YES_NO_QUESTION = re.compile(
    r"^\W*(?:is|are|was|were|am|do|does|did|can|could|will|would|should|shall|has|have|had|may"
    r"|might|must|isn't|aren't|don't|doesn't|didn't|can't|won't)\b"
    r"|\b(?:yes|no|true|false|agree|disagree|correct|incorrect|ok|okay|whether|if)\b"
    r"|是否|是不是|对不对|吗",
    re.I,
)
#: Words an English sentence never ends on: a response stopping on one was cut off.
DANGLING = frozenset(
    """a an the to of and or but nor with without from into onto than because although though
    whether whose their its our your my very such including""".split()
)
#: Words that do end sentences ("log in", "boiled over") but not as a sentence of one word:
#: "… retention marketing. In" was cut off.
OPENERS = DANGLING | frozenset(
    """in on at by for as if when while where which who since so this these those some any each
    every both either for after before during about over under through like unlike""".split()
)
#: Han characters a Chinese sentence does not end on (conjunctions, prepositions). Not 的, 在
#: or 是, which end sentences ("…下完成的").
CJK_DANGLING = frozenset("和与及或把被对从向并而但且")
_TERMINAL = re.compile(r"[.!?。！？…]['\"”’」』)\]]*$")
_HTML_TAGS = (
    "a|abbr|b|body|br|button|center|code|div|em|font|form|h[1-6]|head|hr|html|i|iframe|img|input"
    "|label|li|link|meta|nav|ol|option|p|pre|script|section|select|small|span|strong|style|sub"
    "|sup|table|tbody|td|textarea|th|thead|title|tr|u|ul"
)
_URL_MARKUP = re.compile(rf"https?://\S+|www\.\S+|</?(?:{_HTML_TAGS})(?:\s[^<>]{{0,200}})?/?>|&[a-zA-Z]+;|&#\d+;", re.I)
_FENCE = re.compile(r"^[ \t]*(```|~~~)", re.M)
_FENCED = r"(?s)```.*?```"
#: Fenced blocks and inline code: allowed to be symbols and markup.
_CODE = r"(?s)```.*?```|`[^`\n]+`"
#: Characters that draw tables, rules and boxes: layout, not symbol soup.
_LAYOUT = r"[|\-=_+\x{2500}-\x{259F}]"
#: Prompts that ask for symbols or art, or for links and markup (RE2 syntax, for pyarrow).
_ASKS_SYMBOLS = r"(?i)ascii|\bart\b|\bdraw|emoji|emoticon|symbol|kaomoji|字符画|图示|符号|表情"
_ASKS_MARKUP = (
    r"(?i)\burls?\b|\blinks?\b|website|web ?page|\bhtml|\bxml|\bsvg|markup|markdown|\btags?\b"
    r"|网址|链接|网页|标签"
)

#: Fields of the ``quality`` column, in order.
FIELDS = pa.struct(
    [
        pa.field("score", pa.float64()),
        pa.field("chars", pa.int64()),
        pa.field("words", pa.int64()),
        pa.field("empty", pa.bool_()),
        pa.field("placeholder", pa.bool_()),
        pa.field("non_answer", pa.bool_()),
        pa.field("instruction_copy", pa.float64()),
        pa.field("repeated_lines", pa.float64()),
        *[pa.field(f"top_{n}gram", pa.float64()) for n in TOP_NGRAMS],
        *[pa.field(f"duplicate_{n}gram", pa.float64()) for n in DUP_NGRAMS],
        pa.field("alpha", pa.float64()),
        pa.field("symbols", pa.float64()),
        pa.field("url_markup", pa.float64()),
        pa.field("unbalanced", pa.int64()),
        pa.field("truncated", pa.bool_()),
        pa.field("mojibake", pa.int64()),
    ]
)


def tokens(value: str) -> list[str]:
    """Lower-cased words. Han and kana, written without spaces, are cut into two-character
    pieces: about a word each (a segmenter would do better, and cost a dependency)."""
    return _TOKEN.findall(value.lower())


def repeated_line_fraction(value: str) -> float:
    """Share of the characters of non-blank lines that are in a repeat of an earlier line.

    Lines without a letter or digit (``}``, ``---``, a fence) are structure and never count as
    repeats, so code and Markdown are not punished for closing braces and rules.
    """
    lines = [line.strip() for line in value.splitlines()]
    lines = [line for line in lines if line]
    total = sum(len(line) for line in lines)
    if len(lines) < 2 or not total:
        return 0.0
    seen: set[str] = set()
    repeated = 0
    for line in lines:
        if line in seen and any(c.isalnum() for c in line):
            repeated += len(line)
        seen.add(line)
    return repeated / total


def top_ngram_fraction(words: Sequence[str], n: int, total: int) -> float:
    """Share of the words' characters covered by the most frequent n-gram (Gopher)."""
    if len(words) < n or not total:
        return 0.0
    counts = collections.Counter(zip(*(words[i:] for i in range(n))))
    gram, count = counts.most_common(1)[0]
    if count < 2:
        return 0.0
    return min(1.0, count * sum(len(w) for w in gram) / total)  # overlapping repeats exceed 1


def duplicate_ngram_fraction(words: Sequence[str], n: int, total: int) -> float:
    """Share of the words' characters in non-overlapping repeats of an earlier n-gram (Gopher,
    as datatrove counts it)."""
    grams = list(zip(*(words[i:] for i in range(n))))
    if not total or len(set(grams)) == len(grams):  # the usual case: nothing repeats
        return 0.0
    lengths = [len(w) for w in words]
    seen: set[tuple[str, ...]] = set()
    repeated = i = 0
    while i < len(grams):
        if grams[i] in seen:
            repeated += sum(lengths[i : i + n])
            i += n
        else:
            seen.add(grams[i])
            i += 1
    return repeated / total


def repetition(value: str, min_words: int, min_top_words: int) -> tuple[float, list[float], list[float]]:
    """Repeated-line fraction and the Gopher n-gram fractions of one turn (NaN: too short)."""
    # Judged on prose: code repeats lines and calls on purpose.
    outside = re.sub(_FENCED, "\\n", value) if "```" in value else value
    lines = repeated_line_fraction(outside)
    words = tokens(outside)
    top = [math.nan] * len(TOP_NGRAMS)
    if len(words) < min_words:
        return lines, top, [math.nan] * len(DUP_NGRAMS)
    total = sum(len(w) for w in words)
    if len(words) >= min_top_words:
        top = [top_ngram_fraction(words, k, total) for k in TOP_NGRAMS]
    dup = [0.0] * len(DUP_NGRAMS)
    for j, k in enumerate(DUP_NGRAMS):
        dup[j] = duplicate_ngram_fraction(words, k, total)
        if not dup[j]:  # no repeated k-gram: no longer one repeats either
            break
    return lines, top, dup


def unbalanced_count(value: str) -> int:
    """An unclosed code fence (1 for an odd count) plus unmatched ``{}`` and ``[]``.

    Parentheses are not counted: "1) … 2) …" lists, ":)" and code about "(" are fine.
    """
    missing = len(_FENCE.findall(value)) % 2
    return missing + abs(value.count("{") - value.count("}")) + abs(value.count("[") - value.count("]"))


def is_truncated(value: str, min_words: int) -> bool:
    """Ends without terminal punctuation on a word a sentence cannot end on ("… people to")."""
    value = value.rstrip()
    if not value or not value[-1].isalpha() or _TERMINAL.search(value):
        return False
    if len(_FENCE.findall(value)) % 2:  # inside code: the fence rule speaks for it
        return False
    last = value[-1]
    if "\u3400" <= last <= "\u9fff":
        return last in CJK_DANGLING and len(re.findall(rf"[{_CJK}]", value)) >= 2 * min_words
    words = value.split()
    if len(words) < min_words:
        return False
    tail = re.sub(r"^\W+", "", words[-1])
    if tail.islower() and tail in DANGLING:
        return True
    # A sentence of one word that cannot stand alone: "… marketing. In"
    fragment = re.split(r"[.!?]\s+", value)[-1].split()
    return len(fragment) == 1 and len(tail) > 1 and tail[0].isupper() and tail.lower() in OPENERS


def _fraction(name: str, value: Any) -> None:
    if value is not None and not (isinstance(value, (int, float)) and 0 <= value <= 1):
        raise ConfigError(f"{name} must be a fraction between 0 and 1 (or null to turn it off)", name)


def _fractions(name: str, value: Any, n: Sequence[int]) -> None:
    if value is None:
        return
    if len(value) != len(n) or not all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in value):
        raise ConfigError(f"{name} must be {len(n)} fractions, one per n-gram size {list(n)}, or null", name)


@register
class QualityFilter(Filter):
    """Drop responses that are empty, placeholders, copies of the prompt, loops, symbol soup,
    broken text or cut off, with rules chosen for instruction data.

    Short answers are never a defect ("1945.", "Au.", "positive"): statistics that need length
    are measured only on responses with at least ``min_words`` words (n-grams) or ``min_chars``
    non-space characters (character shares). "Words" are letter/digit runs, and each Chinese or
    Japanese character counts as one, so Chinese text is measured like English. Every measure
    goes into the ``quality`` struct column; its ``score`` is 1 minus the worst penalty over
    the heuristics that are on, where a fraction's penalty is half its ratio to its limit
    (capped at 1) and a yes/no heuristic that fires is 1: a kept row scores at least 0.5, a
    dropped row less than 0.5. The response is every assistant turn, joined.

    Placeholders are whole responses such as ``N/A``, ``<noinput>``, ``TODO`` or ``...``, and
    lorem ipsum anywhere (unless the prompt asks for it); ``{{name}}`` template fields are kept
    by default because datasets like LLaMA-Factory's identity.json fill them at load time.

    Args:
        empty: drop responses that are empty or only whitespace.
        placeholder: drop placeholder responses (``N/A``, ``<noinput>``, ``TODO``, lorem ipsum).
        template_placeholders: also drop responses holding ``{{field}}`` template placeholders.
        non_answer: drop a bare "Yes."/"OK."/"Sure." given to a prompt that is not a yes/no
            question (one that starts with is/are/do/can/… or mentions yes, no, true, false).
        max_instruction_copy: most of the instruction a response found inside it may cover: a
            response equal to the instruction, or a copy of nearly all of it (its input handed
            back), is dropped; a span of it (a label from an option list, an extracted
            sentence, the paragraph left after "delete the last two") is an answer.
        min_copy_words: words a copy needs to count, unless it is the whole instruction.
        max_repeated_line_fraction: most characters in repeats of an earlier line.
        max_top_ngram_fraction: most characters covered by the single most frequent 2-, 3- and
            4-gram of a turn: 3× Gopher's 0.20, 0.18, 0.16, which flag one answer in ten here.
        max_duplicate_ngram_fraction: most characters of a turn in repeats of an earlier 5-…10-gram
            (Gopher: 0.15 down to 0.10, which flag lists, SQL and worked sums here).
        min_words: words a turn needs before duplicate n-grams and truncation are judged.
        min_top_ngram_words: words a turn needs before its most frequent n-grams are judged
            (Gopher's own minimum document; shorter lists repeat their pattern by design).
        max_symbol_fraction: most punctuation and symbols among the non-space characters
            outside code; letters of every script and digits are not symbols, nor are the
            characters that draw tables and rules (``| - = _ +``, box drawing); not judged
            where the prompt asks for ASCII art, drawings, emoji or symbols.
        max_url_markup_fraction: most non-space characters outside code in URLs, HTML tags and
            entities; not judged where the prompt asks for links, URLs, HTML or markup.
        min_chars: non-space characters a response needs before character shares are judged.
        unbalanced: drop responses with an unclosed code fence or unmatched ``{}``/``[]``
            (not ``()``: "1) … 2) …" lists and ":)" are fine).
        truncated: drop prose that stops mid-sentence: no terminal punctuation and a last word
            a sentence cannot end on (``to``, ``the``, ``and``; Chinese 和/与/把…), or a
            one-word last sentence that cannot stand alone ("… marketing. In").
        mojibake: drop responses with mis-decoded text (``cafÃ©``, ``â€™``, U+FFFD).
        fix_text: repair mis-decoded text in every turn with ftfy instead of dropping the row
            (``pip install ftfy``); rows still broken afterwards (U+FFFD) are dropped.

    >>> QualityFilter(max_repeated_line_fraction=0.5, truncated=False).max_repeated_line_fraction
    0.5
    """

    name = "quality"

    def __init__(
        self,
        empty: bool = True,
        placeholder: bool = True,
        template_placeholders: bool = False,
        non_answer: bool = True,
        max_instruction_copy: float | None = 0.9,
        min_copy_words: int = 5,
        max_repeated_line_fraction: float | None = 0.3,
        max_top_ngram_fraction: list[float] | None = [0.60, 0.54, 0.48],  # noqa: B006 (stored, never mutated)
        max_duplicate_ngram_fraction: list[float] | None = [0.5, 0.5, 0.5, 0.5, 0.5, 0.5],  # noqa: B006
        min_words: int = 20,
        min_top_ngram_words: int = 50,
        max_symbol_fraction: float | None = 0.75,
        max_url_markup_fraction: float | None = 0.5,
        min_chars: int = 20,
        unbalanced: bool = True,
        truncated: bool = True,
        mojibake: bool = True,
        fix_text: bool = False,
    ) -> None:
        for name, value in [
            ("max_repeated_line_fraction", max_repeated_line_fraction),
            ("max_symbol_fraction", max_symbol_fraction),
            ("max_url_markup_fraction", max_url_markup_fraction),
            ("max_instruction_copy", max_instruction_copy),
        ]:
            _fraction(name, value)
        _fractions("max_top_ngram_fraction", max_top_ngram_fraction, TOP_NGRAMS)
        _fractions("max_duplicate_ngram_fraction", max_duplicate_ngram_fraction, DUP_NGRAMS)
        counts = [
            ("min_copy_words", min_copy_words),
            ("min_words", min_words),
            ("min_top_ngram_words", min_top_ngram_words),
            ("min_chars", min_chars),
        ]
        for name, count in counts:
            if count is not None and count < 0:
                raise ConfigError(f"{name} must be 0 or more", name)
        self.empty = empty
        self.placeholder = placeholder
        self.template_placeholders = template_placeholders
        self.non_answer = non_answer
        self.max_instruction_copy = max_instruction_copy
        self.min_copy_words = min_copy_words
        self.max_repeated_line_fraction = max_repeated_line_fraction
        self.max_top_ngram_fraction = None if max_top_ngram_fraction is None else list(max_top_ngram_fraction)
        self.max_duplicate_ngram_fraction = (
            None if max_duplicate_ngram_fraction is None else list(max_duplicate_ngram_fraction)
        )
        self.min_words = min_words
        self.min_top_ngram_words = min_top_ngram_words
        self.max_symbol_fraction = max_symbol_fraction
        self.max_url_markup_fraction = max_url_markup_fraction
        self.min_chars = min_chars
        self.unbalanced = unbalanced
        self.truncated = truncated
        self.mojibake = mojibake
        self.fix_text = fix_text

    def setup(self) -> None:
        if self.fix_text:
            _ftfy()

    # -- annotate: measure ----------------------------------------------------------------------
    def annotate(self, batch: pa.Table) -> pa.Table:
        if self.fix_text:
            batch = self._fix(batch)
        messages = batch.column("messages")
        response = text.role_text(messages, ["assistant"])
        instruction = text.role_text(messages, ["user"])
        last_user = _last_user_turn(messages)
        n = batch.num_rows

        stripped = pc.utf8_trim_whitespace(response)
        chars = pc.utf8_length(pc.replace_substring_regex(stripped, r"\s+", "")).to_numpy(zero_copy_only=False)
        # Character shares, outside code (code may be all symbols and markup), measured only
        # where there are min_chars to measure and the prompt did not ask for what is measured.
        prose = pc.replace_substring_regex(response, _CODE, " ")
        dense = pc.replace_substring_regex(prose, r"\s+", "")
        dense_len = pc.utf8_length(dense).to_numpy(zero_copy_only=False).astype(np.float64)
        measured = dense_len >= max(self.min_chars, 1)
        letters = _count(dense, r"[\pL\pM]")
        symbols = _count(dense, r"[\pP\pS]") - _count(dense, _LAYOUT)
        asks_symbols = pc.match_substring_regex(instruction, _ASKS_SYMBOLS).to_numpy(zero_copy_only=False)
        asks_markup = pc.match_substring_regex(instruction, _ASKS_MARKUP).to_numpy(zero_copy_only=False)
        plain = pc.replace_substring_regex(prose, "(?i)" + _URL_MARKUP.pattern, "")
        plain = pc.replace_substring_regex(plain, r"\s+", "")
        markup = dense_len - pc.utf8_length(plain).to_numpy(zero_copy_only=False)
        with np.errstate(invalid="ignore", divide="ignore"):
            alpha = np.where(measured, letters / dense_len, np.nan)
            symbol_share = np.where(measured & ~asks_symbols, symbols / dense_len, np.nan)
            url_markup = np.where(measured & ~asks_markup, markup / dense_len, np.nan)

        copy = _instruction_copy(response, instruction)
        responses = response.to_pylist()
        prompts = last_user.to_pylist()
        instructions = instruction.to_pylist()
        placeholder = np.zeros(n, bool)
        non_answer = np.zeros(n, bool)
        for i, (value, prompt, whole) in enumerate(zip(responses, prompts, instructions)):
            bare = value.strip()
            placeholder[i] = self._is_placeholder(bare, whole)
            non_answer[i] = bool(_ACK.match(bare)) and not _YES_NO_QUESTION.search(prompt)

        # Per assistant turn: a multi-turn chat (or a tool call and its answer) repeats its
        # structure from turn to turn on purpose; a loop is inside one turn.
        turns, row = _assistant_turns(messages)
        words = np.zeros(n, np.int64)
        repeated = np.zeros(n)
        top = np.full((n, len(TOP_NGRAMS)), np.nan)
        dup = np.full((n, len(DUP_NGRAMS)), np.nan)
        unbalanced = np.zeros(n, np.int64)
        truncated = np.zeros(n, bool)
        mojibake = np.zeros(n, np.int64)
        last = np.full(n, -1)
        last[row] = np.arange(len(row))  # the last assistant turn of each row
        for j, (value, i) in enumerate(zip(turns, row)):
            words[i] += len(tokens(value))
            lines, top_j, dup_j = repetition(value, self.min_words, self.min_top_ngram_words)
            repeated[i] = max(repeated[i], lines)
            top[i] = np.fmax(top[i], top_j)
            dup[i] = np.fmax(dup[i], dup_j)
            unbalanced[i] += unbalanced_count(value)
            mojibake[i] += len(_MOJIBAKE.findall(value))
            if last[i] == j:
                truncated[i] = is_truncated(value, self.min_words)

        columns: dict[str, Any] = {
            "chars": chars,
            "words": words,
            "empty": chars == 0,
            "placeholder": placeholder,
            "non_answer": non_answer,
            "instruction_copy": copy,
            "repeated_lines": repeated,
            **{f"top_{k}gram": top[:, j] for j, k in enumerate(TOP_NGRAMS)},
            **{f"duplicate_{k}gram": dup[:, j] for j, k in enumerate(DUP_NGRAMS)},
            "alpha": alpha,
            "symbols": symbol_share,
            "url_markup": url_markup,
            "unbalanced": unbalanced,
            "truncated": truncated,
            "mojibake": mojibake,
        }
        columns["score"] = self._score(columns)
        arrays = [
            pa.array(columns[f.name], f.type, from_pandas=True) for f in FIELDS
        ]  # from_pandas: NaN → null (not measured)
        quality = pa.StructArray.from_arrays(arrays, fields=list(FIELDS))
        if COLUMN in batch.column_names:
            batch = batch.drop_columns([COLUMN])
        return batch.append_column(COLUMN, quality)

    def _is_placeholder(self, bare: str, instruction: str) -> bool:
        if not self.placeholder and not self.template_placeholders:
            return False
        if self.placeholder:
            key = bare.lower().rstrip(".").strip() or bare
            if key in PLACEHOLDERS:
                return True
            prose = re.sub(_CODE, "", bare) if "`" in bare else bare
            if _LOREM.search(prose) and not _LOREM.search(instruction):
                return True
        return self.template_placeholders and bool(_TEMPLATE.search(bare))

    def _limits(self) -> list[tuple[str, float]]:
        """(field, max) for every fraction heuristic that is on."""
        limits: list[tuple[str, float]] = []
        if self.max_repeated_line_fraction is not None:
            limits.append(("repeated_lines", self.max_repeated_line_fraction))
        if self.max_top_ngram_fraction is not None:
            limits += [(f"top_{k}gram", t) for k, t in zip(TOP_NGRAMS, self.max_top_ngram_fraction)]
        if self.max_duplicate_ngram_fraction is not None:
            limits += [(f"duplicate_{k}gram", t) for k, t in zip(DUP_NGRAMS, self.max_duplicate_ngram_fraction)]
        if self.max_symbol_fraction is not None:
            limits.append(("symbols", self.max_symbol_fraction))
        if self.max_url_markup_fraction is not None:
            limits.append(("url_markup", self.max_url_markup_fraction))
        return limits

    def _flags(self, columns: dict[str, Any]) -> list[tuple[str, np.ndarray]]:
        """(heuristic, fires) for every yes/no heuristic that is on, in order of priority."""
        flags = []
        if self.empty:
            flags.append(("empty", np.asarray(columns["empty"], bool)))
        if self.placeholder or self.template_placeholders:
            flags.append(("placeholder", np.asarray(columns["placeholder"], bool)))
        if self.non_answer:
            flags.append(("non_answer", np.asarray(columns["non_answer"], bool)))
        if self.mojibake:
            flags.append(("mojibake", np.asarray(columns["mojibake"]) > 0))
        if self.max_instruction_copy is not None:
            flags.append(("instruction_copy", self._copies(columns)))
        if self.unbalanced:
            flags.append(("unbalanced", np.asarray(columns["unbalanced"]) > 0))
        if self.truncated:
            flags.append(("truncated", np.asarray(columns["truncated"], bool)))
        return flags

    def _copies(self, columns: dict[str, Any]) -> np.ndarray:
        copy = np.nan_to_num(np.asarray(columns["instruction_copy"], np.float64))
        words = np.asarray(columns["words"])
        limit = self.max_instruction_copy if self.max_instruction_copy is not None else 1.0
        return (copy >= 1.0) & (words > 0) | (copy > limit) & (words >= self.min_copy_words)

    def _score(self, columns: dict[str, Any]) -> np.ndarray:
        n = len(columns["chars"])
        penalty = np.zeros(n)
        for name, limit in self._limits():
            values = np.nan_to_num(np.asarray(columns[name], np.float64))
            ratio = values / limit if limit > 0 else np.where(values > 0, np.inf, 0.0)
            penalty = np.maximum(penalty, np.minimum(ratio / 2, 1.0))
        for _, fires in self._flags(columns):
            penalty = np.where(fires, 1.0, penalty)
        return np.round(1.0 - penalty, 6)

    # -- reasons: decide ------------------------------------------------------------------------
    def reasons(self, batch: pa.Table) -> Verdict:
        quality = batch.column(COLUMN).combine_chunks()
        columns = {f.name: pc.struct_field(quality, f.name).to_numpy(zero_copy_only=False) for f in FIELDS}
        n = batch.num_rows
        reasons: list[str | None] = [None] * n
        kinds: list[str | None] = [None] * n
        response: list[str] | None = None

        def say(rows: np.ndarray, kind: str, why: Any) -> None:
            for i in np.flatnonzero(rows):
                if reasons[i] is None:
                    reasons[i] = why(i)
                    kinds[i] = kind

        def tail(i: int) -> str:
            nonlocal response
            if response is None:
                response = text.role_text(batch.column("messages"), ["assistant"]).to_pylist()
            value = response[i].strip()
            return value if len(value) <= 30 else "…" + value[-30:].lstrip()

        flags = dict(self._flags(columns))
        limits = dict(self._limits())
        if "empty" in flags:
            say(flags["empty"], "empty", lambda i: "response is empty")
        if "placeholder" in flags:
            say(flags["placeholder"], "placeholder", lambda i: f"response is a placeholder: {tail(i)!r}")
        if "non_answer" in flags:
            say(
                flags["non_answer"],
                "non-answer",
                lambda i: f"response {tail(i)!r} does not answer a prompt that is not a yes/no question",
            )
        if "mojibake" in flags:
            say(
                flags["mojibake"],
                "mojibake",
                lambda i: f"mojibake in response: {columns['mojibake'][i]} mis-decoded sequence(s)",
            )
        if "instruction_copy" in flags:
            say(
                flags["instruction_copy"],
                "instruction copy",
                lambda i: (
                    "response repeats the instruction"
                    if columns["instruction_copy"][i] >= 1
                    else f"response is copied from the instruction: {columns['instruction_copy'][i]:.0%} of it "
                    f"(max {self.max_instruction_copy:.0%})"
                ),
            )
        top = "response repeats a {}-gram: {{:.0%}} of characters in its most frequent one (max {{:.0%}})"
        dup = "response repeats itself: {{:.0%}} of characters in duplicate {}-grams (max {{:.0%}})"
        repetition = [
            ("repeated_lines", "response repeats lines: {:.0%} of characters in duplicate lines (max {:.0%})"),
            *[(f"top_{k}gram", top.format(k)) for k in TOP_NGRAMS],
            *[(f"duplicate_{k}gram", dup.format(k)) for k in DUP_NGRAMS],
        ]
        for name, message in repetition:
            if name in limits:
                self._over(columns, name, limits[name], "repetition", message, say)
        if "symbols" in limits:
            message = "response is mostly symbols: {:.0%} of non-space characters (max {:.0%})"
            self._over(columns, "symbols", limits["symbols"], "symbols", message, say)
        if "url_markup" in limits:
            message = "response is mostly URLs or markup: {:.0%} of characters (max {:.0%})"
            self._over(columns, "url_markup", limits["url_markup"], "markup", message, say)
        if "unbalanced" in flags:
            say(
                flags["unbalanced"],
                "unbalanced",
                lambda i: f"response has {columns['unbalanced'][i]} unclosed code fence(s) or bracket(s)",
            )
        if "truncated" in flags:
            say(flags["truncated"], "truncated", lambda i: f"response ends mid-sentence: {tail(i)!r}")
        return Verdict(pa.array(reasons, pa.string()), pa.array(kinds, pa.string()))

    @staticmethod
    def _over(columns: dict[str, Any], name: str, limit: float, kind: str, message: str, say: Any) -> None:
        values = np.asarray(columns[name], np.float64)
        with np.errstate(invalid="ignore"):
            over = np.nan_to_num(values, nan=-1.0) > limit
        say(over, kind, lambda i: message.format(values[i], limit))

    # -- fix_text -------------------------------------------------------------------------------
    def _fix(self, batch: pa.Table) -> pa.Table:
        fix = _ftfy().fix_encoding

        def repair(_role: pa.Array, content: pa.Array) -> pa.Array:
            suspect = pc.match_substring_regex(content, _MOJIBAKE.pattern).to_numpy(zero_copy_only=False)
            if not suspect.any():
                return content
            values = content.to_pylist()
            for i in np.flatnonzero(suspect):
                values[i] = fix(values[i])
            return pa.array(values, pa.string())

        messages = text.map_contents(batch.column("messages"), repair)
        index = batch.column_names.index("messages")
        return batch.set_column(
            index, batch.schema.field("messages"), messages.cast(batch.schema.field("messages").type)
        )


def _ftfy() -> Any:
    try:
        import ftfy
    except ImportError:
        raise MissingDependencyError("ftfy", purpose="quality: {fix_text: true}") from None
    return ftfy


def _last_user_turn(messages: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The last user turn of each row ("" if none): the question a bare "Yes." answers."""
    if isinstance(messages, pa.ChunkedArray):
        messages = messages.combine_chunks()
    out = [""] * len(messages)
    for i, turns in enumerate(messages.to_pylist()):
        for turn in reversed(turns or []):
            if turn["role"] == "user":
                out[i] = turn["content"] or ""
                break
    return pa.array(out, pa.string())


def _count(values: pa.Array, pattern: str) -> np.ndarray:
    return pc.count_substring_regex(values, pattern).to_numpy(zero_copy_only=False)


def _assistant_turns(messages: pa.Array | pa.ChunkedArray) -> tuple[list[str], np.ndarray]:
    """The content of every assistant turn, and the row each belongs to."""
    if isinstance(messages, pa.ChunkedArray):
        messages = messages.combine_chunks()
    flat = pc.list_flatten(messages)
    rows = pc.list_parent_indices(messages).to_numpy(zero_copy_only=False)
    keep = pc.fill_null(pc.equal(flat.field("role"), "assistant"), False)
    contents = pc.fill_null(flat.field("content").filter(keep), "").to_pylist()
    return contents, rows[keep.to_numpy(zero_copy_only=False)]


def _instruction_copy(response: pa.Array, instruction: pa.Array) -> np.ndarray:
    """Length of the normalized response over that of the normalized instruction when the
    response is contained in it, else 0 (1.0: the response is the whole instruction)."""
    resp = text.normalize(response).to_pylist()
    inst = text.normalize(instruction).to_pylist()
    out = np.zeros(len(resp))
    for i, (r, s) in enumerate(zip(resp, inst)):
        if r and s and r in s:
            out[i] = len(r) / len(s)
    return out
