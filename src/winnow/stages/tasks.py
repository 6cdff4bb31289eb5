"""Task-type tagging: a documented taxonomy, the source's own labels mapped onto it, and
transparent rules (instruction regexes, then the shape of the response and its overlap with
the given text) for rows without a label. Also the Self-Instruct style verb–noun view of the
instructions (``root_verb``, ``root_noun``).

The taxonomy (:data:`TAXONOMY`) follows Dolly's and BELLE's classes plus the ones
instruction corpora need beside them (translation, code, math, reasoning, conversation).

How a row is tagged (``task_type`` with ``task_source`` = ``label`` or ``inferred``):

1. **Label.** With ``use_labels``, the ingested label (``task_type``, already normalized by the
   adapter: lowercase, spaces → ``_``) is looked up in :data:`LABEL_MAP` (plus ``label_map``);
   a hierarchical Super-NaturalInstructions label (``question_answering_->_...``) is also looked
   up by its first part. A label that is a taxonomy class maps to itself. Anything else is an
   *unknown label*: the row is inferred and the stage counts ``unknown label 'x', inferred``.
2. **Conversation.** Two or more user turns → ``conversation`` (``multi_turn: first_turn``
   tags such rows by their first turn instead).
3. **Instruction rules**, in ``priority`` order (:data:`PRIORITY`): the first class one of
   whose regexes (:data:`RULES`, RE2 syntax, searched in the lowercased first user turn
   without its context) matches wins. ``brainstorming`` is not taken from a rule when the row
   has a context (a list asked *of a given text* is extraction or a summary).
4. **Shape** (``use_response``), for rows no rule placed:
   code fence or code lines in the response → ``code``; two or more numbers in the
   instruction and a quantity question → ``math``. With a context (Dolly's ``context``, Alpaca's
   ``input``, a pasted text after a blank line): a list-shaped response copied from the context
   → ``information_extraction``; a response of 3+ sentences that is mostly words of the
   context but at most half its length → ``summarization``; otherwise ``closed_qa``. Without a
   context: a list-shaped response (bullets, numbers or a short comma list) →
   ``brainstorming``; a long response (≥ 150 words or 400 CJK characters) to a request that is
   not a question → ``creative_writing``.
5. **Questions.** ``open_qa`` rules (question words, "?", explain/describe, 什么/为什么/吗…).
6. Anything left → ``other``.

Chinese cues are in the same regex lists (总结/摘要, 翻译, 分类, 提取/抽取, 改写/重写, 写一首…).
The regexes, the label table and the order are stage parameters, so a pipeline can add a
class (``rules: {legal: ["\\bcontract\\b", "合同"]}``) or a label without touching code.
"""

from __future__ import annotations

import collections
import json
import logging
import re
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from winnow import schema
from winnow.errors import ConfigError
from winnow.stages.base import Mapper, Outcome, register

log = logging.getLogger(__name__)

#: The classes and what each one means.
TAXONOMY: dict[str, str] = {
    "open_qa": "a question answered from general knowledge (no reference text given)",
    "closed_qa": "a question answered from a reference text given with it",
    "brainstorming": "ideas, suggestions, tips or a list of items for an open request",
    "classification": "putting items or a text into given classes (sentiment, which of…, A or B)",
    "information_extraction": "pulling facts, names, dates or lists out of a given text",
    "summarization": "a shorter account of a given text (summary, key points, TL;DR, a title)",
    "creative_writing": "stories, poems, essays, letters, posts, scenes, role play",
    "rewriting": "the same content in another form: paraphrase, edit, correct, change tone or tense",
    "translation": "the same content in another language",
    "code": "writing, explaining, fixing or converting program code, SQL, regexes",
    "math": "arithmetic, word problems, equations",
    "reasoning": "logic puzzles, riddles, commonsense or step-by-step inference",
    "conversation": "a multi-turn chat (two or more user turns)",
    "other": "what no rule places (greetings, empty or unclear instructions)",
}

#: Source labels (normalized by ingest) → taxonomy class. Dolly, BELLE, MT-bench,
#: Super-NaturalInstructions, Alpaca-CoT/FLAN-style names. Labels that name no task
#: (NI's ``answer_generation``) are left out on purpose: those rows are inferred.
LABEL_MAP: dict[str, str] = {
    # Dolly
    "general_qa": "open_qa",
    "open_qa": "open_qa",
    "closed_qa": "closed_qa",
    "brainstorming": "brainstorming",
    "classification": "classification",
    "information_extraction": "information_extraction",
    "summarization": "summarization",
    "creative_writing": "creative_writing",
    # BELLE
    "generation": "creative_writing",
    "rewrite": "rewriting",
    "extract": "information_extraction",
    "math": "math",
    "code": "code",
    # MT-bench
    "writing": "creative_writing",
    "roleplay": "creative_writing",
    "reasoning": "reasoning",
    "coding": "code",
    "extraction": "information_extraction",
    "stem": "open_qa",
    "humanities": "open_qa",
    # Super-NaturalInstructions (first part of hierarchical labels) and common synonyms
    "sentiment_analysis": "classification",
    "text_categorization": "classification",
    "toxic_language_detection": "classification",
    "textual_entailment": "classification",
    "text_to_code": "code",
    "code_to_text": "code",
    "program_execution": "code",
    "translation": "translation",
    "question_answering": "open_qa",
    "arithmetic": "math",
    "mathematics": "math",
    "commonsense_reasoning": "reasoning",
    "title_generation": "summarization",
    "paraphrasing": "rewriting",
    "grammar_error_correction": "rewriting",
    "text_simplification": "rewriting",
    "story_composition": "creative_writing",
    "poem_generation": "creative_writing",
    "brainstorm": "brainstorming",
    "chat": "conversation",
    "dialogue": "conversation",
    "multi_turn": "conversation",
}

# Fragments shared by several rules.
_LANGS = (
    "english|french|german|spanish|italian|portuguese|dutch|russian|chinese|mandarin|cantonese|"
    "japanese|korean|arabic|hindi|turkish|polish|swedish|greek|hebrew|latin|vietnamese|thai|"
    "indonesian|ukrainian|czech|danish|finnish|norwegian|persian|urdu|bengali|swahili"
)
_NUM = r"(?:\d+|one|two|three|four|five|six|seven|eight|nine|ten|a few|some|several|a couple of)"
_TEXT = (
    r"(?:passage|text|paragraph|article|reference|document|excerpt|context|story|conversation|dialogue|email|review)"
)
_ZH_NUM = r"[0-9一二三四五六七八九十几两]"

#: Instruction regexes per class (RE2 syntax, matched against the lowercased first user turn
#: without its context). Checked in :data:`PRIORITY` order; the first class that matches wins.
RULES: dict[str, list[str]] = {
    "translation": [
        r"\btranslat",
        rf"\b(?:into|to) (?:{_LANGS})\b[^.?!]{{0,20}}[:.?]?\s*$",
        rf"\bhow (?:do|would|can) (?:you|i|we) say\b.*\bin (?:{_LANGS})\b",
        r"翻译|译成|译为|翻成|英译中|中译英|译文",
    ],
    "code": [
        r"```",
        r"\b(?:python|javascript|typescript|java|c\+\+|c#|golang|rust|ruby|php|kotlin|sql|html|css|bash|"
        r"powershell|regex|regular expression|json schema|numpy|pandas|react|node\.js|api endpoint)\b",
        r"\b(?:code|coding|snippet|function|program|script|algorithm|class|method|query|compiler|"
        r"unit tests?)\b[^.?!]{0,40}\b(?:that|which|to|for|in|takes?|returns?)\b",
        r"\b(?:write|implement|debug|refactor|optimi[sz]e|fix|explain|comment|convert) (?:a |an |the |this |"
        r"following |my )?(?:\w+ ){0,2}(?:code|function|program|script|class|method|query|snippet|algorithm)\b",
        r"\bdef \w+\(|#include|console\.log|\bselect .+ from\b|public static",
        r"代码|编程|程序|脚本|sql|(?:编写|写|实现|定义|调用).{0,12}函数|算法",
    ],
    "math": [
        r"\d+(?:\.\d+)?\s*(?:[-+*/×÷^=]|\bplus\b|\bminus\b|\btimes\b|divided by)\s*\(?\d",
        r"\b(?:calculate|compute) (?:the|a|an|for|how|what|this|these|following|x|y)\b",
        r"\bsolve (?:for|x|y|(?:the|this|these|following) (?:\w+ )?(?:equations?|problems?|system|inequalit(?:y|ies)|sums?))\b",  # noqa: E501
        r"\b(?:simplify the expression|equations?|derivative|integral|addition|subtraction|multiplication|"
        r"probability|arithmetic|remainder|sum of|product of|square root|percent(?:age)?)\b",
        r"计算|求解|方程|等于多少|面积|周长|体积|平均数|百分之|概率|几分之几|数学",
    ],
    "summarization": [
        r"summar|\btl;?dr\b|\bsynops[ie]s\b|\babstract\b",
        r"\bkey (?:points|takeaways|ideas)\b|\bmain (?:points?|ideas?|arguments?)\b|\bgist\b",
        r"\b(?:condense|shorten|boil down|recap)\b",
        r"\b(?:headline|title)s?\b[^.?!]{0,20}\b(?:for|of)\b",
        r"总结|摘要|概括|归纳|概述|主旨|标题|压缩成|缩写|要点",
    ],
    "rewriting": [
        r"\b(?:rewrite|re-write|rephrase|paraphrase|reword|restate|proofread|edit|revise|polish)\b",
        r"\b(?:correct|fix) (?:the |any |all |this |these )?(?:grammar|grammatical|spelling|punctuation|errors?|mistakes?|typos?)\b",  # noqa: E501
        r"\b(?:change|convert|turn|transform|put)\b[^.?!]{0,40}\b(?:tense|voice|tone|formal|informal|"
        r"passive|active|plural|singular|first person|third person|bullet points)\b",
        r"\bmake (?:it|this|the (?:\w+ )?(?:sentence|text|paragraph)) (?:more|less|shorter|longer|sound)\b",
        r"\b(?:simplify|shorten) (?:the|this|these|following)\b|\bin your own words\b|\bsynonyms? for\b",
        r"改写|重写|重述|扩写|改成|改为|润色|修改|替换|同义词|换一种|转换成|纠正|语法错误|改正|修正",
    ],
    "information_extraction": [
        r"\bextract|\bpull out\b|\bpick out\b",
        rf"\b(?:list|find|identify|name|give|tell me|highlight)\b[^.?!]{{0,80}}\b(?:mentioned|from the {_TEXT}|in the {_TEXT}|from this {_TEXT}|in this {_TEXT})",  # noqa: E501
        r"\bcomma[- ]separated\b|\bin the format\b|\bas a (?:json|table)\b",
        rf"^(?:from|using|based on|given) (?:the|this) (?:\w+ )?{_TEXT}\b[^.?!]{{0,20}}\b(?:list|extract|find|identify|name)\b",  # noqa: E501
        r"提取|抽取|找出|找到.{0,6}(?:关键|名词|人名|地名|日期|数字|词)|关键词|关键信息|实体",
    ],
    "classification": [
        r"\bclassif|\bcategori[sz]|\bsentiment\b|\bspam\b",
        r"\b(?:sort|group|separate|divide|label|bucket)\b[^.?!]{0,40}\b(?:into|as|by|based on|according to|whether)\b",
        r"\b(?:tell me|identify|determine|decide|say|state|indicate|pick|choose|check) (?:if|whether|which)\b",
        r"\bwhich (?:one|ones|is|are|of (?:the|these|those)(?: following)?)\b[^.?!]*\b(?:or|and which)\b",
        r"^which (?:is|are|one is) (?:a |an )?[^?]{1,40}\?\s*[^.?!]{1,60}\bor\b",
        r"^which\b[^:?]{1,80}[:?]\s*[^,]+(?:,[^,]+){2,}",
        r"\bbelongs? to\b[^.?!]*\bor\b",
        r"\bwhich (?:of (?:the|these) )?(?:\w+ )*?(?:is|are)\b[^?]*[?:][^.?!]*,",
        r"\b(?:is|are) (?:the following|these|this|it) (?:\w+ )?(?:a |an )?[\w-]+ or\b",
        r"\b(?:positive|negative|neutral)\b.*\bor\b|\bodd one out\b|\bdoes not belong\b|\bdifferent from the rest\b",
        r"分类|归类|归为|分为.{0,6}(?:组|类)|分成.{0,6}(?:组|类)|属于哪|情感|正面|负面|垃圾邮件|类别|判断.{0,30}(?:是否|还是|属于|类型)",
    ],
    "creative_writing": [
        r"\b(?:write|compose|draft|create|craft|pen|generate|make up|invent|come up with)\b[^.?!]{0,30}\b(?:story|stories|poem|haiku|"  # noqa: E501
        r"limerick|sonnet|song|lyrics|essay|letter|e-?mail|speech|scene|script|dialog(?:ue)?|blog|post|tweet|"
        r"article|paragraph|review|slogan|joke|toast|bio|advert|screenplay|rap|ode|fable|tale|narrative|"
        r"monologue|cover letter|product description|motto|tagline|eulogy|invitation)\b",
        r"\b(?:imagine|pretend|role-?play|act as|you are an? |in the style of|once upon a time|persona)\b",
        r"(?:写|创作|撰写|编写|编|续写|生成).{0,12}(?:诗|故事|作文|文章|小说|歌词|剧本|对联|信|文案|广告|演讲|短文|段落|博客|邮件|日记|新闻|报道|笑话)",
        r"扮演|假设你是|想象",
    ],
    "brainstorming": [
        r"\bbrainstorm|\bideas?\b|\bsuggest|\btips\b|\badvice\b|\brecommend",
        rf"\b(?:list|name|give me|provide|suggest|think of|think up|come up with|what are) {_NUM}\b",
        r"\b(?:give me|provide|create|make) (?:me )?(?:a |an )?(?:bulleted |numbered |short )?list\b",
        r"\bways (?:to|of|that|i|you|we|in which)\b",
        rf"头脑风暴|建议|想法|点子|创意|列出|列举|提出{_ZH_NUM}|(?:给出|提供|想出).{{0,4}}{_ZH_NUM}(?:个|条|种|点)|有哪些(?:方法|方式|途径|建议|技巧)",
    ],
    "reasoning": [
        r"\b(?:riddle|puzzle|logic(?:al)?|deduce|infer|reasoning|step by step|true, false,? or uncertain|commonsense|common sense)\b",  # noqa: E501
        r"\b(?:brothers?|sisters?|father|mother|son|daughter) of\b.*\bwhat is the relationship\b",
        r"推理|逻辑|谜语|脑筋急转弯|谜题",
    ],
    "closed_qa": [
        rf"\b(?:given|based on|according to|using|from|in|read) (?:this|the|a|these|that) (?:\w+ ){{0,2}}{_TEXT}\b",
        r"\banswer (?:the|these|this) (?:following )?questions?\b.*\b(?:passage|text|paragraph|below)\b",
        r"根据(?:以下|下面|给定|所给|上述|这段|提供的|给出的).{0,12}(?:回答|判断|选择)|选择题|选项|以下哪",
    ],
    "open_qa": [
        r"^(?:what|who|whom|whose|when|where|why|how|which|is|are|was|were|do|does|did|can|could|should|"
        r"would|will|has|have)\b",
        r"\?\s*$|\b(?:explain|describe|define|tell me (?:about|what|why|how|who)|what is|what are)\b",
        r"什么|为什么|为何|如何|怎么|怎样|哪|谁|吗|呢|？|\?|解释|介绍|描述|回答|说明|是多少|有多少",
    ],
}

#: The order in which the instruction rules are checked (classes added by a pipeline's
#: ``rules`` go first unless ``priority`` names them). ``open_qa`` comes after the shape step.
PRIORITY: list[str] = [
    "translation",
    "code",
    "summarization",
    "rewriting",
    "information_extraction",
    "classification",
    "math",
    "creative_writing",
    "brainstorming",
    "reasoning",
    "closed_qa",
    "open_qa",
]
#: Classes checked only after the shape step (they are fallbacks for questions).
_LATE = ("open_qa",)
#: Classes whose rules do not apply to rows with a context.
_CONTEXT_FREE = ("brainstorming",)

#: The columns the stage writes besides ``task_type``.
COLUMNS = ("task_source", "task_label", "root_verb", "root_noun")

# -- shape thresholds (documented in the module docstring) ---------------------------------------
_LONG_WORDS = 150  # a long response (words; a CJK character counts 1/3 word, ~400 chars)
_SHORT_ANSWER = 30  # a short answer (tokens)
_CODE_RESPONSE = (
    r"```|(?m)^\s*(?:def |class \w+[:(]|import \w|from \w+ import|#include|public (?:static |class )|"
    r"function \w+\s*\(|const \w+ = |let \w+ = |var \w+ = |SELECT |CREATE TABLE|<\?php|<html)"
)
_LIST_LINE = r"(?m)^\s*(?:[-*•·]|\d{1,2}[.)、]|[a-z][.)]|[（(]\d+[)）])\s*\S"
_QUANTITY = r"\bhow (?:many|much|long|far|old)\b|\bwhat (?:is|was|will be) the (?:total|sum|average|area|value|cost|price|difference|ratio)\b|\bfind (?:the )?(?:value|x)\b|多少|几(?:个|天|人|元|米|岁|次|小时|分钟|倍)|求"  # noqa: E501
_QUESTION_START = (
    r"^(?:what|who|whom|whose|when|where|why|how|which|is|are|was|were|do|does|did|can|could|should|"
    r"would|will|has|have)\b|\?\s*$|？\s*$|吗|什么|为什么|如何|怎么|哪"
)
#: A definitional question or request about one thing ("What is X?", "Tell me about X").
_ABOUT = (
    r"^(?:(?:can you |could you |please )?(?:tell me (?:something |more )?about|describe|explain)\b"
    r"|(?:what|who|where)(?: is|'s| are| was| were)(?: an?| the)? [^,?]{1,40}\??$)"
)
#: An open request (opinions, options): a list answering it is brainstorming.
_OPEN_REQUEST = (
    r"\b(?:best|good|great|favou?rite|some|ideas?|ways?|things|tips|reasons|examples|should|recommend|"
    r"top \d+|\d+ (?:\w+ )?(?:things|ways|ideas|reasons|examples))\b|建议|方法|哪些|一些"
)
_STOP = frozenset(
    "the a an and or of to in on at for with by from as is are was were be been it its this that these "
    "those he she they we you i his her their our your not no but if so than then there which who what "
    "when where how also can will would has have had do does did into over about after before".split()
)


def _alternation(patterns: Sequence[str]) -> str:
    return "|".join(f"(?:{p})" for p in patterns)


def _check_regex(pattern: str, key: str) -> None:
    try:
        pc.match_substring_regex(pa.array([""], pa.string()), pattern)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise ConfigError(f"{key}: invalid regex {pattern!r} (RE2 syntax, no look-arounds): {e}", key) from None


# -- vectorized helpers ---------------------------------------------------------------------------


def _combine(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _first_content(messages: pa.Array, role: str) -> pa.Array:
    """The first message of ``role`` in each row ("" when there is none)."""
    n = len(messages)
    flat = pc.list_flatten(messages)
    parents = pc.list_parent_indices(messages).to_numpy(zero_copy_only=False)
    is_role = pc.fill_null(pc.equal(flat.field("role"), role), False).to_numpy(zero_copy_only=False)
    idx = np.nonzero(is_role)[0]
    first = np.full(n, -1, np.int64)
    if idx.size:
        rows = parents[idx]
        # the first index per row: iterate in reverse so the earliest write wins
        first[rows[::-1]] = idx[::-1]
    contents = pc.fill_null(flat.field("content"), "")
    take = pa.array(np.where(first < 0, 0, first)) if len(contents) else pa.array(np.zeros(n, np.int64))
    out = contents.take(take) if len(contents) else pa.array([""] * n, pa.string())
    return pc.if_else(pa.array(first >= 0), out, "")


def _role_count(messages: pa.Array, role: str) -> np.ndarray:
    parents = pc.list_parent_indices(messages).to_numpy(zero_copy_only=False)
    is_role = pc.fill_null(pc.equal(pc.list_flatten(messages).field("role"), role), False)
    return np.bincount(parents[is_role.to_numpy(zero_copy_only=False)], minlength=len(messages))


def _meta_context(meta: pa.Array, user: pa.Array) -> list[str | None]:
    """The row's given text from meta (Dolly ``context``, Alpaca/NI ``input``, Self-Instruct
    ``instance.input``) when the user message ends with it; None where there is none."""
    out: list[str | None] = [None] * len(meta)
    has = pc.fill_null(pc.match_substring_regex(meta, r'"(?:context|input)"'), False)
    for i in np.nonzero(has.to_numpy(zero_copy_only=False))[0]:
        try:
            m = json.loads(meta[i].as_py())
        except (TypeError, ValueError):
            continue
        if not isinstance(m, dict):
            continue
        inst = m.get("instance")
        for ctx in (m.get("context"), m.get("input"), inst.get("input") if isinstance(inst, dict) else None):
            if isinstance(ctx, str) and ctx.strip():
                text = user[i].as_py() or ""
                if text.endswith(ctx) and len(text) > len(ctx):
                    out[i] = ctx
                    break
    return out


def split_context(user: pa.Array, meta: pa.Array | None = None) -> tuple[pa.Array, pa.Array]:
    """Split each user message into (instruction, context).

    The context is the given text an adapter joined after the instruction (found through meta),
    or else the part after the first blank line when it is at least 40 characters long and
    the part before it is at most 400 (a pasted text). No context gives "".
    """
    # a blank line appended first, so every row splits into exactly two parts
    parts = pc.split_pattern(pc.binary_join_element_wise(user, "", "\n\n"), "\n\n", max_splits=1)
    head = pc.list_element(parts, 0)
    tail = pc.utf8_rtrim_whitespace(pc.list_element(parts, 1))
    pasted = pc.and_(
        pc.greater_equal(pc.utf8_length(pc.utf8_trim_whitespace(tail)), 40),
        pc.less_equal(pc.utf8_length(head), 400),
    )
    instr = pc.if_else(pasted, head, user)
    ctx = pc.if_else(pasted, tail, "")
    if meta is not None and len(meta):
        found = _meta_context(meta, user)
        if any(c is not None for c in found):
            users = user.to_pylist()
            mask = pa.array([c is not None for c in found])
            instr_m = pa.array(
                [u[: len(u) - len(c)].rstrip() if c is not None else "" for u, c in zip(users, found)], pa.string()
            )
            instr = pc.if_else(mask, instr_m, instr)
            ctx = pc.if_else(mask, pa.array([c or "" for c in found], pa.string()), ctx)
    return _combine(instr), _combine(ctx)


def _tokens(text: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Content tokens (lowercased words of 3+ letters that are not stop words, and single CJK
    characters) with the row each comes from."""
    t = pc.utf8_lower(text)
    t = pc.replace_substring_regex(t, r"([\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}])", r" \1 ")
    words = pc.split_pattern_regex(t, r"[^\p{L}\p{N}]+")
    flat = pc.list_flatten(words)
    parents = pc.list_parent_indices(words).to_numpy(zero_copy_only=False)
    cjk = pc.match_substring_regex(flat, r"^[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]$")
    keep = pc.or_(
        pc.and_(pc.greater_equal(pc.utf8_length(flat), 3), pc.invert(pc.is_in(flat, pa.array(sorted(_STOP))))),
        cjk,
    )
    keep_np = pc.fill_null(keep, False).to_numpy(zero_copy_only=False)
    return flat.filter(pa.array(keep_np)), parents[keep_np]


def overlap(response: pa.Array, context: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: the share of the response's content tokens found in the context, and the
    token counts of both (vectorized: tokens are keyed by row and looked up in one hash set)."""
    n = len(response)
    r_tok, r_par = _tokens(response)
    c_tok, c_par = _tokens(context)
    r_n = np.bincount(r_par, minlength=n)
    c_n = np.bincount(c_par, minlength=n)
    if not len(r_tok) or not len(c_tok):
        return np.zeros(n), r_n, c_n
    r_key = pc.binary_join_element_wise(pa.array(r_par).cast(pa.string()), r_tok, "\x00")
    c_key = pc.binary_join_element_wise(pa.array(c_par).cast(pa.string()), c_tok, "\x00")
    hit = pc.fill_null(pc.is_in(r_key, value_set=pc.unique(c_key)), False).to_numpy(zero_copy_only=False)
    hits = np.bincount(r_par[hit], minlength=n)
    return np.divide(hits, r_n, out=np.zeros(n), where=r_n > 0), r_n, c_n


def _match(text: pa.Array, pattern: str) -> np.ndarray:
    return pc.fill_null(pc.match_substring_regex(text, pattern), False).to_numpy(zero_copy_only=False)


def _count(text: pa.Array, pattern: str) -> np.ndarray:
    return pc.count_substring_regex(text, pattern).to_numpy(zero_copy_only=False)


# -- verb–noun ------------------------------------------------------------------------------------

#: Imperative verbs an instruction starts with (base forms; British spellings included).
VERBS = frozenset(
    """
    add adapt analyse analyze answer apply arrange ask assess assign brainstorm build calculate categorise
    categorize change check choose cite clarify classify combine compare compile complete compose compute
    condense construct convert correct count craft create critique debug decide define delete derive describe
    design detect determine develop devise diagnose discuss divide draft draw edit elaborate eliminate
    emphasize estimate evaluate examine expand explain explore express extract fill find finish fix format
    formulate generate give group guess help highlight identify illustrate imagine implement improve indicate
    infer insert interpret invent label list locate make map match mention merge modify name note offer
    optimize order organize outline paraphrase pick plan point predict prepare present produce proofread
    propose prove provide put rank rate read recommend reformat remove rename reorder rephrase replace report resolve
    rewrite reword say schedule score search select separate share shorten show simplify solve sort specify
    split state suggest summarise summarize supply take teach tell think transform translate turn underline
    update use verify write
    """.split()
)
#: Words skipped before the verb (politeness and framing).
_LEAD = (
    r"(?:(?:please|kindly|now|then|also|first|next|finally|ok|okay|hey|hi|so|just|briefly|quickly|carefully)[,!.]?\s+|"
    r"(?:can|could|would|will) you(?: please)?\s+|i (?:want|need|would like) you to\s+|"
    r"(?:help me|let's|lets|let us|try to|you (?:should|need to|must|will))\s+)*"
)
#: Words skipped between the verb and its object: determiners, numbers, pronoun objects and
#: common adjectives (a transparent stand-in for a parser's ``dobj``).
_SKIP = frozenset(
    """
    a an the this that these those some any each every all another other few several many more most
    one two three four five six seven eight nine ten twenty hundred first second third last next
    me us him her them it my our your his their its
    short brief long new good great creative simple detailed concise interesting funny catchy
    possible main key different similar best better top unique original following given above below
    appropriate suitable potential common popular famous random relevant specific single whole entire
    complete proper correct incorrect right wrong valid sample basic quick fun engaging persuasive formal
    informal provided mentioned existing
    """.split()
)
#: Words that end the search: the verb has no noun object (``tell me about…``, ``explain how…``).
_NOT_NOUN = frozenset(
    """
    about how why what when where who whom which whether if that to for of in on at by with from into as
    and or but than up out down over off so not
    """.split()
)


def _lemma_noun(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ches", "shes", "sses", "xes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def verb_noun_pairs(texts: Iterable[str | None] | pa.Array) -> list[tuple[str, str] | None]:
    """The root verb and its direct-object noun of each imperative instruction, as in the
    Self-Instruct paper's verb–noun view; None where the instruction does not start with a
    known verb (questions, statements) or the verb has no noun object.

    A lexicon heuristic, no parser: optional politeness words ("please", "can you"), a verb
    from :data:`VERBS`, then the first word after determiners, numbers, object pronouns and
    common adjectives (:data:`_SKIP`), singularized. The regex runs over all rows at once.

    >>> verb_noun_pairs(["Write a short story about a dragon.", "Please give me three tips.", "What is AI?"])
    [('write', 'story'), ('give', 'tip'), None]
    """
    arr = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(list(texts), pa.string())
    arr = _combine(arr)
    verbs, nouns = _verb_noun_arrays(arr)
    return [(v, n) if v is not None and n is not None else None for v, n in zip(verbs.to_pylist(), nouns.to_pylist())]


def _verb_noun_arrays(text: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(verb, noun) arrays; the verb is null when no known verb leads, the noun when none follows."""
    t = pc.utf8_lower(pc.fill_null(text, ""))
    t = pc.utf8_trim_whitespace(pc.replace_substring_regex(t, r"\s+", " "))
    verbs = "|".join(sorted(VERBS, key=len, reverse=True))
    skip = "|".join(sorted(_SKIP, key=len, reverse=True))
    pattern = (
        rf"^[\W_]*{_LEAD}(?P<verb>{verbs})\b[\s,:]*"
        rf"(?:(?:{skip}|\d+|\w+-[\w-]+|\w+(?:ful|ous|ive|ic|ical|less|able|ible))\b[\s,]+)*"
        r"(?P<noun>[a-z][a-z-]*)?"
    )
    m = pc.extract_regex(t, pattern)
    verb = m.field("verb")
    noun = m.field("noun")
    ok = pc.fill_null(pc.not_equal(verb, ""), False)
    verb = pc.if_else(ok, verb, pa.scalar(None, pa.string()))
    bad = pc.or_(pc.is_in(noun, pa.array(sorted(_NOT_NOUN))), pc.equal(noun, ""))
    noun = pc.if_else(pc.or_(pc.fill_null(bad, True), pc.invert(ok)), pa.scalar(None, pa.string()), noun)
    lemmas = pa.array([None if w is None else _lemma_noun(w) for w in noun.to_pylist()], pa.string())
    return _combine(verb), lemmas


def verb_noun_table(texts: Iterable[str | None] | pa.Array, top_verbs: int = 20, top_nouns: int = 4) -> pa.Table:
    """The most common root verbs and, for each, its most common object nouns: a table of
    ``verb``, ``noun``, ``count`` (the data behind a Self-Instruct style sunburst), sorted by
    the verb's total count, then the pair's count.

    >>> verb_noun_table(["Write a poem.", "Write a story.", "Write a poem about rain."]).to_pylist()[0]
    {'verb': 'write', 'noun': 'poem', 'count': 2}
    """
    pairs = [p for p in verb_noun_pairs(texts) if p is not None]
    by_verb = collections.Counter(v for v, _ in pairs)
    by_pair = collections.Counter(pairs)
    rows: list[dict[str, Any]] = []
    for verb, _ in sorted(by_verb.items(), key=lambda kv: (-kv[1], kv[0]))[:top_verbs]:
        nouns = sorted(((n, c) for (v, n), c in by_pair.items() if v == verb), key=lambda nc: (-nc[1], nc[0]))
        rows.extend({"verb": verb, "noun": n, "count": c} for n, c in nouns[:top_nouns])
    return pa.Table.from_pylist(
        rows, schema=pa.schema([("verb", pa.string()), ("noun", pa.string()), ("count", pa.int64())])
    )


# -- the stage ------------------------------------------------------------------------------------


class _Views:
    """The texts the rules look at, computed once per batch."""

    def __init__(self, batch: pa.Table) -> None:
        self.messages = _combine(batch.column("messages"))
        self.user = _first_content(self.messages, "user")
        self.response = _first_content(self.messages, "assistant")
        meta = _combine(batch.column("meta")) if "meta" in batch.column_names else None
        self.instr, self.ctx = split_context(self.user, meta)


@register
class TaskTypeTagger(Mapper):
    """Tag each row's task type: keep the source's label (mapped onto the taxonomy) or infer it
    from the instruction, the response's shape and its overlap with the given text.

    Writes ``task_type`` (a class of :data:`TAXONOMY` or one added through ``rules``),
    ``task_source`` (``label`` or ``inferred``), ``task_label`` (the ingested label, kept for
    audit), and ``root_verb``/``root_noun`` (Self-Instruct verb–noun, null when unknown). No
    row is removed. The rules, their order and the label table are documented in
    ``winnow.stages.tasks`` and can be extended here.

    Args:
        use_labels: keep a source label that maps onto the taxonomy; false always infers (to
            measure the rules against labeled data).
        label_map: extra or overriding entries of the label table, normalized label → class,
            e.g. ``{qa: open_qa, poetry: creative_writing}``.
        rules: extra instruction regexes per class (RE2, matched in the lowercased
            instruction); a new class name adds a class, e.g. ``{legal: ["\\bcontract", "合同"]}``.
        replace_rules: true: ``rules`` replace the built-in regexes of the classes it names
            instead of adding to them.
        priority: the order in which classes' rules are checked (classes left out keep
            their default order after the named ones); null: new classes first, then the default.
        multi_turn: ``conversation`` tags rows with two or more user turns as conversation;
            ``first_turn`` tags them by their first turn.
        use_response: use the response's shape and its overlap with the context when no
            instruction rule decides; false: instruction rules only.
        verb_noun: write ``root_verb`` and ``root_noun``.

    >>> TaskTypeTagger(rules={"legal": [r"\\bcontract\\b"]}).name
    'task_type'
    """

    name = "task_type"

    def __init__(
        self,
        use_labels: bool = True,
        label_map: dict[str, str] | None = None,
        rules: dict[str, list[str]] | None = None,
        replace_rules: bool = False,
        priority: list[str] | None = None,
        multi_turn: Literal["conversation", "first_turn"] = "conversation",
        use_response: bool = True,
        verb_noun: bool = True,
    ) -> None:
        classes = set(TAXONOMY) | set(rules or {})
        for cls, patterns in (rules or {}).items():
            if not re.fullmatch(r"[a-z][a-z0-9_]*", cls):
                raise ConfigError(f"rules: class name {cls!r} must be lowercase letters, digits and _", "rules")
            for p in patterns:
                _check_regex(p, "rules")
        for label, cls in (label_map or {}).items():
            if cls not in classes:
                raise ConfigError(
                    f"label_map: {label!r} maps to {cls!r}, which is not a class; "
                    f"classes: {', '.join(sorted(classes))}",
                    "label_map",
                )
        for cls in priority or []:
            if cls not in classes:
                raise ConfigError(f"priority: unknown class {cls!r}; classes: {', '.join(sorted(classes))}", "priority")
        if multi_turn not in ("conversation", "first_turn"):
            raise ConfigError(f"multi_turn must be 'conversation' or 'first_turn', got {multi_turn!r}", "multi_turn")
        self.use_labels = use_labels
        self.label_map = label_map
        self.rules = rules
        self.replace_rules = replace_rules
        self.priority = priority
        self.multi_turn = multi_turn
        self.use_response = use_response
        self.verb_noun = verb_noun

    # -- the effective tables ---------------------------------------------------------------
    def class_rules(self) -> dict[str, list[str]]:
        """Every class's regexes after ``rules`` and ``replace_rules``."""
        out = {k: list(v) for k, v in RULES.items()}
        for cls, patterns in (self.rules or {}).items():
            out[cls] = list(patterns) if self.replace_rules else out.get(cls, []) + list(patterns)
        return out

    def order(self) -> list[str]:
        """Classes in the order their rules are checked."""
        rules = self.class_rules()
        new = [c for c in rules if c not in PRIORITY]
        base = new + PRIORITY
        head = list(self.priority or [])
        return head + [c for c in base if c not in head and c in rules]

    def labels(self) -> dict[str, str]:
        table = dict(LABEL_MAP)
        table.update(self.label_map or {})
        return table

    def setup(self) -> None:
        self._compiled()

    def _compiled(self) -> list[tuple[str, str]]:
        cached = getattr(self, "_patterns", None)
        if cached is None:
            rules = self.class_rules()
            cached = [(c, _alternation(rules[c])) for c in self.order() if rules.get(c)]
            self._patterns: list[tuple[str, str]] | None = cached
        return cached

    # -- tagging ---------------------------------------------------------------------------------
    def map_labels(self, labels: pa.Array) -> pa.Array:
        """Each normalized source label as a taxonomy class (null: unknown or no label)."""
        table = self.labels()
        classes = set(TAXONOMY) | set(self.class_rules())
        keys = sorted(set(table) | classes)
        values = [table.get(k, k) for k in keys]
        labels = pc.utf8_trim(pc.utf8_lower(labels), "_ ")
        idx = pc.index_in(labels, pa.array(keys, pa.string()))
        # hierarchical NI labels: "question_answering_->_multiple_choice_question_answering"
        first = pc.utf8_trim(pc.list_element(pc.split_pattern(labels, "->", max_splits=1), 0), "_ ")
        idx = pc.coalesce(idx, pc.index_in(first, pa.array(keys, pa.string())))
        return pc.take(pa.array(values, pa.string()), idx)

    def infer(self, batch: pa.Table) -> pa.Array:
        """The inferred class of every row (labels ignored)."""
        return self._infer(_Views(batch))

    def _infer(self, views: _Views) -> pa.Array:
        messages, n = views.messages, len(views.messages)
        user, response, instr, ctx = views.user, views.response, views.instr, views.ctx
        instr_l = pc.utf8_trim_whitespace(pc.replace_substring_regex(pc.utf8_lower(instr), r"\s+", " "))
        has_ctx = pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(ctx)), 0).to_numpy(zero_copy_only=False)

        out = np.full(n, None, dtype=object)
        undecided = np.ones(n, bool)

        def decide(mask: np.ndarray, cls: str) -> None:
            take = mask & undecided
            out[take] = cls
            undecided[take] = False

        decide(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(user)), 0).to_numpy(zero_copy_only=False), "other")
        if self.multi_turn == "conversation":
            decide(_role_count(messages, "user") >= 2, "conversation")

        late = []
        for cls, pattern in self._compiled():
            if cls in _LATE:
                late.append((cls, pattern))
                continue
            hit = _match(instr_l, pattern)
            if cls in _CONTEXT_FREE:
                hit &= ~has_ctx
            decide(hit, cls)

        if self.use_response and undecided.any():
            self._shape(instr_l, ctx, response, has_ctx, decide)
        for cls, pattern in late:
            decide(_match(instr_l, pattern), cls)
        decide(undecided.copy(), "other")
        return pa.array(out.tolist(), pa.string())

    def _shape(self, instr: pa.Array, ctx: pa.Array, response: pa.Array, has_ctx: np.ndarray, decide: Any) -> None:
        has_resp = pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(response)), 0).to_numpy(zero_copy_only=False)
        decide(has_resp & _match(response, _CODE_RESPONSE), "code")
        numbers = _count(instr, r"\d+(?:[.,]\d+)?")
        decide((numbers >= 2) & _match(instr, _QUANTITY) & ~has_ctx, "math")

        share, r_n, c_n = overlap(response, ctx)
        cjk = _count(response, r"\p{Han}")
        spaced = pc.list_value_length(pc.utf8_split_whitespace(response)).to_numpy(zero_copy_only=False)
        words = spaced + cjk / 3.0  # a CJK character is about a third of a word
        list_lines = _count(response, _LIST_LINE)
        commas = _count(response, r"[,，、;；]")
        sentences = _count(response, r"[.!?。！？](?:\s|$)")
        # a short comma list: several short items ("Titleist, Taylormade, Callaway, Ping")
        short_list = (commas >= 2) & (words <= 40) & (sentences <= 1) & (words <= 4 * (commas + 1))
        listy = has_resp & ((list_lines >= 2) | short_list)
        question = _match(instr, _QUESTION_START)
        opinion = _match(instr, _OPEN_REQUEST)

        # with a context
        decide(has_ctx & listy & (share >= 0.5), "information_extraction")
        summary = (
            has_ctx & (sentences >= 3) & (share >= 0.6) & (r_n <= 0.5 * np.maximum(c_n, 1)) & (r_n > _SHORT_ANSWER)
        )
        decide(summary, "summarization")
        # "What is X?" / "Tell me about X" asked of a passage, answered in sentences: a summary of it
        about = has_ctx & _match(instr, _ABOUT) & (sentences >= 2) & (share >= 0.5)
        decide(about, "summarization")
        decide(has_ctx & has_resp, "closed_qa")
        # without a context
        # a list answers an open request; a list of facts ("Who were the members of …?") is open QA
        decide(~has_ctx & listy & (~question | opinion), "brainstorming")
        decide(~has_ctx & ~question & (words >= _LONG_WORDS), "creative_writing")

    def transform(self, batch: pa.Table) -> pa.Table:
        return self._tag(batch)[0]

    def process(self, batch: pa.Table) -> Outcome:
        tagged, events = self._tag(batch)
        return Outcome(tagged, schema.empty(schema.REJECTED_SCHEMA), events=events)

    def _tag(self, batch: pa.Table) -> tuple[pa.Table, collections.Counter[str]]:
        events: collections.Counter[str] = collections.Counter()
        n = batch.num_rows
        label = _combine(batch.column("task_type")) if "task_type" in batch.column_names else pa.nulls(n, pa.string())
        label = label.cast(pa.string())
        if "task_label" in batch.column_names:  # a second pass keeps the original label
            label = pc.coalesce(_combine(batch.column("task_label")).cast(pa.string()), label)
        mapped = self.map_labels(label) if self.use_labels else pa.nulls(n, pa.string())
        from_label = pc.is_valid(mapped)
        views = _Views(batch)
        inferred = self._infer(views) if n else pa.array([], pa.string())
        task = pc.if_else(from_label, mapped, inferred)
        source = pc.if_else(from_label, "label", "inferred")
        if self.use_labels and n:
            unknown = pc.and_(pc.is_valid(label), pc.invert(from_label))
            for row in pc.value_counts(label.filter(unknown)).to_pylist():
                events[f"unknown label '{row['values']}', inferred"] += row["counts"]
        events["label kept"] += pc.sum(from_label.cast(pa.int64())).as_py() or 0
        events["inferred"] += n - (pc.sum(from_label.cast(pa.int64())).as_py() or 0)
        events = collections.Counter({k: v for k, v in events.items() if v})

        columns: dict[str, pa.Array] = {
            "task_type": task,
            "task_source": source,
            "task_label": label,
        }
        if self.verb_noun:
            if n:
                verb, noun = _verb_noun_arrays(views.instr)
            else:
                verb = noun = pa.array([], pa.string())
            columns["root_verb"] = verb
            columns["root_noun"] = noun
        out = batch
        for name, values in columns.items():
            values = _combine(values).cast(pa.string())
            if name in out.column_names:
                out = out.set_column(out.column_names.index(name), pa.field(name, pa.string()), values)
            else:
                out = out.append_column(pa.field(name, pa.string()), values)
        return out, events
