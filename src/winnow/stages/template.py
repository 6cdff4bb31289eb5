"""Templating stages: render conversations with a chat template, and rephrase instructions.

``template`` writes what a trainer reads — ``text``, ``prompt``/``completion`` and the spans of
the assistant turns — using the Hugging Face chat-template machinery in
:mod:`winnow.chat_template`. ``rephrase`` adds surface variety to single-turn rows with several
phrasings of the same task (FLAN's idea), chosen from a hash of the row id, never from order.
"""

from __future__ import annotations

import hashlib
import json
import string
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from winnow.chat_template import ChatTemplate, ChatTemplateError, check_spec
from winnow.errors import ConfigError, InputError
from winnow.stages.base import Filter, Mapper, Outcome, Verdict, register, split

SPAN = pa.struct([pa.field("start", pa.int64()), pa.field("end", pa.int64())])
#: The columns ``template`` adds (replacing them if a batch has them already).
OUTPUT_COLUMNS = {
    "text": pa.string(),
    "prompt": pa.string(),
    "completion": pa.string(),
    "assistant_spans": pa.list_(SPAN),
}
#: Meta keys where adapters keep the part of the user message that came from a separate field
#: (Alpaca/Natural Instructions ``input``, Dolly ``context``), joined after "\n\n".
INPUT_KEYS = ("input", "context")


def split_input(content: str, meta: str | None) -> tuple[str, str]:
    """``(instruction, input)`` of a user message whose input the adapter kept in ``meta``;
    ``(content, "")`` when there is none or the message is not exactly ``instruction\\n\\ninput``."""
    if not meta or not any(f'"{k}"' in meta for k in INPUT_KEYS):
        return content, ""
    try:
        fields = json.loads(meta)
    except json.JSONDecodeError:
        return content, ""
    if not isinstance(fields, dict):
        return content, ""
    for key in INPUT_KEYS:
        value = fields.get(key)
        if isinstance(value, str) and value and content.endswith("\n\n" + value):
            return content[: -len(value) - 2], value
    return content, ""


@register
class ChatTemplateRenderer(Filter):
    """Render each conversation with a chat template into ``text``, ``prompt``, ``completion``
    and ``assistant_spans``.

    Templates render exactly as transformers' ``apply_chat_template`` does, in its sandbox, so
    any model's template works unchanged. ``prompt + completion == text``: ``completion`` is the
    final assistant turn as rendered (to the end of the text), ``prompt`` everything before it.
    ``assistant_spans`` holds the ``{start, end}`` character offsets in ``text`` of every
    assistant turn: what follows the generation prompt — the content as rendered and the
    end-of-turn marker the template writes after it (``<|im_end|>``, ``<|eot_id|>``, ``</s>``),
    so a trainer that masks the loss to these spans trains the model to stop; whitespace after
    the marker is outside. Spans come from ``{% generation %}`` blocks when the template has
    them, else from rendering each turn's prefix (see :mod:`winnow.chat_template`). A row that
    does not end with an assistant turn has nothing to complete: ``prompt == text`` (ending
    with the generation prompt when ``add_generation_prompt``) and ``completion == ""``.
    For Alpaca-style rows the user message also carries ``instruction`` and ``input`` (from the
    ``input``/``context`` field kept in meta), which the ``alpaca`` template uses.

    Args:
        template: which template: ``{name: NAME}`` for a built-in (chatml, llama-3, mistral,
            gemma, phi-3, zephyr, vicuna, alpaca), ``{path: FILE}`` for a ``.jinja`` file, a
            ``tokenizer_config.json`` or a model folder, or ``{chat_template: "..."}`` for the
            template itself; null: ``{name: chatml}``.
        bos_token: the ``bos_token`` the template sees (null: the built-in's or the file's).
        eos_token: the ``eos_token`` the template sees (null: the built-in's or the file's).
        add_generation_prompt: end rows that do not end with an assistant turn with the
            generation prompt (their ``prompt``, ready to sample from).
        system: a system prompt to insert at the start of rows that have none (null: none).
        date: the date ``strftime_now`` reports, as YYYY-MM-DD (null: today; set it when a
            template prints the date, to keep runs reproducible).
        on_error: ``raise`` stops the run on a row the template rejects (the error names the
            template and the row id); ``drop`` rejects that row with the template's message.

    >>> ChatTemplateRenderer(template={"name": "llama-3"})  # doctest: +ELLIPSIS
    ChatTemplateRenderer(template={'name': 'llama-3'}, bos_token=None, eos_token=None, ...)
    """

    name = "template"

    def __init__(
        self,
        template: dict[str, str] | None = None,
        bos_token: str | None = None,
        eos_token: str | None = None,
        add_generation_prompt: bool = True,
        system: str | None = None,
        date: str | None = None,
        on_error: Literal["raise", "drop"] = "raise",
    ) -> None:
        template = dict(template) if template is not None else {"name": "chatml"}
        if check_spec(template) == "path" and not Path(template["path"]).exists():
            raise ConfigError(f"template.path {template['path']} does not exist", "template")
        if date is not None:
            try:
                datetime.strptime(date, "%Y-%m-%d")
            except ValueError:
                raise ConfigError(f"date must be YYYY-MM-DD, got {date!r}", "date") from None
        if on_error not in ("raise", "drop"):
            raise ConfigError(f"on_error must be raise or drop, got {on_error!r}", "on_error")
        self.template = template
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.add_generation_prompt = add_generation_prompt
        self.system = system
        self.date = date
        self.on_error = on_error
        self._renderer: ChatTemplate | None = None

    def __getstate__(self) -> dict[str, Any]:
        # The compiled template stays behind: each worker compiles its own in setup().
        return {**self.__dict__, "_renderer": None}

    def setup(self) -> None:
        if self._renderer is None:
            self._renderer = self.load()

    def load(self) -> ChatTemplate:
        """The chat template this stage renders with (compiled on first use)."""
        now = None
        if self.date is not None:
            fixed = datetime.combine(date.fromisoformat(self.date), datetime.min.time())
            now = lambda: fixed  # noqa: E731
        return ChatTemplate.from_spec(self.template, bos_token=self.bos_token, eos_token=self.eos_token, now=now)

    def external_fingerprint(self) -> str | None:
        # The template file (or a built-in's file) is data the stage reads: hash it.
        return self.load().fingerprint()

    def reasons(self, batch: pa.Table) -> Verdict:
        return self._render(batch)[1]

    def process(self, batch: pa.Table) -> Outcome:
        table, verdict = self._render(batch)
        return split(self.name, table, verdict)

    def _render(self, batch: pa.Table) -> tuple[pa.Table, Verdict]:
        self.setup()
        renderer = self._renderer
        assert renderer is not None
        ids = batch.column("id").to_pylist()
        metas = batch.column("meta").to_pylist()
        out: dict[str, list[Any]] = {name: [] for name in OUTPUT_COLUMNS}
        reasons: list[str | None] = []
        kinds: list[str | None] = []
        for row_id, messages, meta in zip(ids, batch.column("messages").to_pylist(), metas):
            messages = [dict(m) for m in messages or []]
            if self.system is not None and not any(m.get("role") == "system" for m in messages):
                messages.insert(0, {"role": "system", "content": self.system})
            user = next((m for m in messages if m.get("role") == "user"), None)
            if user is not None:
                instruction, given = split_input(user.get("content") or "", meta)
                if given:
                    user["instruction"], user["input"] = instruction, given
            try:
                r = renderer.render_spans(messages, self.add_generation_prompt)
            except ChatTemplateError as e:
                if self.on_error == "raise":
                    raise InputError(f"{e} (row {row_id}); set on_error: drop to reject such rows instead") from None
                for values in out.values():
                    values.append(None)
                reasons.append(str(e))
                kinds.append("not prefix-stable" if "prefix-stable" in str(e) else "template error")
                continue
            out["text"].append(r.text)
            out["prompt"].append(r.prompt)
            out["completion"].append(r.completion)
            out["assistant_spans"].append([{"start": s, "end": e} for s, e in r.spans])
            reasons.append(None)
            kinds.append(None)
        for name, kind in OUTPUT_COLUMNS.items():
            column = pa.array(out[name], kind)
            if name in batch.column_names:
                batch = batch.set_column(batch.column_names.index(name), name, column)
            else:
                batch = batch.append_column(name, column)
        return batch, Verdict(pa.array(reasons, pa.string()), pa.array(kinds, pa.string()))


# -- rephrase ---------------------------------------------------------------------------------

#: Default phrasings per task type. Each keeps the instruction itself (so no constraint in it
#: — length, format — is lost and the response still fits); ``{input}`` ones apply to rows whose
#: input/context is known, the others to rows without one. ``{instruction}\n\n{input}`` and
#: ``{instruction}`` are the rows' own forms, so some rows drawn keep their wording.
DEFAULT_PHRASINGS: dict[str, list[str]] = {
    "summarization": [
        "{instruction}\n\n{input}",
        "{input}\n\n{instruction}",
        "Read the passage below, then do the task.\n\nPassage:\n{input}\n\nTask: {instruction}",
        "Summarization task: {instruction}\n\nText:\n{input}",
        "{instruction}",
        "Summarization task: {instruction}",
    ],
    "closed_qa": [
        "{instruction}\n\n{input}",
        "{input}\n\nBased on the text above: {instruction}",
        "Answer using only the reference text.\n\nReference text:\n{input}\n\nQuestion: {instruction}",
        "{instruction}",
        "Question: {instruction}",
    ],
    "information_extraction": [
        "{instruction}\n\n{input}",
        "{input}\n\nFrom the text above: {instruction}",
        "Extract the requested information.\n\nText:\n{input}\n\nRequest: {instruction}",
        "{instruction}",
        "Extraction task: {instruction}",
    ],
    "classification": [
        "{instruction}",
        "Task: {instruction}",
        "{instruction}\n\n{input}",
        "Input:\n{input}\n\nTask: {instruction}",
    ],
    "open_qa": ["{instruction}", "Question: {instruction}", "Answer the following question.\n{instruction}"],
    "brainstorming": [
        "{instruction}",
        "Task: {instruction}",
        "Come up with ideas for the following. {instruction}",
    ],
    "creative_writing": [
        "{instruction}",
        "Writing task: {instruction}",
        "Write a response to this prompt.\n{instruction}",
    ],
}
_FIELDS = ("instruction", "input")


def _fields(phrasing: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(phrasing) if f is not None}


@register
class InstructionRephraser(Mapper):
    """Rephrase the instruction of single-turn rows with task-type templates (FLAN-style).

    A row with one user turn and one assistant turn (after an optional system message) whose
    ``task_type`` has phrasings gets one of them, picked from a hash of its id and ``seed`` — so
    the same row gets the same phrasing in any batch, worker or run. ``{instruction}`` is the
    user message (without its input), ``{input}`` the input/context the adapter kept in meta
    (Alpaca ``input``, Dolly ``context``); phrasings with ``{input}`` are used for rows that have
    one and phrasings without it for rows that have none, so an input is never dropped. The
    original user message goes to ``meta["original_instruction"]``, so nothing is lost. Rows of
    other task types, multi-turn rows and rows left out by ``fraction`` are unchanged.

    Args:
        templates: phrasings per task type, with ``{instruction}`` and ``{input}`` fields
            (``{{``/``}}`` for literal braces); each entry replaces the default list of that
            task type, ``[]`` turns a task type off (null: the defaults only).
        seed: changes which rows are rephrased and with which phrasing.
        fraction: share of eligible rows to rephrase (0 to 1).
        languages: languages the phrasings are written in: a row whose ``lang`` is another is
            left alone, and a row without ``lang`` is rephrased only if its instruction is
            mostly Latin letters (so an English wrapper never lands on a Chinese instruction);
            null: ``[en]``; ``[]``: every row.

    >>> InstructionRephraser(templates={"summarization": ["TL;DR: {instruction}"]}, fraction=1.0)
    InstructionRephraser(templates={'summarization': ['TL;DR: {instruction}']}, seed=0, fraction=1.0, languages=['en'])
    """

    name = "rephrase"

    def __init__(
        self,
        templates: dict[str, list[str]] | None = None,
        seed: int = 0,
        fraction: float = 0.5,
        languages: list[str] | None = None,
    ) -> None:
        for task, phrasings in (templates or {}).items():
            if not isinstance(phrasings, list):
                raise ConfigError(f"templates.{task} must be a list of strings", "templates")
            for phrasing in phrasings:
                try:
                    fields = _fields(phrasing)
                except (ValueError, TypeError) as e:
                    raise ConfigError(
                        f"templates.{task}: {phrasing!r} is not a valid template: {e}", "templates"
                    ) from None
                bad = fields - set(_FIELDS)
                if bad or not fields:
                    raise ConfigError(
                        f"templates.{task}: {phrasing!r} must use {{instruction}} and/or {{input}}"
                        + (f", not {{{sorted(bad)[0]}}}" if bad else ""),
                        "templates",
                    )
        if not 0.0 <= fraction <= 1.0:
            raise ConfigError(f"fraction must be between 0 and 1, got {fraction}", "fraction")
        self.templates = templates
        self.seed = seed
        self.fraction = fraction
        self.languages = list(languages) if languages is not None else ["en"]

    def phrasings(self) -> dict[str, list[str]]:
        """The phrasings in effect: the defaults, with ``templates`` replacing whole entries."""
        return {k: v for k, v in {**DEFAULT_PHRASINGS, **(self.templates or {})}.items() if v}

    def transform(self, batch: pa.Table) -> pa.Table:
        table = self.phrasings()
        if batch.num_rows == 0 or not table:
            return batch
        messages = batch.column("messages").combine_chunks()
        roles = pc.list_flatten(messages).field("role")
        parents = pc.list_parent_indices(messages).to_numpy(zero_copy_only=False)
        n = batch.num_rows
        is_user = pc.fill_null(pc.equal(roles, "user"), False).to_numpy(zero_copy_only=False)
        is_assistant = pc.fill_null(pc.equal(roles, "assistant"), False).to_numpy(zero_copy_only=False)
        users = np.bincount(parents[is_user], minlength=n)
        assistants = np.bincount(parents[is_assistant], minlength=n)
        lengths = pc.fill_null(pc.list_value_length(messages), 0).to_numpy(zero_copy_only=False)
        task = pc.fill_null(pc.is_in(batch.column("task_type"), pa.array(list(table), pa.string())), False)
        # single turn: one user, one assistant, nothing else but a system message
        candidates = np.flatnonzero(
            task.to_numpy(zero_copy_only=False) & (users == 1) & (assistants == 1) & (lengths - users - assistants <= 1)
        )
        if candidates.size == 0:
            return batch
        ids = batch.column("id").to_pylist()
        langs = batch.column("lang").to_pylist()
        tasks = batch.column("task_type").to_pylist()
        metas = batch.column("meta").to_pylist()
        rows = messages.to_pylist()
        new_messages: dict[int, list[dict[str, Any]]] = {}
        new_meta: dict[int, str] = {}
        for i in candidates.tolist():
            pick, which = self._draw(ids[i])
            if pick >= self.fraction:
                continue
            turns = rows[i]
            u = next(j for j, m in enumerate(turns) if m["role"] == "user")
            original = turns[u]["content"] or ""
            instruction, given = split_input(original, metas[i])
            if self.languages and not (
                langs[i] in self.languages if langs[i] is not None else _mostly_latin(instruction)
            ):
                continue
            # A phrasing with {input} fits rows with a known input, one without fits rows with none,
            # so that no input is ever dropped or invented.
            usable = [p for p in table[tasks[i]] if ("input" in _fields(p)) == bool(given)]
            if not usable:
                continue
            phrased = usable[which % len(usable)].format(instruction=instruction, input=given)
            if phrased == original:
                continue
            turns = [dict(m) for m in turns]
            turns[u]["content"] = phrased
            new_messages[i] = turns
            meta = _load_meta(metas[i], ids[i])
            meta["original_instruction"] = original
            new_meta[i] = json.dumps(meta, ensure_ascii=False)
        if not new_messages:
            return batch
        column = pa.array([new_messages.get(i, rows[i]) for i in range(n)], messages.type)
        meta_column = pa.array([new_meta.get(i, metas[i]) for i in range(n)], pa.string())
        batch = batch.set_column(batch.column_names.index("messages"), "messages", column)
        return batch.set_column(batch.column_names.index("meta"), "meta", meta_column)

    def _draw(self, row_id: str) -> tuple[float, int]:
        """Two numbers from the row id and seed: a uniform draw in [0, 1) and a choice index."""
        h = hashlib.blake2b(f"{self.seed}\0{row_id}".encode("utf-8", "surrogatepass"), digest_size=16).digest()
        return int.from_bytes(h[:8], "big") / 2**64, int.from_bytes(h[8:], "big")


def _mostly_latin(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and sum(c < "\u0250" for c in letters) >= 0.5 * len(letters)


def _load_meta(meta: str | None, row_id: str) -> dict[str, Any]:
    if not meta:
        return {}
    try:
        value = json.loads(meta)
    except json.JSONDecodeError as e:
        raise InputError(f"row {row_id}: meta is not valid JSON ({e})") from None
    return value if isinstance(value, dict) else {"meta": value}
