"""Refusals, apologies and AI-disclaimer boilerplate in the response.

A refusal of a harmless request ("As an AI language model, I cannot write poems…") teaches a
model to refuse; it is the most common boilerplate in distilled instruction data. The stage
looks for phrases from an editable list at the start of each assistant turn, where a refusal
opens the answer, so "I'm sorry to hear that" deep inside a long, helpful answer is not one.

What counts, by design (checked on the real data in ``../shared/data``):

- AI disclaimers that dodge the request: "As an AI language model…", "As an AI, I don't…",
  "作为一个AI，…". An identity answer that only says what the assistant is ("I am an AI
  assistant developed by…", "As a language model, I go by the name Vicuna") is not one, so the
  bare words "as an AI" / "language model" are not phrases; a comma after "As an AI" or a
  negation after it is.
- Apologies that open a refusal ("I'm sorry, but I…", "很抱歉，我无法…"), but not "I'm sorry to
  hear that" nor an apology for a tool's result ("I'm sorry, but the website is unavailable").
- Scope refusals in tool-calling data ("I'm sorry, but I don't have the capability to book
  flights") are refusals: they match. They are also honest answers a tool-using model should
  give, so for such data prefer ``mode: tag`` and decide per source.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cached_property
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from winnow.errors import ConfigError
from winnow.stages.base import Filter, Verdict, register

#: RE2's largest counted repetition, so the largest ``within_chars``.
MAX_WITHIN = 1000

#: English building blocks of the default phrases (plain ``{a|b}`` groups).
_CANNOT = (
    "{ cannot| can't| can not|'m unable to| am unable to|'m not able to| am not able to|'m not capable of"
    "| am not capable of|'m currently unable to| am currently unable to| currently cannot| currently can't}"
)
_VERB = (
    "{help|assist|provide|fulfill|comply|answer|generate|create|perform|browse|access|book|order|complete"
    "|write|draw|display|read|see|view|process|give|determine|estimate|predict|retrieve|search|send|place"
    "|share|express|recommend|offer|have|do that|do this|physically|feel|experience|taste|smell|hear|touch}"
)
_DONT_HAVE = "{ don't have| do not have| currently don't have| currently do not have| have no}"
_LACKS = (
    "{the {ability|capability|capacity|means}|access|personal|real-time|any personal|feelings|emotions"
    "|opinions|preferences|a physical|physical}"
)
_I_AM_AI = (
    "{as an ai|as a language model|as a large language model|as an artificial intelligence|i'm an ai"
    "|i am an ai|i'm just an ai|i'm a language model|i am a language model|i'm a text-based|i am a text-based}"
)
_APOLOGY = "{{i'm|i am} sorry|i apologize|my apologies|unfortunately}, {but |}"

#: The default phrases per language. A phrase is literal text matched case-insensitively after
#: Unicode NFKC (so a full-width "，" is ","), with curly apostrophes as straight ones and runs
#: of whitespace as one space; ``{a|b|}`` offers alternatives (the empty one makes it optional)
#: and groups may nest. An apology alone ("I'm sorry, but") is not a phrase: on real data it
#: opens as many written messages ("I'm sorry, but I'm unable to come into work today") as
#: refusals, so it counts only with a refusal or an AI disclaimer after it.
DEFAULT_PHRASES: dict[str, list[str]] = {
    "en": [
        "as an ai language model",
        "as a large language model",
        "as an ai developed by openai",
        "as an ai, {i|my}",
        "as an ai{ assistant| model| chatbot| program|}{,|} i{ cannot| can't| don't| do not| am not|'m not"
        "| am unable| have no}",
        "as a language model, i{ cannot| can't| can not| don't| do not| am not|'m not| am unable| have no}",
        "as an artificial intelligence, i",
        "{i'm|i am} an ai language model",
        f"{_APOLOGY}i{_CANNOT} {_VERB}",
        f"{_APOLOGY}i{_DONT_HAVE} {_LACKS}",
        f"{_APOLOGY}{_I_AM_AI}",
        f"{_APOLOGY}{{that's|this is|that is}} not something i can",
        "i cannot fulfill",
        "i can't fulfill",
        f"i{_CANNOT} {{assist|help}} with {{that|this|your request}}",
        f"i{_CANNOT} comply with",
        f"{{i'm|i am}} {{unable|not able}} to {_VERB}",
        f"i{_DONT_HAVE} personal {{opinions|preferences|feelings|beliefs|experiences|emotions|views}}",
        f"i{_DONT_HAVE} the {{ability|capability|capacity}} to",
        f"i{_DONT_HAVE} access to {{real-time|the internet|external|current|up-to-date|personal}}",
    ],
    "zh": [
        "作为{一个|一名|}{ai|人工智能}{语言模型|模型}",
        "作为{一个|一名|}{ai|人工智能},",
        "作为{一个|一名|}{ai|人工智能}助手,我{无法|不能|没有|并不|不会|不具备}",
        "作为{一个|一名|}语言模型,",
        "我是一个{ai|人工智能}语言模型",
        "由于我是一个{ai|人工智能|语言模型}",
        "{很|非常|}{抱歉|对不起},{但|}{我|}{目前|}{无法|不能|没有办法|不会}",
        "{很|非常|}{抱歉|对不起},{但|}{我|}作为",
        "{很|非常|}{抱歉|对不起},{但|}{由于|因为}我是",
        "{很|非常|}{抱歉|对不起},我是{一个|个|}{ai|人工智能|语言|文本}",
        "我无法{回答|完成|提供|满足|执行|帮助|为您|为你}",
        "我不能{回答|完成|提供|满足|执行|帮助|为您|为你}",
    ],
    "de": [
        "als ki-sprachmodell",
        "als ein ki-sprachmodell",
        "als künstliche intelligenz {kann|habe} ich",
        "als ki {kann|habe} ich",
        "es tut mir leid, aber ich {kann|habe}",
        "ich kann ihnen dabei nicht helfen",
    ],
    "fr": [
        "en tant qu'ia",
        "en tant que modèle de langage",
        "en tant qu'intelligence artificielle",
        "je suis désolé, mais je ne peux pas",
        "je suis désolée, mais je ne peux pas",
        "je ne peux pas vous aider",
    ],
    "es": [
        "como modelo de lenguaje",
        "como una ia",
        "como ia, no",
        "como inteligencia artificial, no",
        "lo siento, pero no puedo",
        "no puedo ayudarte con eso",
    ],
}
LANGUAGES = tuple(DEFAULT_PHRASES)

_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'", "`": "'"})


def normalize_phrase(phrase: str) -> str:
    """A phrase the way the text is normalized before matching."""
    phrase = unicodedata.normalize("NFKC", phrase).lower().translate(_APOSTROPHES)
    return re.sub(r"\s+", " ", phrase).strip()


def _normalize_text(values: pa.Array) -> pa.Array:
    values = pc.utf8_lower(pc.utf8_normalize(values, form="NFKC"))
    values = pc.replace_substring_regex(values, pattern="[’‘ʼ`]", replacement="'")
    return pc.replace_substring_regex(values, pattern=r"\s+", replacement=" ")


def phrase_regex(phrase: str) -> str:
    """RE2 for one phrase: literal text, ``{a|b}`` alternatives, word boundaries where the
    phrase starts or ends with a Latin letter or digit (CJK text has no spaces to bound)."""
    tree = _parse(normalize_phrase(phrase))
    head = r"\b" if _all_word(_edge(tree, 0)) else ""
    tail = r"\b" if _all_word(_edge(tree, -1)) else ""
    return f"{head}{_regex(tree)}{tail}"


# A parsed phrase is a sequence of characters and groups; a group is a list of sequences.
_Seq = list["str | list[_Seq]"]


def _parse(text: str) -> _Seq:
    stack: list[tuple[_Seq, list[_Seq]]] = []
    seq: _Seq = []
    for ch in text:
        if ch == "{":
            group: list[_Seq] = []
            stack.append((seq, group))
            seq = []
        elif ch == "|" and stack:
            stack[-1][1].append(seq)
            seq = []
        elif ch == "}":
            if not stack:
                raise ValueError("a '}' without its '{'")
            outer, group = stack.pop()
            group.append(seq)
            outer.append(group)
            seq = outer
        else:
            seq.append(ch)
    if stack:
        raise ValueError("a '{' without its '}'")
    return seq


def _regex(seq: _Seq) -> str:
    return "".join(
        re.escape(item) if isinstance(item, str) else "(?:" + "|".join(_regex(s) for s in item) + ")" for item in seq
    )


def _edge(seq: _Seq, end: int) -> set[str]:
    """The characters a phrase can start (end=0) or end (end=-1) with ("" if it can be empty)."""
    items = seq if end == 0 else seq[::-1]
    for i, item in enumerate(items):
        if isinstance(item, str):
            return {item}
        rest = items[i + 1 :] if end == 0 else items[i + 1 :][::-1]
        out: set[str] = set()
        for alt in item:
            chars = _edge(alt, end)
            out |= chars - {""}
            if "" in chars:
                out |= _edge(rest, end)
        return out
    return {""}


def _all_word(chars: set[str]) -> bool:
    """A boundary only where every way the phrase can start (or end) is a Latin word character:
    "{ai|人工智能}" at an edge gets none, so the Chinese choice still matches inside a sentence."""
    chars = chars - {""}
    return bool(chars) and all(_is_word(c) for c in chars)


def _is_word(ch: str) -> bool:
    return ch.isascii() and (ch.isalnum() or ch == "_")


@register
class RefusalFilter(Filter):
    """Drop (or tag) rows whose response opens with a refusal or AI-disclaimer boilerplate.

    Each assistant turn is checked on its own; the first turn that opens with a phrase decides.
    Matching is case-insensitive after Unicode NFKC normalization, with word boundaries for
    Latin-script phrases ("i cannot fulfill" does not match inside "unfulfilled"). The default
    phrases (``DEFAULT_PHRASES``: English, Chinese, a few German, French and Spanish) are plain
    text with ``{a|b}`` for alternatives, so an own list is easy to write. Identity answers ("I
    am an AI assistant developed by …") are not refusals; scope refusals in tool-calling data
    are (see the module docs).

    Args:
        phrases: the phrases to look for, replacing the defaults (null: the defaults of
            ``languages``). Literal text; ``{a|b|}`` gives alternatives, an empty one optional.
        extra_phrases: phrases added to the list (to the defaults or to ``phrases``).
        languages: which default phrase lists to use: any of en, zh, de, fr, es.
        within_chars: a phrase counts only if it begins within this many characters of the
            start of an assistant turn (null: anywhere in it; at most 1000).
        mode: ``drop`` the row, or ``tag`` it: keep every row and write the matched phrase (or
            null) into a ``refusal`` column.

    >>> stage = RefusalFilter(extra_phrases=["I’m just a bot"], within_chars=100)
    >>> stage.phrase_list()[-1]
    "i'm just a bot"
    """

    name = "refusal"

    def __init__(
        self,
        phrases: list[str] | None = None,
        extra_phrases: list[str] | None = None,
        languages: list[str] | None = None,
        within_chars: int | None = 100,
        mode: Literal["drop", "tag"] = "drop",
    ) -> None:
        languages = list(LANGUAGES) if languages is None else languages
        unknown = [lang for lang in languages if lang not in DEFAULT_PHRASES]
        if unknown:
            raise ConfigError(
                f"refusal: no default phrases for language '{unknown[0]}'; choose from "
                f"{', '.join(LANGUAGES)} or list your own under `phrases:`",
                "languages",
            )
        for key, values in (("phrases", phrases), ("extra_phrases", extra_phrases)):
            for phrase in values or []:
                if not isinstance(phrase, str) or not normalize_phrase(phrase):
                    raise ConfigError(f"refusal: `{key}` holds an empty phrase", key)
                try:
                    phrase_regex(phrase)
                except ValueError as e:
                    raise ConfigError(f"refusal: phrase {phrase!r} in `{key}`: {e}", key) from None
        if within_chars is not None and not 0 <= within_chars <= MAX_WITHIN:
            raise ConfigError(
                f"refusal: within_chars must be between 0 and {MAX_WITHIN} (or null for anywhere), got {within_chars}",
                "within_chars",
            )
        if mode not in ("drop", "tag"):
            raise ConfigError(f"refusal: mode must be drop or tag, got {mode!r}", "mode")
        self.phrases = phrases
        self.extra_phrases = extra_phrases
        self.languages = languages
        self.within_chars = within_chars
        self.mode = mode

    def phrase_list(self) -> list[str]:
        """The phrases in effect, normalized and without repeats."""
        if self.phrases is not None:
            base = list(self.phrases)
        else:
            base = [p for lang in self.languages for p in DEFAULT_PHRASES[lang]]
        return list(dict.fromkeys(normalize_phrase(p) for p in base + list(self.extra_phrases or [])))

    @cached_property
    def _patterns(self) -> tuple[str, str] | None:
        """(a test for any phrase, the same with the hit as a named group); None: no phrases."""
        phrases = self.phrase_list()
        if not phrases:
            return None
        # Longer phrases first, so the reason names the most specific one at a position.
        alternation = "|".join(phrase_regex(p) for p in sorted(phrases, key=lambda p: (-len(p), p)))
        lead = "^" + (f".{{0,{self.within_chars}}}?" if self.within_chars is not None else ".*?")
        return f"(?s){lead}(?:{alternation})", f"(?s){lead}(?P<hit>{alternation})"

    def setup(self) -> None:
        _ = self._patterns

    def matches(self, messages: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, pa.Array]:
        """Per row: the matched phrase (normalized text, or null) and the 1-based assistant turn."""
        if isinstance(messages, pa.ChunkedArray):
            messages = messages.combine_chunks()
        n = len(messages)
        hits: list[str | None] = [None] * n
        turns: list[int | None] = [None] * n
        patterns = self._patterns
        if n == 0 or patterns is None:
            return pa.array(hits, pa.string()), pa.array(turns, pa.int64())
        flat = pc.list_flatten(messages)
        parents = pc.list_parent_indices(messages).to_numpy(zero_copy_only=False)
        is_reply = pc.fill_null(pc.equal(flat.field("role"), "assistant"), False).to_numpy(zero_copy_only=False)
        content = pc.fill_null(flat.field("content"), "").filter(pa.array(is_reply))
        reply_rows = parents[is_reply]
        # The turn number of each reply within its row (1 = the first assistant turn).
        starts = np.r_[True, reply_rows[1:] != reply_rows[:-1]] if len(reply_rows) else np.zeros(0, bool)
        first = np.flatnonzero(starts)
        turn = np.arange(len(reply_rows)) - np.repeat(first, np.diff(np.r_[first, len(reply_rows)])) + 1
        norm = _normalize_text(content)
        candidate = pc.fill_null(pc.match_substring_regex(norm, patterns[0]), False)
        where = np.flatnonzero(candidate.to_numpy(zero_copy_only=False))
        if not len(where):
            return pa.array(hits, pa.string()), pa.array(turns, pa.int64())
        found = pc.extract_regex(norm.take(pa.array(where)), patterns[1]).field("hit").to_pylist()
        for i, hit in zip(where.tolist(), found):
            row = int(reply_rows[i])
            if hits[row] is None:  # the earliest matching turn of a row decides
                hits[row] = hit.strip()
                turns[row] = int(turn[i])
        return pa.array(hits, pa.string()), pa.array(turns, pa.int64())

    def annotate(self, batch: pa.Table) -> pa.Table:
        if self.mode != "tag":
            return batch
        hits, _ = self.matches(batch.column("messages"))
        if "refusal" in batch.column_names:
            return batch.set_column(batch.column_names.index("refusal"), "refusal", hits)
        return batch.append_column("refusal", hits)

    def reasons(self, batch: pa.Table) -> Verdict:
        n = batch.num_rows
        if self.mode == "tag":
            return Verdict(pa.nulls(n, pa.string()), pa.nulls(n, pa.string()))
        hits, turns = self.matches(batch.column("messages"))
        where = "at the start of" if self.within_chars is not None else "in"
        reasons = [
            None
            if hit is None
            else f'refusal: "{hit}" {where} ' + ("the response" if turn == 1 else f"assistant turn {turn}")
            for hit, turn in zip(hits.to_pylist(), turns.to_pylist())
        ]
        kinds = pc.if_else(pc.is_valid(hits), pa.scalar("refusal"), pa.scalar(None, pa.string()))
        return Verdict(pa.array(reasons, pa.string()), kinds)
