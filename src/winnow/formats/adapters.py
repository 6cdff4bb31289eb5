"""Record-format adapters: one source record (a dict) in, canonical rows out.

An adapter knows one way people write instruction data (Alpaca, ShareGPT, OpenAI messages,
Dolly, ...). It answers two questions:

- ``detect(fields, header)``: do these field names look like my format? (a short reason, or None)
- ``adapt(record, context)``: the record as one or more `AdaptedRow` (messages, task_type, meta).

Conventions shared by every adapter:

- ``meta`` holds every original field the adapter did not map, in the record's own key order, so
  nothing is lost. A few mapped fields are *also* kept where the mapping is not invertible:
  Alpaca's ``input`` and Dolly's ``context`` (joined into the user message, kept so that an
  export back splits it exactly) and a label whose normalized ``task_type`` differs from it.
- Per-message keys other than role/content (``loss_weight``, ``name``, ``tool_calls``, a ShareGPT
  ``from`` that the role alone cannot restore, e.g. ``function_call``) go to
  ``meta["message_extras"]``: a list with one dict per message, present only when one is non-empty.
- ``task_type`` is the source's own label, normalized by `normalize_label` (lowercase, runs of
  whitespace including NBSP become ``_``).
- A record that does not fit raises `RecordError` (what is wrong; what was expected); the reader
  adds the file and line and either raises `InputError` or rejects the row.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from winnow.formats.containers import fix_surrogates

__all__ = [
    "ADAPTERS",
    "AdaptContext",
    "AdaptedRow",
    "Adapter",
    "RecordError",
    "detect_adapter",
    "normalize_label",
]


class RecordError(Exception):
    """One record cannot be adapted. ``str()`` is "<problem>; expected <what>" (no location)."""

    def __init__(self, problem: str, expected: str) -> None:
        super().__init__(f"{problem}; expected {expected}")


@dataclass
class AdaptedRow:
    messages: list[dict[str, str]]
    task_type: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    #: Position of the row inside a record that yields several (self-instruct ``instances``);
    #: None when the record is one row. It enters the id so sibling rows never collide.
    sub_index: int | None = None
    #: Canonical inputs only: id / source / source_index / lang carried over from the table.
    carried: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AdaptContext:
    """What an adapter may need beyond the record itself."""

    #: Fields shared by every record of a JSON object file (e.g. a Super-NaturalInstructions task
    #: header); None for plain record lists.
    header: Mapping[str, Any] | None = None
    #: Explicit field mapping for the ``columns`` adapter.
    columns: Mapping[str, str] | None = None


_WS = re.compile(r"\s+")  # str patterns match NBSP (U+00A0) as whitespace


def normalize_label(value: Any) -> str | None:
    """A source label as a ``task_type``: lowercase, whitespace runs (NBSP too) → ``_``.

    >>> normalize_label("closed\u00a0qa"), normalize_label(" Open QA "), normalize_label("")
    ('closed_qa', 'open_qa', None)
    """
    if not isinstance(value, str):
        return None
    label = _WS.sub("_", value.strip().lower())
    return label or None


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), f"a {type(value).__name__}"
    )


def _fields(record: Mapping[str, Any]) -> str:
    return ", ".join(repr(k) for k in record) or "none"


def _require_str(record: Mapping[str, Any], key: str, adapter: str, *, optional: bool = False) -> str:
    if key not in record or (optional and record[key] is None):
        if optional:
            return ""
        raise RecordError(f"no {key!r} field (fields: {_fields(record)})", f"{key!r} ({adapter})")
    value = record[key]
    if not isinstance(value, str):
        raise RecordError(f"{key!r} is {_type_name(value)}", f"{key!r} to be a string ({adapter})")
    return value


def _maybe_json_list(value: Any) -> Any:
    """Columnar containers (CSV, Parquet string columns) hold nested lists as JSON text."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            return fix_surrogates(json.loads(value))  # "\\ud800" escapes: as the JSON readers do
        except (ValueError, RecursionError):  # RecursionError: nested too deeply
            return value
    return value


def _rest(record: Mapping[str, Any], used: set[str]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in used}


def _label(record: Mapping[str, Any], key: str, meta: dict[str, Any]) -> str | None:
    """Normalized label from ``record[key]``; the original stays in meta if normalizing changed it."""
    raw = record.get(key)
    label = normalize_label(raw)
    if raw is not None and raw != label:
        meta[key] = raw
    return label


def _join(first: str, second: str) -> str:
    return f"{first}\n\n{second}" if second else first


class Adapter:
    """Base of the record-format adapters. Subclasses set ``name`` and ``summary``."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    #: False: the caller copies a file's header fields (``AdaptContext.header``) into each row's
    #: meta; True: the adapter uses them itself.
    uses_header: ClassVar[bool] = False

    def detect(self, fields: Sequence[str], header: Mapping[str, Any] | None) -> str | None:
        """Why these fields look like this format (for logs and the manifest), or None."""
        return None

    def adapt(self, record: Mapping[str, Any], context: AdaptContext) -> list[AdaptedRow]:
        raise NotImplementedError


# ----------------------------------------------------------------------------- chat formats

_OPENAI_ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
    "function": "tool",
}


def _content_text(content: Any, where: str) -> str:
    """A message's content: a string, or a list of typed text parts joined with ""."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if isinstance(part, str):
                texts.append(part)
                continue
            if not isinstance(part, dict):
                raise RecordError(f"{where} content part {j} is {_type_name(part)}", "a text part object")
            kind = part.get("type", "text")
            text = part.get("text", part.get("value"))
            if kind != "text" or not isinstance(text, str):
                raise RecordError(
                    f"{where} content part {j} has type {kind!r}",
                    'text parts only ({"type": "text", "text" or "value": "..."}); '
                    "images and other media are not supported",
                )
            texts.append(text)
        return "".join(texts)
    raise RecordError(f"{where} content is {_type_name(content)}", "a string or a list of text parts")


def _chat_list(record: Mapping[str, Any], key: str, adapter: str) -> list[Any]:
    if key not in record:
        raise RecordError(f"no {key!r} field (fields: {_fields(record)})", f"{key!r} ({adapter})")
    turns = _maybe_json_list(record[key])
    if not isinstance(turns, list):
        raise RecordError(f"{key!r} is {_type_name(turns)}", f"{key!r} to be a list of messages ({adapter})")
    if not turns:
        raise RecordError("empty conversation", f"at least one message in {key!r} ({adapter})")
    return turns


def _messages_meta(extras: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    if any(extras):
        meta["message_extras"] = extras


def _openai_messages(record: Mapping[str, Any], adapter: str) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    turns = _chat_list(record, "messages", adapter)
    messages: list[dict[str, str]] = []
    extras: list[dict[str, Any]] = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise RecordError(f"message {i} is {_type_name(turn)}", "an object with 'role' and 'content'")
        role = turn.get("role")
        if not isinstance(role, str) or role not in _OPENAI_ROLES:  # a list/dict role is unhashable
            raise RecordError(f"message {i} has role {role!r}", f"one of {', '.join(_OPENAI_ROLES)}")
        extra = {k: v for k, v in turn.items() if k not in ("role", "content")}
        if _OPENAI_ROLES[role] != role:
            extra["role"] = role
        content = turn.get("content")
        if content is None and ("tool_calls" in turn or "function_call" in turn):
            text = ""  # an assistant turn that only calls tools; the calls stay in message_extras
        else:
            text = _content_text(content, f"message {i}")
        if not isinstance(content, str) and content is not None:
            extra["content_parts"] = len(content) if isinstance(content, list) else 1
        messages.append({"role": _OPENAI_ROLES[role], "content": text})
        extras.append(extra)
    return messages, extras


class OpenAIAdapter(Adapter):
    """OpenAI / ChatML ``messages: [{role, content}]``.

    ``content`` may be a string or a list of typed text parts (``{"type": "text", "text": ...}``
    or LLaMA-Factory v1's ``{"type": "text", "value": ...}``), joined with ""; the part count is
    kept in ``message_extras[i]["content_parts"]``. Other parts (images) are a row error.
    ``developer`` maps to system and ``function`` to tool (original role kept in extras).
    """

    name = "openai"
    summary = "messages: [{role, content}] (OpenAI/ChatML; content as string or text parts)"

    def detect(self, fields: Sequence[str], header: Mapping[str, Any] | None) -> str | None:
        return "field 'messages'" if "messages" in fields else None

    def adapt(self, record: Mapping[str, Any], context: AdaptContext) -> list[AdaptedRow]:
        messages, extras = _openai_messages(record, self.name)
        meta = _rest(record, {"messages"})
        _messages_meta(extras, meta)
        return [AdaptedRow(messages, None, meta)]


_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "model": "assistant",
    "system": "system",
    "function_call": "assistant",
    "observation": "tool",
    "tool": "tool",
    "function": "tool",
}
#: The ``from`` an export writes for each role; any other ``from`` is kept in message_extras.
_SHAREGPT_DEFAULT_FROM = {"user": "human", "assistant": "gpt", "system": "system", "tool": "observation"}


class ShareGPTAdapter(Adapter):
    """ShareGPT ``conversations: [{from, value}]`` (FastChat, LLaMA-Factory, Glaive tool calls).

    ``from``: human/user → user; gpt/assistant/chatgpt/bing/bard/model → assistant; system;
    function_call → assistant (content = the call JSON as written); observation/tool/function →
    tool. A ``from`` other than the default for its role (human, gpt, system, observation) is
    kept as ``message_extras[i]["from"]``. A string ``system`` field becomes a leading system
    message; ``tools`` (a JSON string in Glaive data) and everything else stay in meta.
    """

    name = "sharegpt"
    summary = "conversations: [{from, value}] (ShareGPT/FastChat/Glaive; optional system, tools)"

    def detect(self, fields: Sequence[str], header: Mapping[str, Any] | None) -> str | None:
        return "field 'conversations'" if "conversations" in fields else None

    def adapt(self, record: Mapping[str, Any], context: AdaptContext) -> list[AdaptedRow]:
        turns = _chat_list(record, "conversations", self.name)
        messages: list[dict[str, str]] = []
        extras: list[dict[str, Any]] = []
        used = {"conversations"}
        system = record.get("system")
        if isinstance(system, str) and system:
            messages.append({"role": "system", "content": system})
            extras.append({})
            used.add("system")
        for i, turn in enumerate(turns):
            if not isinstance(turn, dict):
                raise RecordError(f"message {i} is {_type_name(turn)}", "an object with 'from' and 'value'")
            sender = turn.get("from", turn.get("role"))
            if not isinstance(sender, str) or sender not in _SHAREGPT_ROLES:  # unhashable otherwise
                raise RecordError(f"message {i} has 'from' {sender!r}", f"one of {', '.join(_SHAREGPT_ROLES)}")
            value = turn.get("value", turn.get("content"))
            if not isinstance(value, str):
                raise RecordError(f"message {i} value is {_type_name(value)}", "'value' to be a string")
            role = _SHAREGPT_ROLES[sender]
            extra = {k: v for k, v in turn.items() if k not in ("from", "value", "role", "content")}
            if sender != _SHAREGPT_DEFAULT_FROM[role]:
                extra["from"] = sender
            messages.append({"role": role, "content": value})
            extras.append(extra)
        meta = _rest(record, used)
        _messages_meta(extras, meta)
        return [AdaptedRow(messages, None, meta)]


# ----------------------------------------------------------------------------- single-turn formats


def _history(record: Mapping[str, Any], adapter: str) -> list[dict[str, str]]:
    history = _maybe_json_list(record.get("history"))
    if history is None:
        return []
    if not isinstance(history, list):
        raise RecordError(f"'history' is {_type_name(history)}", "a list of [user, assistant] pairs")
    out = []
    for i, pair in enumerate(history):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(s, str) for s in pair)):
            raise RecordError(f"'history' item {i} is not a [user, assistant] pair of strings", f"({adapter})")
        out += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    return out


class AlpacaAdapter(Adapter):
    """Alpaca ``instruction``/``input``/``output`` (+ optional ``system``, ``history``).

    The user message is the instruction, plus "\\n\\n" + input when input is non-empty (as
    Alpaca's own prompt joins them); ``input`` stays in meta so an export back is exact.
    ``history`` ([user, assistant] pairs) comes before the turn, a string ``system`` first.
    Variants: Data-Juicer's ``text`` as the instruction (when there is no ``instruction``), and
    Self-Instruct tasks (``instruction`` + ``instances: [{input, output}]``): one row per instance;
    with several instances the instance position enters the row id and meta["instance_index"].
    ``is_classification`` is kept in meta and does not set ``task_type``.
    """

    name = "alpaca"
    summary = "instruction/input/output (Alpaca; also text/input/output and self-instruct instances)"

    def detect(self, fields: Sequence[str], header: Mapping[str, Any] | None) -> str | None:
        if "instruction" in fields and "instances" in fields:
            return "fields 'instruction', 'instances' (self-instruct)"
        if "instruction" in fields and "output" in fields:
            return "fields 'instruction', 'output'"
        if "text" in fields and "output" in fields:
            return "fields 'text', 'output' (text as instruction)"
        return None

    def adapt(self, record: Mapping[str, Any], context: AdaptContext) -> list[AdaptedRow]:
        key = "instruction" if "instruction" in record or "text" not in record else "text"
        instruction = _require_str(record, key, self.name)
        prefix = _history(record, self.name)
        used = {key, "history"}
        system = record.get("system")
        if isinstance(system, str):
            used.add("system")
            if system:
                prefix = [{"role": "system", "content": system}, *prefix]
        if "instances" in record and "output" not in record:
            return self._instances(record, instruction, prefix, used)
        if "output" not in record:
            raise RecordError(f"no 'output' field (fields: {_fields(record)})", "'output' (alpaca)")
        inp = _require_str(record, "input", self.name, optional=True)
        output = _require_str(record, "output", self.name)
        messages = [
            *prefix,
            {"role": "user", "content": _join(instruction, inp)},
            {"role": "assistant", "content": output},
        ]
        return [AdaptedRow(messages, None, _rest(record, used | {"output"}))]

    def _instances(
        self, record: Mapping[str, Any], instruction: str, prefix: list[dict[str, str]], used: set[str]
    ) -> list[AdaptedRow]:
        instances = _maybe_json_list(record["instances"])
        if not isinstance(instances, list) or not instances:
            raise RecordError(
                f"'instances' is {_type_name(instances) if instances != [] else 'empty'}",
                "a non-empty list of {input, output} (self-instruct)",
            )
        rows = []
        several = len(instances) > 1
        for i, inst in enumerate(instances):
            if not isinstance(inst, dict):
                raise RecordError(f"instance {i} is {_type_name(inst)}", "an object with 'input' and 'output'")
            inp = _require_str(inst, "input", self.name, optional=True)
            output = _require_str(inst, "output", f"{self.name}, instance {i}")
            meta = _rest(record, used | {"instances"})
            leftover = _rest(inst, {"output"})  # input is kept, as for plain Alpaca
            if several:
                meta["instance_index"] = i
            meta["instance"] = leftover
            messages = [
                *prefix,
                {"role": "user", "content": _join(instruction, inp)},
                {"role": "assistant", "content": output},
            ]
            rows.append(AdaptedRow(messages, None, meta, i if several else None))
        return rows


class DollyAdapter(Adapter):
    """Dolly ``instruction``/``context``/``response``/``category``.

    User = instruction + "\\n\\n" + context when context is non-empty (``context`` also stays in
    meta); ``task_type`` = normalized ``category``.
    """

    name = "dolly"
    summary = "instruction/context/response/category (databricks-dolly)"

    def detect(self, fields: Sequence[str], header: Mapping[str, Any] | None) -> str | None:
        if "instruction" in fields and "response" in fields:
            return "fields 'instruction', 'response'"
        return None

    def adapt(self, record: Mapping[str, Any], context: AdaptContext) -> list[AdaptedRow]:
        instruction = _require_str(record, "instruction", self.name)
        ctx = _require_str(record, "context", self.name, optional=True)
        response = _require_str(record, "response", self.name)
        meta = _rest(record, {"instruction", "response", "category"})
        task_type = _label(record, "category", meta)
        messages = [
            {"role": "user", "content": _join(instruction, ctx)},
            {"role": "assistant", "content": response},
        ]
        return [AdaptedRow(messages, task_type, meta)]


_PC_PAIRS = (
    ("prompt", "completion"),
    ("question", "answer"),
    ("question", "std_answer"),
    ("question", "response"),
)


class PromptCompletionAdapter(Adapter):
    """One prompt and one response: ``prompt``/``completion``, ``question``/``answer`` and
    BELLE's ``question``/``std_answer``/``class``. ``class`` (or ``category``) → ``task_type``.
    An empty response is kept as an empty assistant message (filters decide about it).
    """

    name = "prompt_completion"
    summary = "prompt/completion, question/answer, question/std_answer/class (BELLE)"

    def detect(self, fields: Sequence[str], header: Mapping[str, Any] | None) -> str | None:
        for p, c in _PC_PAIRS:
            if p in fields and c in fields:
                return f"fields {p!r}, {c!r}"
        return None

    def adapt(self, record: Mapping[str, Any], context: AdaptContext) -> list[AdaptedRow]:
        pair = next(((p, c) for p, c in _PC_PAIRS if p in record and c in record), None)
        if pair is None:
            raise RecordError(
                f"no prompt/response pair (fields: {_fields(record)})",
                "'prompt' and 'completion' or 'question' and 'answer'/'std_answer' (prompt_completion)",
            )
        prompt = _require_str(record, pair[0], self.name)
        completion = _require_str(record, pair[1], self.name)
        label_key = "class" if "class" in record else "category"
        meta = _rest(record, {*pair, label_key})
        task_type = _label(record, label_key, meta)
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
        return [AdaptedRow(messages, task_type, meta)]


class MTBenchAdapter(Adapter):
    """MT-bench questions: ``turns`` (user strings, no responses) → user messages only;
    ``category`` → ``task_type``; ``question_id``, ``reference`` stay in meta."""

    name = "mtbench"
    summary = "turns: [user strings] + category (MT-bench questions, prompts only)"

    def detect(self, fields: Sequence[str], header: Mapping[str, Any] | None) -> str | None:
        return "field 'turns'" if "turns" in fields else None

    def adapt(self, record: Mapping[str, Any], context: AdaptContext) -> list[AdaptedRow]:
        turns = _chat_list(record, "turns", self.name)
        if not all(isinstance(t, str) for t in turns):
            raise RecordError("'turns' holds a non-string", "a list of user prompts as strings (mtbench)")
        meta = _rest(record, {"turns", "category"})
        task_type = _label(record, "category", meta)
        return [AdaptedRow([{"role": "user", "content": t} for t in turns], task_type, meta)]


class TextAdapter(Adapter):
    """Plain ``text`` records (pretraining-style or Data-Juicer demos): one user message."""

    name = "text"
    summary = "text only (one user message)"

    def detect(self, fields: Sequence[str], header: Mapping[str, Any] | None) -> str | None:
        return "field 'text'" if "text" in fields else None

    def adapt(self, record: Mapping[str, Any], context: AdaptContext) -> list[AdaptedRow]:
        text = _require_str(record, "text", self.name)
        return [AdaptedRow([{"role": "user", "content": text}], None, _rest(record, {"text"}))]


#: Header fields of a Super-NaturalInstructions task that are not copied into every row: the
#: definition is in the user message; few-shot examples are task-level, not rows.
_NI_NOT_PER_ROW = {"Definition", "Positive Examples", "Negative Examples", "Instances"}


class NaturalInstructionsAdapter(Adapter):
    """A Super-NaturalInstructions task: header + ``Instances: [{id?, input, output: [str]}]``.

    One row per instance: user = ``Definition`` (a list of strings joined with "\\n") + "\\n\\n" +
    input; assistant = ``output[0]`` (further outputs in meta["other_outputs"]); ``task_type`` =
    first of ``Categories``, normalized. Each row's meta: the instance's id and input and the
    header fields except Definition and the Positive/Negative Examples (task-level few-shot).
    """

    name = "natural_instructions"
    uses_header = True
    summary = "Super-NaturalInstructions task object (Definition + Instances)"

    def detect(self, fields: Sequence[str], header: Mapping[str, Any] | None) -> str | None:
        if header is not None and "Definition" in header:
            return "task header with 'Definition' and 'Instances'"
        return None

    def adapt(self, record: Mapping[str, Any], context: AdaptContext) -> list[AdaptedRow]:
        header = context.header or {}
        definition = header.get("Definition")
        if isinstance(definition, list) and all(isinstance(d, str) for d in definition):
            definition = "\n".join(definition)
        if not isinstance(definition, str):
            raise RecordError(
                f"the task's 'Definition' is {_type_name(definition)}",
                "a string or list of strings (natural_instructions)",
            )
        inp = _require_str(record, "input", self.name)
        outputs = record.get("output")
        if isinstance(outputs, str):
            outputs = [outputs]
        if not (isinstance(outputs, list) and outputs and all(isinstance(o, str) for o in outputs)):
            raise RecordError(
                f"'output' is {_type_name(outputs)}", "a non-empty list of strings (natural_instructions)"
            )
        meta = _rest(record, {"output"})
        if len(outputs) > 1:
            meta["other_outputs"] = outputs[1:]
        meta.update({k: v for k, v in header.items() if k not in _NI_NOT_PER_ROW and k not in meta})
        categories = header.get("Categories")
        first = categories[0] if isinstance(categories, list) and categories else categories
        messages = [
            {"role": "user", "content": _join(definition, inp)},
            {"role": "assistant", "content": outputs[0]},
        ]
        return [AdaptedRow(messages, normalize_label(first), meta)]


class ColumnsAdapter(Adapter):
    """Explicit mapping for anything else: ``columns: {instruction: F, input: F, response: F,
    system: F, task_type: F}`` (instruction and response required). ``input`` joins the
    instruction like Alpaca's and stays in meta; ``task_type`` is normalized."""

    name = "columns"
    summary = "explicit mapping via columns: {instruction, input, response, system, task_type}"
    ROLES: ClassVar[tuple[str, ...]] = ("instruction", "input", "response", "system", "task_type")

    def adapt(self, record: Mapping[str, Any], context: AdaptContext) -> list[AdaptedRow]:
        cols = context.columns or {}
        for want in ("instruction", "response"):
            src = cols.get(want)
            if src is None:
                raise RecordError(f"the columns mapping has no {want!r}", f"{want!r} in columns (columns)")
            if src not in record:
                raise RecordError(f"no {src!r} field (fields: {_fields(record)})", f"{src!r} as {want} (columns)")
        instruction = _require_str(record, cols["instruction"], self.name)
        response = _require_str(record, cols["response"], self.name)
        inp = _require_str(record, cols["input"], self.name, optional=True) if "input" in cols else ""
        used = {cols["instruction"], cols["response"]}
        messages = [
            {"role": "user", "content": _join(instruction, inp)},
            {"role": "assistant", "content": response},
        ]
        if "system" in cols:
            system = _require_str(record, cols["system"], self.name, optional=True)
            used.add(cols["system"])
            if system:
                messages.insert(0, {"role": "system", "content": system})
        meta = _rest(record, used)
        task_type = None
        if "task_type" in cols:
            meta.pop(cols["task_type"], None)
            task_type = _label(record, cols["task_type"], meta)
        return [AdaptedRow(messages, task_type, meta)]


#: Canonical columns a table may carry over (besides ``messages``).
_CARRIED = ("id", "source", "source_index", "lang")


class CanonicalAdapter(Adapter):
    """Rows already in winnow's schema (a corpus, or a table with at least ``messages``).

    ``messages`` are read like `OpenAIAdapter`; ``id``, ``source``, ``source_index``, ``lang``
    and ``task_type`` are kept when present and non-null (else assigned). An existing JSON
    object ``meta`` is kept and any extra columns are merged into it.
    """

    name = "canonical"
    summary = "winnow's own schema (messages + id/source/source_index/task_type/lang/meta)"

    def detect(self, fields: Sequence[str], header: Mapping[str, Any] | None) -> str | None:
        if "messages" in fields and "source_index" in fields:
            return "canonical columns 'messages', 'source_index'"
        return None

    def adapt(self, record: Mapping[str, Any], context: AdaptContext) -> list[AdaptedRow]:
        messages, extras = _openai_messages(record, self.name)
        meta: dict[str, Any] = {}
        raw_meta = record.get("meta")
        if isinstance(raw_meta, str):
            try:
                loaded = fix_surrogates(json.loads(raw_meta))
            except (ValueError, RecursionError):
                loaded = None
            meta = loaded if isinstance(loaded, dict) else {"meta": raw_meta}
        elif isinstance(raw_meta, dict):
            meta = dict(raw_meta)
        meta.update(_rest(record, {"messages", "meta", "task_type", *_CARRIED}))
        _messages_meta(extras, meta)
        task_type = record.get("task_type") if isinstance(record.get("task_type"), str) else None
        carried = _carried(record)
        return [AdaptedRow(messages, task_type, meta, carried=carried)]


def _carried(record: Mapping[str, Any]) -> dict[str, Any]:
    """The canonical columns a row keeps: strings, and ``source_index`` a non-negative int64;
    null (or a float NaN, pandas' null) means absent; another type is a record error."""
    carried = {}
    for key in _CARRIED:
        value = record.get(key)
        if value is None or (isinstance(value, float) and value != value):
            continue
        if key == "source_index":
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
                raise RecordError(f"'source_index' is {value!r}", "a non-negative integer (canonical)")
        elif not isinstance(value, str):
            raise RecordError(f"{key!r} is {_type_name(value)}", f"{key!r} to be a string (canonical)")
        carried[key] = value
    return carried


def _registry(*adapters: Adapter) -> dict[str, Adapter]:
    return {a.name: a for a in adapters}


#: Record-format adapters by the name users write as ``format:``. Auto-detection tries them in
#: this order and takes the first whose ``detect`` answers (``columns`` is never auto-detected).
ADAPTERS: dict[str, Adapter] = _registry(
    NaturalInstructionsAdapter(),
    CanonicalAdapter(),
    OpenAIAdapter(),
    ShareGPTAdapter(),
    AlpacaAdapter(),
    DollyAdapter(),
    PromptCompletionAdapter(),
    MTBenchAdapter(),
    TextAdapter(),
    ColumnsAdapter(),
)


def detect_adapter(fields: Sequence[str], header: Mapping[str, Any] | None = None) -> tuple[Adapter, str] | None:
    """The first adapter (in `ADAPTERS` order) that recognises ``fields``, with its reason."""
    for adapter in ADAPTERS.values():
        reason = adapter.detect(fields, header)
        if reason:
            return adapter, reason
    return None
