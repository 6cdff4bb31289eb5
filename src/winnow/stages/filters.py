"""Row filters: each answers, per row, keep (null) or the reason to drop.

- ``length``: instruction/response lengths in chars, words or tokens, per-turn limits and the
  number of turns.
- ``regex``: a user's RE2 pattern on chosen roles, dropping rows that match or keeping only them.
- ``expression``: a small, sandboxed condition over columns (``len(response) > 20 and
  task_type != 'other'``), parsed once and evaluated column-wise with pyarrow.compute.
"""

from __future__ import annotations

import ast
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from winnow import schema, text
from winnow.errors import ConfigError, MissingDependencyError
from winnow.stages.base import Filter, Verdict, register

log = logging.getLogger(__name__)

Unit = Literal["chars", "words", "tokens"]
#: The keys of ``length``'s ``per_turn`` map, and the role each one limits.
PER_TURN_KEYS: dict[str, str] = {
    "min_instruction": "user",
    "max_instruction": "user",
    "min_response": "assistant",
    "max_response": "assistant",
}


def measure(values: pa.Array, unit: str) -> pa.Array:
    """Length of each string in ``unit``, ignoring leading and trailing whitespace.

    ``tokens`` needs a tokenizer: see :meth:`LengthFilter.measure`.
    """
    values = pc.utf8_trim_whitespace(values)
    if unit == "words":
        return pc.list_value_length(pc.utf8_split_whitespace(values))
    return pc.utf8_length(values)


def turn_count(messages: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Turns per row: the number of user messages (a turn is a question and what answers it)."""
    if isinstance(messages, pa.ChunkedArray):
        messages = messages.combine_chunks()
    parents = pc.list_parent_indices(messages).to_numpy(zero_copy_only=False)
    user = pc.fill_null(pc.equal(pc.list_flatten(messages).field("role"), "user"), False)
    user_np = user.to_numpy(zero_copy_only=False)
    return pa.array(np.bincount(parents[user_np], minlength=len(messages)).astype(np.int64))


def _sanitize(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


# -- tokenizers ---------------------------------------------------------------------------------


class _HFTokenizer:
    """A counting adapter over a ``transformers`` tokenizer that has no ``tokenizer.json``."""

    def __init__(self, tok: Any) -> None:
        self.tok = tok

    def count(self, texts: list[str]) -> list[int]:
        ids = self.tok(texts, add_special_tokens=False)["input_ids"]
        return [len(i) for i in ids]


class _FastTokenizer:
    def __init__(self, tok: Any) -> None:
        self.tok = tok

    def count(self, texts: list[str]) -> list[int]:
        return [len(e.ids) for e in self.tok.encode_batch(texts, add_special_tokens=False)]


def _import_tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError:
        raise MissingDependencyError("tokenizers", purpose="length with unit: tokens") from None
    return tokenizers


def _from_transformers(where: str) -> Any:
    try:
        import transformers
    except ImportError:
        raise MissingDependencyError(
            "transformers", purpose=f"the tokenizer in {where} (it has no tokenizer.json)"
        ) from None
    tok = transformers.AutoTokenizer.from_pretrained(where, local_files_only=True)
    backend = getattr(tok, "backend_tokenizer", None)
    return _FastTokenizer(backend) if backend is not None else _HFTokenizer(tok)


def load_tokenizer(spec: str) -> Any:
    """A token counter from a ``tokenizer.json`` file, a tokenizer folder, or a Hub name found in
    the local Hugging Face cache. Never downloads: winnow runs offline."""
    path = Path(os.path.expanduser(spec))
    if path.is_file():
        return _FastTokenizer(_import_tokenizers().Tokenizer.from_file(str(path)))
    if path.is_dir():
        if (path / "tokenizer.json").is_file():
            return _FastTokenizer(_import_tokenizers().Tokenizer.from_file(str(path / "tokenizer.json")))
        try:
            return _from_transformers(str(path))
        except (OSError, ValueError) as e:
            raise ConfigError(f"tokenizer: could not load a tokenizer from folder {path}: {e}", "tokenizer") from None
    if spec.endswith(".json") or spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise ConfigError(f"tokenizer: no such file or folder: {spec}", "tokenizer")
    # A Hub name (``gpt2``, ``org/model``): only what is already in the local cache.
    tokenizers = _import_tokenizers()
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(spec, "tokenizer.json")
    except Exception:  # an invalid repo id is simply not cached
        cached = None
    if isinstance(cached, str):
        return _FastTokenizer(tokenizers.Tokenizer.from_file(cached))
    try:
        return _from_transformers(spec)
    except MissingDependencyError:
        pass
    except (OSError, ValueError):
        pass
    raise ConfigError(
        f"tokenizer '{spec}' is not a local file or folder and is not in the local Hugging Face "
        "cache; winnow does not download (that needs network): give the path of a tokenizer.json "
        f"or of a tokenizer folder, or fetch it first, e.g. `huggingface-cli download {spec} "
        "tokenizer.json`",
        "tokenizer",
    )


# -- length -------------------------------------------------------------------------------------


@register
class LengthFilter(Filter):
    """Drop rows whose instruction, response or single turns are too short or too long.

    The instruction is every user turn, the response every assistant turn, joined. Whitespace
    at the ends does not count, so a response of spaces has length 0. A limit left null is off.
    ``per_turn`` holds each single turn to limits, so one empty answer or one huge paste inside
    a long chat is caught (a row with no turn of a role has none to check: ``min_response``
    catches a missing answer); a turn is a user message (and what answers it), so
    ``min_turns: 2`` keeps multi-turn chats only. In tokens, each turn is tokenized on its own
    (as a chat template does) and a role's length is the sum over its turns. When a row breaks
    several rules the reason names the first of: whole response, whole instruction, single
    turns, number of turns.

    Args:
        min_instruction: fewest units in the instruction.
        max_instruction: most units in the instruction.
        min_response: fewest units in the response (1 drops empty answers).
        max_response: most units in the response.
        unit: ``chars``, ``words`` (whitespace-separated; text without spaces, such as
            Chinese, has few words: measure it in chars) or ``tokens`` (needs ``tokenizer``).
        tokenizer: for ``unit: tokens``: a ``tokenizer.json`` file, a tokenizer folder, or a Hub
            name (``gpt2``) already in the local Hugging Face cache; special tokens not counted.
        per_turn: limits on each single turn, in ``unit``: a map with any of ``min_instruction``,
            ``max_instruction`` (each user turn), ``min_response``, ``max_response`` (each
            assistant turn), e.g. ``{min_response: 1, max_response: 8000}``.
        min_turns: fewest turns (user messages).
        max_turns: most turns (user messages).

    >>> LengthFilter(min_response=2, max_response=4000)  # doctest: +ELLIPSIS
    LengthFilter(min_instruction=None, max_instruction=None, min_response=2, max_response=4000, unit='chars', ...)
    """

    name = "length"

    def __init__(
        self,
        min_instruction: int | None = None,
        max_instruction: int | None = None,
        min_response: int | None = 1,
        max_response: int | None = None,
        unit: Unit = "chars",
        tokenizer: str | None = None,
        per_turn: dict[str, int] | None = None,
        min_turns: int | None = None,
        max_turns: int | None = None,
    ) -> None:
        if unit == "tokens" and not tokenizer:
            raise ConfigError("unit: tokens needs a tokenizer (a tokenizer.json, a folder or a Hub name)", "tokenizer")
        if tokenizer and unit != "tokens":
            raise ConfigError(f"tokenizer is only used with unit: tokens (unit is {unit})", "tokenizer")
        for key in per_turn or {}:
            if key not in PER_TURN_KEYS:
                raise ConfigError(f"per_turn: unknown limit '{key}'; valid: {', '.join(PER_TURN_KEYS)}", "per_turn")
        self.min_instruction = min_instruction
        self.max_instruction = max_instruction
        self.min_response = min_response
        self.max_response = max_response
        self.unit = unit
        self.tokenizer = tokenizer
        self.per_turn = per_turn
        self.min_turns = min_turns
        self.max_turns = max_turns
        self._counter: Any = None

    def __getstate__(self) -> dict[str, Any]:
        # A loaded tokenizer is not sent to workers: each loads its own in setup().
        return {**self.__dict__, "_counter": None}

    def setup(self) -> None:
        if self.unit == "tokens" and self._counter is None:
            self._counter = load_tokenizer(str(self.tokenizer))

    def measure(self, values: pa.Array) -> pa.Array:
        """Length of each string in this filter's unit, ignoring whitespace at the ends."""
        if self.unit != "tokens":
            return measure(values, self.unit)
        self.setup()
        trimmed = pc.fill_null(pc.utf8_trim_whitespace(values), "").to_pylist()
        return pa.array(self._counter.count(trimmed) if trimmed else [], pa.int64())

    def reasons(self, batch: pa.Table) -> Verdict:
        messages = _sanitize(batch.column("messages"))
        n = batch.num_rows
        reasons = pa.nulls(n, pa.string())
        kinds = pa.nulls(n, pa.string())
        checks = [
            ("instruction", "user", self.max_instruction, pc.greater, "more than", "too long"),
            ("instruction", "user", self.min_instruction, pc.less, "fewer than", "too short"),
            ("response", "assistant", self.max_response, pc.greater, "more than", "too long"),
            ("response", "assistant", self.min_response, pc.less, "fewer than", "too short"),
        ]
        per_turn = {k: v for k, v in (self.per_turn or {}).items() if v is not None}
        turns = _Turns(self, messages)
        # Every turn that will be measured is measured in one call (one tokenizer batch).
        wanted = {PER_TURN_KEYS[k] for k in per_turn}
        if self.unit == "tokens":
            wanted |= {role for _, role, limit, *_ in checks if limit is not None}
        turns.measure(wanted)
        # Checked in reverse order of priority, so the first rule a row breaks is the one named.
        for why, kind in (self._turn_count_checks(messages), self._per_turn_checks(turns, per_turn)):
            if why is not None:
                bad = pc.is_valid(why)
                reasons = pc.if_else(bad, why, reasons)
                kinds = pc.if_else(bad, kind, kinds)
        sizes: dict[str, pa.Array] = {}
        for part, role, limit, compare, words, kind in checks:
            if limit is None:
                continue
            if role not in sizes:
                # In tokens a role's length is the sum of its turns' (each turn tokenized on its
                # own, as a chat template does); in chars and words, that of the joined text.
                sizes[role] = (
                    turns.total(role) if self.unit == "tokens" else self.measure(text.role_text(messages, [role]))
                )
            size = sizes[role]
            bad = compare(size, limit)
            why = pc.binary_join_element_wise(
                f"{part} has ", size.cast(pa.string()), f" {self.unit}, {words} {limit}", ""
            )
            reasons = pc.if_else(bad, why, reasons)
            kinds = pc.if_else(bad, pa.scalar(f"{part} {kind}"), kinds)
        return Verdict(reasons, kinds)

    def _turn_count_checks(self, messages: pa.Array) -> tuple[pa.Array | None, pa.Array | None]:
        if self.min_turns is None and self.max_turns is None:
            return None, None
        turns = turn_count(messages).to_numpy()
        why = np.full(len(turns), None, object)
        kind = np.full(len(turns), None, object)
        for limit, bad, words, label in (
            (self.max_turns, lambda t, lim: t > lim, "more than", "too many turns"),
            (self.min_turns, lambda t, lim: t < lim, "fewer than", "too few turns"),
        ):
            if limit is None:
                continue
            for i in np.flatnonzero(bad(turns, limit)):
                why[i] = f"conversation has {turns[i]} turns, {words} {limit}"
                kind[i] = label
        return pa.array(why, pa.string()), pa.array(kind, pa.string())

    def _per_turn_checks(self, turns: _Turns, limits: dict[str, int]) -> tuple[pa.Array | None, pa.Array | None]:
        if not limits:
            return None, None
        why = np.full(turns.n, None, object)
        kind = np.full(turns.n, None, object)
        # Reverse order of priority again: min_response is named first, then max_response, ...
        for key in ("max_instruction", "min_instruction", "max_response", "min_response"):
            if key not in limits:
                continue
            role, limit = PER_TURN_KEYS[key], limits[key]
            is_role = turns.mask(role)
            ordinal = _ordinal_within_row(is_role, turns.parents, turns.n)
            bad = is_role & ((turns.size > limit) if key.startswith("max") else (turns.size < limit))
            words, label = ("more than", "too long") if key.startswith("max") else ("fewer than", "too short")
            rows, first = np.unique(turns.parents[bad], return_index=True)  # the first bad turn of a row
            at = np.flatnonzero(bad)[first]
            for row, i in zip(rows, at):
                why[row] = f"{role} turn {ordinal[i]} has {turns.size[i]} {self.unit}, {words} {limit}"
                kind[row] = f"{role} turn {label}"
        return pa.array(why, pa.string()), pa.array(kind, pa.string())


class _Turns:
    """The turns of one batch, flattened, with their sizes measured once per role."""

    def __init__(self, stage: LengthFilter, messages: pa.Array) -> None:
        self.stage = stage
        self.n = len(messages)
        self.flat = pc.list_flatten(messages)
        self.parents = pc.list_parent_indices(messages).to_numpy(zero_copy_only=False)
        self.roles = pc.fill_null(self.flat.field("role"), "")
        self.size = np.zeros(len(self.flat), np.int64)
        self._masks: dict[str, np.ndarray] = {}

    def mask(self, role: str) -> np.ndarray:
        if role not in self._masks:
            self._masks[role] = pc.equal(self.roles, role).to_numpy(zero_copy_only=False)
        return self._masks[role]

    def measure(self, roles: set[str]) -> None:
        if not roles:
            return
        scope = np.logical_or.reduce([self.mask(r) for r in sorted(roles)])
        if scope.any():
            contents = pc.fill_null(self.flat.field("content"), "").filter(pa.array(scope))
            self.size[scope] = self.stage.measure(contents).to_numpy(zero_copy_only=False)

    def total(self, role: str) -> pa.Array:
        """Per row, the sum of the sizes of its turns of ``role`` (measured before)."""
        mask = self.mask(role)
        return pa.array(np.bincount(self.parents[mask], weights=self.size[mask], minlength=self.n).astype(np.int64))


def _ordinal_within_row(mask: np.ndarray, parents: np.ndarray, n: int) -> np.ndarray:
    """For each flattened turn, its 1-based position among the turns of ``mask`` in its row."""
    running = np.cumsum(mask)
    counts = np.bincount(parents[mask], minlength=n) if n else np.zeros(0, np.int64)
    before = np.concatenate([[0], np.cumsum(counts)])[:-1]  # mask count in earlier rows
    return running - before[parents] if len(parents) else running


# -- regex --------------------------------------------------------------------------------------

#: How much of a match a reason quotes.
QUOTE_CHARS = 60


def check_re2(pattern: str, key: str, stage: str) -> None:
    """Raise a ConfigError naming ``key`` unless ``pattern`` compiles as RE2 (Arrow's regex)."""
    try:
        pc.match_substring_regex(pa.array([""], pa.string()), pattern)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise ConfigError(
            f"parameter '{key}' of stage '{stage}' is not a valid RE2 pattern ({e}); RE2 has no "
            "look-around and no backreferences",
            key,
        ) from None


def _part_name(roles: Sequence[str]) -> str:
    for part, covered in text.TARGETS.items():
        if set(roles) == set(covered):
            return f"the {part}"
    return "the " + "/".join(roles) + " turns"


@register
class RegexFilter(Filter):
    """Drop rows whose turns match a pattern (``action: drop``), or keep only those that do.

    The pattern is searched in each turn of the given roles on its own (``^`` and ``$`` anchor
    to a turn's start and end; add ``(?m)`` for lines), in RE2 syntax, the one of
    ``pyarrow.compute``: no look-around, no backreferences. Without a pattern every row is kept.
    One rule per stage: list the stage several times for several rules, each with its ``label``.

    Args:
        pattern: the RE2 pattern, e.g. ``https?://`` or ``(?i)as an ai language model``.
        roles: the roles whose turns are searched (``user``, ``assistant``, ``system``, ``tool``).
        action: ``drop`` rows with a match, or ``keep`` only rows with one.
        ignore_case: match without regard to case.
        label: the rule's name in reasons and counts (default: the pattern).

    >>> RegexFilter(pattern=r"https?://", label="no-urls")
    RegexFilter(pattern='https?://', roles=['assistant'], action='drop', ignore_case=False, label='no-urls')
    """

    name = "regex"

    def __init__(
        self,
        pattern: str | None = None,
        roles: list[str] = ["assistant"],  # noqa: B006  (stored, never mutated)
        action: Literal["drop", "keep"] = "drop",
        ignore_case: bool = False,
        label: str | None = None,
    ) -> None:
        if pattern is not None:
            if not pattern:
                raise ConfigError("parameter 'pattern' of stage 'regex' is empty", "pattern")
            check_re2(pattern, "pattern", self.name)
        bad = [r for r in roles if r not in schema.ROLES]
        if bad or not roles:
            raise ConfigError(f"roles: {bad or '[]'} not valid; choose from {', '.join(schema.ROLES)}", "roles")
        self.pattern = pattern
        self.roles = list(roles)
        self.action = action
        self.ignore_case = ignore_case
        self.label = label

    def reasons(self, batch: pa.Table) -> Verdict:
        n = batch.num_rows
        if self.pattern is None:
            return Verdict(pa.nulls(n, pa.string()))
        messages = _sanitize(batch.column("messages"))
        flat = pc.list_flatten(messages)
        parents = pc.list_parent_indices(messages).to_numpy(zero_copy_only=False)
        in_role = pc.fill_null(pc.is_in(flat.field("role"), pa.array(self.roles, pa.string())), False)
        contents = pc.fill_null(flat.field("content"), "")
        hit = pc.and_(in_role, pc.match_substring_regex(contents, self.pattern, ignore_case=self.ignore_case))
        hit_np = hit.to_numpy(zero_copy_only=False)
        matched = np.zeros(n, bool)
        matched[parents[hit_np]] = True
        label = self.label or self.pattern
        part = _part_name(self.roles)
        why = np.full(n, None, object)
        if self.action == "keep":
            why[~matched] = f"regex '{label}' did not match {part}"
        else:
            rows, first = np.unique(parents[hit_np], return_index=True)
            quotes = self._quotes(contents.filter(hit).take(pa.array(first, pa.int64())))
            for row, quote in zip(rows, quotes):
                why[row] = f"regex '{label}' matched {part}{quote}"
        reasons = pa.array(why, pa.string())
        return Verdict(
            reasons, pc.if_else(pc.is_valid(reasons), pa.scalar(f"regex: {label}"), pa.nulls(n, pa.string()))
        )

    def _quotes(self, contents: pa.Array) -> list[str]:
        """The first match in each string, quoted and shortened, so a reviewer sees what fired."""
        flags = "(?i)" if self.ignore_case else ""
        pattern = f"{flags}(?P<winnow_match>{_non_capturing(str(self.pattern))})"
        try:
            found = pc.struct_field(pc.extract_regex(contents, pattern), "winnow_match").to_pylist()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # the reason then names no quote
            return [""] * len(contents)
        out = []
        for s in found:
            s = " ".join((s or "").split())
            out.append(": " + repr(s if len(s) <= QUOTE_CHARS else s[: QUOTE_CHARS - 1] + "…"))
        return out


def _non_capturing(pattern: str) -> str:
    """``pattern`` with its unnamed groups made non-capturing (``extract_regex`` wants only named
    groups); escapes and character classes are left alone."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = c != "]" or (bool(out) and out[-1] in ("[", "[^"))
            out.append(c)
        elif c == "[":
            in_class = True
            if pattern[i + 1 : i + 2] == "^":
                out.append("[^")
                i += 2
                continue
            out.append(c)
        elif c == "(" and pattern[i + 1 : i + 2] != "?":
            out.append("(?:")
        else:
            out.append(c)
        i += 1
    return "".join(out)


# -- expression ---------------------------------------------------------------------------------

#: Longest expression accepted, and deepest nesting (guards against pathological input).
MAX_EXPRESSION = 2000
MAX_DEPTH = 64
#: Names computed from ``messages`` rather than read from a column (they win over a column of the
#: same name).
DERIVED = ("instruction", "response", "system", "turns")
_STRING_PREDICATES = {
    "contains": pc.match_substring,
    "startswith": pc.starts_with,
    "endswith": pc.ends_with,
    "matches": pc.match_substring_regex,
}
#: name → number of arguments.
FUNCTIONS = {
    "len": 1,
    "words": 1,
    "lower": 1,
    "upper": 1,
    "strip": 1,
    "contains": 2,
    "startswith": 2,
    "endswith": 2,
    "matches": 2,
}
_COMPARE: dict[type, Callable[..., Any]] = {
    ast.Lt: pc.less,
    ast.LtE: pc.less_equal,
    ast.Gt: pc.greater,
    ast.GtE: pc.greater_equal,
}
_ARITHMETIC: dict[type, Callable[..., Any]] = {
    ast.Add: pc.add_checked,  # checked: an overflow is an error, never a silently wrapped number
    ast.Sub: pc.subtract_checked,
    ast.Mult: pc.multiply_checked,
    ast.Div: pc.divide,
}
_NODE_NAMES = {
    ast.Lambda: "lambda",
    ast.ListComp: "a comprehension",
    ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension",
    ast.GeneratorExp: "a comprehension",
    ast.Subscript: "subscripts ([...])",
    ast.NamedExpr: "assignment (:=)",
    ast.IfExp: "if-else",
    ast.Dict: "a dict",
    ast.Set: "a set",
    ast.JoinedStr: "an f-string",
    ast.Await: "await",
    ast.Starred: "*",
}


class _Checker:
    """Walks the parsed expression and refuses everything outside the documented language."""

    def __init__(self, source: str, key: str) -> None:
        self.source = source
        self.key = key

    def fail(self, node: ast.AST, what: str) -> ConfigError:
        part = _short(ast.get_source_segment(self.source, node) or "")
        return ConfigError(
            f"expression {_short(self.source)!r}: {what}"
            + (f" (at {part!r})" if part else "")
            + "; an expression may use columns, struct.field, instruction, response, system, turns, "
            "literals, == != < <= > >=, in [..], and, or, not, + - * / and the functions " + ", ".join(FUNCTIONS),
            self.key,
        )

    def check(self, node: ast.AST, depth: int = 0) -> None:
        if depth > MAX_DEPTH:
            raise self.fail(node, f"nested more than {MAX_DEPTH} levels deep")
        self._check(node, depth)

    def _check(self, node: ast.AST, depth: int) -> None:
        def check(child: ast.AST) -> None:
            self.check(child, depth + 1)

        if isinstance(node, ast.BoolOp):
            for v in node.values:
                check(v)
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.Not, ast.USub, ast.UAdd)):
                raise self.fail(node, f"operator {type(node.op).__name__} is not allowed")
            check(node.operand)
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _ARITHMETIC:
                raise self.fail(node, "only + - * / are allowed as arithmetic")
            check(node.left)
            check(node.right)
        elif isinstance(node, ast.Compare):
            check(node.left)
            for op, right in zip(node.ops, node.comparators):
                if isinstance(op, (ast.Is, ast.IsNot)):
                    raise self.fail(node, "use == None / != None instead of is / is not")
                if isinstance(op, (ast.In, ast.NotIn)) and isinstance(right, (ast.List, ast.Tuple)):
                    for e in right.elts:
                        if not (isinstance(e, ast.Constant) and _literal_ok(e.value)):
                            raise self.fail(e, "the list after `in` may hold only literals")
                    continue
                check(right)
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name):
                raise self.fail(node, "only the functions " + ", ".join(FUNCTIONS) + " may be called")
            fname = node.func.id
            if fname not in FUNCTIONS:
                raise self.fail(node, f"function '{fname}' is not available; functions: " + ", ".join(FUNCTIONS))
            if node.keywords or len(node.args) != FUNCTIONS[fname]:
                raise self.fail(node, f"{fname}() takes {FUNCTIONS[fname]} positional argument(s)")
            for arg in node.args:
                check(arg)
            if fname in _STRING_PREDICATES:
                lit = node.args[1]
                if not (isinstance(lit, ast.Constant) and isinstance(lit.value, str)):
                    raise self.fail(node, f"the second argument of {fname}() must be a string literal")
                if fname == "matches":
                    check_re2(lit.value, self.key, "expression")
        elif isinstance(node, ast.Attribute):
            if node.attr.startswith("_"):
                raise self.fail(node, f"field '{node.attr}' is not allowed (names starting with _ are off limits)")
            if not isinstance(node.value, (ast.Name, ast.Attribute)):
                raise self.fail(node, "a .field may follow only a column name, as in quality.score")
            check(node.value)
        elif isinstance(node, ast.Name):
            if node.id.startswith("_"):
                raise self.fail(node, f"name '{node.id}' is not allowed (names starting with _ are off limits)")
        elif isinstance(node, ast.Constant):
            if not _literal_ok(node.value):
                raise self.fail(node, f"literal {node.value!r} is not allowed (numbers, strings, True, False, None)")
        elif isinstance(node, (ast.List, ast.Tuple)):
            raise self.fail(node, "a list is allowed only after `in`")
        else:
            what = _NODE_NAMES.get(type(node), type(node).__name__)
            raise self.fail(node, f"{what} is not allowed")


def _short(source: str, most: int = 80) -> str:
    return source if len(source) <= most else source[: most - 1] + "…"


def _literal_ok(value: Any) -> bool:
    if isinstance(value, int) and not isinstance(value, bool):
        return -(2**63) <= value < 2**63
    return value is None or isinstance(value, (bool, float, str))


def parse_expression(source: str, key: str) -> ast.expr:
    """The checked syntax tree of an expression, or a ConfigError naming the offending part."""
    if len(source) > MAX_EXPRESSION:
        raise ConfigError(f"expression is {len(source)} chars long; the most is {MAX_EXPRESSION}", key)
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        raise ConfigError(f"expression {source!r} is not valid syntax: {e}", key) from None
    try:
        _Checker(source.strip(), key).check(tree.body)
    except RecursionError:
        raise ConfigError(f"expression {source[:80]!r}… is nested too deeply", key) from None
    return tree.body


class _Evaluator:
    """Turns a checked tree into Arrow arrays for one batch, column-wise.

    Null rules: ``==``, ``!=`` and ``in`` treat null as a value of its own (``x == None`` is true
    only for null, ``x != 'a'`` is true for null); every other comparison or predicate involving
    null is false; arithmetic and functions of null give null. So a condition is always true or
    false, never null, and ``and``/``or``/``not`` are plain boolean logic.
    """

    def __init__(self, batch: pa.Table, source: str, key: str) -> None:
        self.batch = batch
        self.source = source
        self.key = key
        self.cache: dict[str, Any] = {}

    def fail(self, node: ast.AST, what: str) -> ConfigError:
        part = _short(ast.get_source_segment(self.source, node) or "")
        return ConfigError(
            f"expression {_short(self.source)!r}: {what}" + (f" (at {part!r})" if part else ""), self.key
        )

    def condition(self, node: ast.expr) -> pa.Array:
        value = self.eval(node)
        if not pa.types.is_boolean(value.type):
            raise self.fail(node, f"must be a condition (true or false), but it gives {value.type}")
        out = pc.fill_null(value, False)
        if isinstance(out, pa.Scalar):
            out = pa.array([out.as_py()] * self.batch.num_rows, pa.bool_())
        return _sanitize(out)

    def eval(self, node: ast.expr) -> Any:
        try:
            return self._eval(node)
        except (pa.ArrowNotImplementedError, pa.ArrowTypeError, pa.ArrowInvalid) as e:
            raise self.fail(node, f"{str(e).splitlines()[0]}") from None

    def _eval(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            return pa.scalar(node.value)
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.Attribute):
            base = self.eval(node.value)
            if not pa.types.is_struct(base.type):
                raise self.fail(
                    node, f"'{ast.get_source_segment(self.source, node.value)}' is {base.type}, not a struct"
                )
            if base.type.get_field_index(node.attr) < 0:
                names = [f.name for f in base.type]
                raise self.fail(node, f"no field '{node.attr}'; fields: {', '.join(names)}")
            return pc.struct_field(base, node.attr)
        if isinstance(node, ast.BoolOp):
            values = [self.condition(v) for v in node.values]
            combine = pc.and_ if isinstance(node.op, ast.And) else pc.or_
            out = values[0]
            for v in values[1:]:
                out = combine(out, v)
            return out
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.Not):
                return pc.invert(self.condition(node.operand))
            value = self.eval(node.operand)
            return pc.negate_checked(value) if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp):
            left, right = self.eval(node.left), self.eval(node.right)
            if isinstance(node.op, ast.Div):  # true division, as in Python; x / 0 is inf or nan
                left, right = pc.cast(left, pa.float64()), pc.cast(right, pa.float64())
            return _ARITHMETIC[type(node.op)](left, right)
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        raise self.fail(node, "unsupported")  # the checker refuses everything else

    def name(self, node: ast.Name) -> Any:
        if node.id in self.cache:
            return self.cache[node.id]
        if node.id in DERIVED:
            messages = _sanitize(self.batch.column("messages"))
            if node.id == "turns":
                value: Any = turn_count(messages)
            else:
                value = text.role_text(
                    messages, [{"instruction": "user", "response": "assistant"}.get(node.id, node.id)]
                )
        elif node.id in self.batch.column_names:
            value = _sanitize(self.batch.column(node.id))
        else:
            columns = [c for c in self.batch.column_names if not c.startswith("_")]
            raise self.fail(
                node, f"no column '{node.id}'; columns: {', '.join(columns)}; derived: {', '.join(DERIVED)}"
            )
        self.cache[node.id] = value
        return value

    def compare(self, node: ast.Compare) -> Any:
        out = None
        left = self.eval(node.left)
        for op, right_node in zip(node.ops, node.comparators):
            if isinstance(op, (ast.In, ast.NotIn)):
                result = self.membership(left, right_node)
                right = None
            else:
                right = self.eval(right_node)
                if isinstance(op, (ast.Eq, ast.NotEq)):
                    result = _equal(left, right)
                else:
                    result = pc.fill_null(_COMPARE[type(op)](left, right), False)
            if isinstance(op, (ast.NotEq, ast.NotIn)):
                result = pc.invert(result)
            out = result if out is None else pc.and_(out, result)
            left = right
        return out

    def membership(self, left: Any, right_node: ast.expr) -> Any:
        if isinstance(right_node, (ast.List, ast.Tuple)):
            values = [e.value for e in right_node.elts]  # type: ignore[attr-defined]
            items = pa.array(values)
            if len(items) and items.type != left.type and not pa.types.is_null(items.type):
                items = items.cast(left.type)
            if isinstance(left, pa.Scalar):
                return pa.scalar(left.as_py() in values)
            return pc.is_in(left, value_set=items, skip_nulls=False)
        # `'http' in response`: substring, as in Python.
        if not (isinstance(left, pa.Scalar) and pa.types.is_string(left.type)):
            raise self.fail(right_node, "`x in y` needs a list literal after `in`, or a string literal before it")
        return pc.fill_null(pc.match_substring(self.eval(right_node), left.as_py()), False)

    def call(self, node: ast.Call) -> Any:
        fname = node.func.id  # type: ignore[attr-defined]
        value = self.eval(node.args[0])
        if fname in _STRING_PREDICATES:
            pattern = node.args[1].value  # type: ignore[attr-defined]
            return pc.fill_null(_STRING_PREDICATES[fname](value, pattern), False)
        if fname == "len":
            if pa.types.is_list(value.type) or pa.types.is_large_list(value.type):
                return pc.list_value_length(value)
            return pc.utf8_length(value)
        if fname == "words":
            return pc.list_value_length(pc.utf8_split_whitespace(value))
        return {"lower": pc.utf8_lower, "upper": pc.utf8_upper, "strip": pc.utf8_trim_whitespace}[fname](value)


def _equal(left: Any, right: Any) -> Any:
    """``==`` with null as a value of its own: null == null, null != anything else."""
    if isinstance(right, pa.Scalar) and not right.is_valid:
        return pc.is_null(left) if not isinstance(left, pa.Scalar) else pa.scalar(not left.is_valid)
    if isinstance(left, pa.Scalar) and not left.is_valid:
        return pc.is_null(right) if not isinstance(right, pa.Scalar) else pa.scalar(not right.is_valid)
    both_null = pc.and_(pc.is_null(left), pc.is_null(right))
    return pc.if_else(both_null, True, pc.fill_null(pc.equal(left, right), False))


@register
class ExpressionFilter(Filter):
    """Keep (or drop) the rows for which a small condition over their columns is true.

    The condition is Python-like, parsed once and checked against a whitelist, then computed on
    whole columns with pyarrow.compute — it never runs as Python code. It may use: column names
    (``task_type``, ``lang``, ``source``, ``source_index`` or columns earlier stages added) and
    ``struct.field`` access (``quality.score``); the derived values ``instruction``,
    ``response``, ``system`` (the joined text of those turns) and ``turns`` (user messages);
    literals (numbers, strings, True, False, None); ``== != < <= > >=``, ``in`` / ``not in`` a
    list literal (``lang in ['en', 'de']``) and ``'text' in response`` (substring); ``and``,
    ``or``, ``not``; ``+ - * /``; and the functions ``len`` (characters, or items of a list),
    ``words``, ``lower``, ``upper``, ``strip``, ``contains``, ``startswith``, ``endswith`` and
    ``matches`` (RE2), the last four with a string literal as second argument. Anything else
    (other calls, methods, subscripts, lambdas, comprehensions, names starting with ``_``) is
    refused when the stage is built. Nulls: ``==``, ``!=`` and ``in`` treat null as a value of
    its own (``task_type != 'other'`` is true for a null task_type, ``task_type == None`` finds
    them); any other comparison with null is false; so a row is never dropped or kept because
    of an "unknown". Without ``keep`` or ``drop`` every row is kept.

    Args:
        keep: keep only the rows where this condition is true, e.g. ``len(response) > 20 and
            lang in ['en', 'de']``; it may use columns, ``struct.field``, ``instruction``,
            ``response``, ``system``, ``turns``, literals, ``== != < <= > >= in``, ``and or not``,
            ``+ - * /`` and ``len words lower upper strip contains startswith endswith matches``.
        drop: drop the rows where this condition is true (give ``keep`` or ``drop``, not both).

    >>> ExpressionFilter(keep="len(response) > 20 and task_type != 'other'")
    ExpressionFilter(keep="len(response) > 20 and task_type != 'other'", drop=None)
    """

    name = "expression"

    def __init__(self, keep: str | None = None, drop: str | None = None) -> None:
        if keep is not None and drop is not None:
            raise ConfigError("give keep or drop, not both (combine them with and/or/not)", "drop")
        for key, source in (("keep", keep), ("drop", drop)):
            if source is not None:
                parse_expression(source, key)
        self.keep = keep
        self.drop = drop

    def reasons(self, batch: pa.Table) -> Verdict:
        n = batch.num_rows
        key, source = ("keep", self.keep) if self.keep is not None else ("drop", self.drop)
        if source is None:
            return Verdict(pa.nulls(n, pa.string()))
        tree = parse_expression(source, key)
        value = _Evaluator(batch, source.strip(), key).condition(tree)
        bad = pc.invert(value) if key == "keep" else value
        why = f'expression "{source.strip()}" is ' + ("false" if key == "keep" else "true")
        reasons = pc.if_else(bad, pa.scalar(why), pa.nulls(n, pa.string()))
        kinds = pc.if_else(bad, pa.scalar("expression"), pa.nulls(n, pa.string()))
        return Verdict(reasons, kinds)
