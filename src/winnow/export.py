"""Export a corpus version to the files a trainer reads, so nobody writes a conversion script.

One target per trainer or shape (the names are a public contract, like the stage names):

========================  =====================================================================
``trl``                   ``train.jsonl``/``validation.jsonl`` (or ``.parquet``) in one of TRL's
                          SFT dataset types: ``messages`` (conversational language modeling,
                          default), ``prompt-completion``, ``text``
``axolotl``               ``train.jsonl``/``validation.jsonl`` with ``messages`` + ``axolotl.yaml``
                          (the ``datasets:``/``test_datasets:`` block for ``type: chat_template``)
``llama-factory``         ``train.jsonl``/``validation.jsonl`` in its ShareGPT layout (default) or
                          Alpaca layout + ``dataset_info.json``; OUT is LLaMA-Factory's ``dataset_dir``
``openai``                ``train.jsonl``/``validation.jsonl`` for chat fine-tuning, validated
``alpaca``, ``sharegpt``  ``train.jsonl``/``validation.jsonl`` back in those shapes, with the
                          original fields kept in ``meta`` restored (exact for rows that came from
                          that shape)
``hf``                    ``datasets.DatasetDict.save_to_disk`` (train/validation, every column) +
                          the version's ``README.md`` card
========================  =====================================================================

Every export also writes ``export.json`` (corpus, version, fingerprint, target, counts, files with
sha256, winnow version). Rows a target cannot hold (an OpenAI example whose last message is not the
assistant's, a conversation that does not alternate the way LLaMA-Factory requires, ...) are never
dropped silently: they go to ``rejected.jsonl`` with ``id``, ``split`` and ``reason``.

How it is built, and why:

- It streams: shards are read a record batch at a time with pyarrow and written line by line, so
  memory does not grow with the corpus (``hf`` goes through ``datasets``' own Arrow writer).
- Each file is written under a hidden temporary name in OUT (opened exclusively, so a planted
  link is never followed) and renamed into place; ``export.json`` is written last, so its presence
  means the export is complete. File names are fixed by the target; nothing read from the data is
  ever used as a path.
- Trainer targets (``trl``, ``axolotl``, ``llama-factory``, ``openai``) write only the fields the
  trainer reads. ``alpaca`` and ``sharegpt`` restore the original fields from ``meta``, which is
  what makes ``ingest → export → ingest`` give the same rows.

>>> from winnow.export import export_corpus
>>> export_corpus("corpus/quickstart@v1", "out/openai", to="openai").counts  # doctest: +SKIP
{'train': 98, 'validation': 2, 'rejected': 0}
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import json
import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from winnow import __version__, schema
from winnow.corpus import SPLITS, Corpus, parse_ref, sha256_file
from winnow.errors import ConfigError, InvariantError, MissingDependencyError

log = logging.getLogger(__name__)

EXPORT_JSON = "export.json"
REJECTED_FILE = "rejected.jsonl"

#: Targets, and the layouts each can write (the first is the default).
LAYOUTS: dict[str, tuple[str, ...]] = {
    "trl": ("messages", "prompt-completion", "text"),
    "axolotl": ("messages",),
    "llama-factory": ("sharegpt", "alpaca"),
    "openai": ("messages",),
    "alpaca": ("alpaca",),
    "sharegpt": ("sharegpt",),
    "hf": ("canonical",),
}
FORMATS = tuple(LAYOUTS)
#: File formats each target can write (the first is the default).
FILE_FORMATS: dict[str, tuple[str, ...]] = {
    "trl": ("jsonl", "parquet"),
    "hf": ("arrow",),
    **{t: ("jsonl",) for t in ("axolotl", "llama-factory", "openai", "alpaca", "sharegpt")},
}
#: axolotl's ``chat_template:`` when none is given: the model's own template, ChatML without one.
DEFAULT_AXOLOTL_TEMPLATE = "tokenizer_default_fallback_chatml"

#: Keys winnow itself puts in ``meta``; never written back as fields of a record.
_INTERNAL_META = {"message_extras", "_ingest_note"}
#: The ShareGPT ``from`` for each role (the ingest adapter's defaults, so a round trip is exact).
_SHAREGPT_FROM = {"user": "human", "assistant": "gpt", "system": "system", "tool": "observation"}
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_ROWS_PER_READ = 1000


class Rejected(Exception):
    """A row the target cannot hold; ``str()`` is the reason written to ``rejected.jsonl``."""


@dataclass
class ExportResult:
    """What an export wrote: where, from which version, how many rows, which files."""

    path: Path
    format: str
    layout: str
    file_format: str
    corpus: Path
    version: str
    fingerprint: str
    counts: dict[str, int]
    files: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: The entry name in LLaMA-Factory's ``dataset_info.json`` (llama-factory only).
    dataset_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"], d["corpus"] = str(self.path), str(self.corpus)
        return d


# ----------------------------------------------------------------------------- the entry point


def export_corpus(
    corpus: str | os.PathLike[str] | Corpus,
    out: str | os.PathLike[str],
    to: str,
    *,
    version: str | int | None = None,
    layout: str | None = None,
    file_format: str | None = None,
    name: str | None = None,
    chat_template: str | None = None,
    force: bool = False,
) -> ExportResult:
    """Write a corpus version into the folder ``out`` in the shape the target ``to`` reads.

    ``corpus`` is a folder or a reference like ``corpus/name@v3`` (``version`` overrides the
    reference's). ``layout``: the target's variant (trl: messages, prompt-completion, text;
    llama-factory: sharegpt, alpaca). ``file_format``: trl only, jsonl or parquet. ``name``: the
    dataset's name in LLaMA-Factory's ``dataset_info.json`` (default: the corpus folder's name).
    ``chat_template``: axolotl's ``chat_template:`` value. ``force``: write into a non-empty
    ``out``, first removing the files an earlier export listed in its ``export.json``.
    """
    target, layout, file_format = _check_target(to, layout, file_format, chat_template)
    if isinstance(corpus, Corpus):
        store, ref_version = corpus, "latest"
    else:
        path, ref_version = parse_ref(str(corpus))
        store = Corpus(path)
    folder = store.resolve(version if version is not None else ref_version)
    manifest = store.manifest(folder.name)
    name = _dataset_name(name, store.path)
    out_dir = _prepare_out(Path(out), store.path, force)

    result = ExportResult(
        path=out_dir,
        format=target,
        layout=layout,
        file_format=file_format,
        corpus=store.path.resolve(),
        version=folder.name,
        fingerprint=str(manifest.get("fingerprint", "")),
        counts={"train": 0, "validation": 0, "rejected": 0},
        dataset_name=name if target == "llama-factory" else None,
    )
    if target == "hf":
        _export_hf(store, folder, out_dir, result)
    else:
        _export_rows(store, folder, out_dir, result, chat_template, name)
    _write_export_json(out_dir, result)
    return result


def _check_target(
    to: str, layout: str | None, file_format: str | None, chat_template: str | None
) -> tuple[str, str, str]:
    if to not in LAYOUTS:
        raise ConfigError(f"unknown export format '{to}'{_hint(to, FORMATS)}; choose one of {', '.join(FORMATS)}")
    layouts = LAYOUTS[to]
    layout = layout or layouts[0]
    if layout not in layouts:
        raise ConfigError(f"'{to}' has no layout '{layout}'{_hint(layout, layouts)}; its layouts: {', '.join(layouts)}")
    formats = FILE_FORMATS[to]
    file_format = file_format or formats[0]
    if file_format not in formats:
        raise ConfigError(
            f"'{to}' cannot write file format '{file_format}'; it writes {', '.join(formats)}"
            + ("" if to == "trl" else " (--file-format parquet is for trl)")
        )
    if chat_template is not None and to != "axolotl":
        raise ConfigError(f"--chat-template is for the axolotl target, not '{to}'")
    return to, layout, file_format


def _hint(word: str, choices: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _dataset_name(name: str | None, corpus_path: Path) -> str:
    if name is None:
        return re.sub(r"[^A-Za-z0-9._-]+", "_", corpus_path.resolve().name).strip("._-") or "winnow"
    if not _PLAIN_NAME.match(name):
        raise ConfigError(f"dataset name '{name}' must be letters, digits, '.', '_' or '-'")
    return name


def _prepare_out(out: Path, corpus_path: Path, force: bool) -> Path:
    """OUT as an absolute folder that exists and is ours to write into."""
    out = out.resolve()
    corpus_root = corpus_path.resolve()
    if out == corpus_root or corpus_root in out.parents:
        raise ConfigError(f"{out} is inside the corpus {corpus_root}; export to a folder outside it")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file; OUT must be a folder (new, empty, or an earlier export with --force)")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise ConfigError(f"{out} is not empty; choose a new folder, or pass --force to replace an earlier export")
        _remove_previous_export(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _remove_previous_export(out: Path) -> None:
    """Remove only what an earlier export listed (plain names directly in OUT), never anything else."""
    record = out / EXPORT_JSON
    if not record.is_file():
        return
    try:
        listed = [f["path"] for f in json.loads(record.read_text()).get("files", [])]
    except (ValueError, TypeError, KeyError, AttributeError):
        raise ConfigError(f"{record} is not an export record winnow wrote; remove the folder yourself") from None
    for entry in [*listed, EXPORT_JSON]:
        if not isinstance(entry, str) or not _PLAIN_NAME.match(entry):
            continue
        path = out / entry
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


# ----------------------------------------------------------------------------- reading rows


def _rows(store: Corpus, version: str, split: str) -> Iterator[dict[str, Any]]:
    """A split's rows as dicts, one record batch at a time (never the whole split in memory)."""
    for shard in store.files(version, split):
        for batch in pq.ParquetFile(shard).iter_batches(batch_size=_ROWS_PER_READ):
            yield from batch.to_pylist()


def _columns(store: Corpus, version: str) -> list[str]:
    return pq.read_schema(store.files(version, "train")[0]).names


def _meta(row: Mapping[str, Any]) -> dict[str, Any]:
    raw = row.get("meta")
    if isinstance(raw, str) and raw:
        try:
            value = json.loads(raw)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}
    return {}


def _extras(meta: Mapping[str, Any], count: int) -> list[dict[str, Any]]:
    """Per-message extras the ingest adapter kept (``meta["message_extras"]``), or empty dicts."""
    extras = meta.get("message_extras")
    if isinstance(extras, list) and len(extras) == count:
        return [e if isinstance(e, dict) else {} for e in extras]
    return [{} for _ in range(count)]


def _plain(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _roles(messages: list[dict[str, Any]]) -> str:
    return "/".join(m["role"] for m in messages) or "none"


def _restore(record: dict[str, Any], meta: Mapping[str, Any], skip: Collection[str] = ()) -> dict[str, Any]:
    """Add the row's original fields from ``meta`` to ``record`` (the record's own fields win)."""
    for key, value in meta.items():
        if key not in _INTERNAL_META and key not in skip and key not in record:
            record[key] = value
    return record


# ----------------------------------------------------------------------------- row shapes


def to_messages(row: Mapping[str, Any]) -> dict[str, Any]:
    """TRL/axolotl conversational language modeling: ``{"messages": [{role, content}, ...]}``."""
    return {"messages": _plain(row["messages"])}


def to_prompt_completion(row: Mapping[str, Any]) -> dict[str, Any]:
    """TRL conversational prompt-completion: everything before the last (assistant) message is the
    prompt, that message the completion, so TRL's completion-only loss trains on the answer only."""
    messages = _plain(row["messages"])
    if len(messages) < 2 or messages[-1]["role"] != "assistant":
        raise Rejected(f"prompt-completion needs a prompt and a final assistant message; roles are {_roles(messages)}")
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def _split_input(user: str, meta: Mapping[str, Any]) -> tuple[str, str, str | None]:
    """(instruction, input, meta key used): undo the ``instruction + "\\n\\n" + input`` join of the
    Alpaca (``input``) and Dolly (``context``) adapters, where the message still ends with it."""
    for key in ("input", "context"):
        value = meta.get(key)
        if not isinstance(value, str):
            continue
        if not value:
            return user, "", key
        suffix = "\n\n" + value
        if user.endswith(suffix):
            return user[: -len(suffix)], value, key
    return user, "", None


def to_alpaca(row: Mapping[str, Any], restore: bool = True) -> dict[str, Any]:
    """Alpaca ``instruction``/``input``/``output`` (+ ``system``, ``history`` pairs when present).

    The instruction and input come apart again where ``meta`` holds the original ``input`` (or
    Dolly's ``context``) and the user message still ends with it; otherwise the whole user message
    is the instruction and ``input`` is "". With ``restore`` the row's other original fields come
    back too, so a row ingested from Alpaca exports to the record it was read from.
    """
    messages = row["messages"]
    meta = _meta(row)
    system = None
    body = list(messages)
    if body and body[0]["role"] == "system":
        system, body = body[0]["content"], body[1:]
    expected = ["user", "assistant"] * (len(body) // 2)
    if not body or [m["role"] for m in body] != expected:
        raise Rejected(
            "alpaca holds an optional system message, then user/assistant pairs ending with the "
            f"assistant; roles are {_roles(messages)}"
        )
    pairs = [[body[i]["content"], body[i + 1]["content"]] for i in range(0, len(body), 2)]
    *history, (user, output) = pairs
    instruction, inp, used = _split_input(user, meta)
    record: dict[str, Any] = {"instruction": instruction, "input": inp, "output": output}
    if system is not None:
        record["system"] = system
    if history:
        record["history"] = history
    if restore:
        _restore(record, meta, skip={used} if used else set())
    return record


def to_sharegpt(row: Mapping[str, Any]) -> dict[str, Any]:
    """ShareGPT ``conversations: [{from, value}]``; a leading system message becomes ``system``.

    ``from`` is the one the row was read with (kept in ``message_extras``) or the default for the
    role (human, gpt, system, observation); other per-message keys and the row's original fields
    come back from ``meta``.
    """
    messages = row["messages"]
    meta = _meta(row)
    extras = _extras(meta, len(messages))
    record: dict[str, Any] = {}
    start = 0
    # The ShareGPT adapter reads a non-empty `system` field as a leading system message; an empty
    # one, or a lone system message, stays a turn so the conversation is never empty.
    if len(messages) > 1 and messages[0]["role"] == "system" and messages[0]["content"] and not extras[0]:
        start = 1
    turns = []
    for message, extra in zip(messages[start:], extras[start:]):
        turn = {"from": extra.get("from") or _SHAREGPT_FROM[message["role"]], "value": message["content"]}
        turn.update({k: v for k, v in extra.items() if k not in ("from", "value", "role", "content_parts")})
        turns.append(turn)
    record["conversations"] = turns
    if start:
        record["system"] = messages[0]["content"]
    return _restore(record, meta, skip={"system"})


#: Per-message keys OpenAI's chat fine-tuning format accepts besides role and content.
_OPENAI_MESSAGE_KEYS = ("name", "weight", "tool_calls", "tool_call_id")
_OPENAI_ROLES = ("system", "user", "assistant", "tool")


def to_openai(row: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAI chat fine-tuning: ``{"messages": [...]}`` (+ ``tools``, ``parallel_tool_calls``).

    Per-message ``name``, ``weight``, ``tool_calls`` and ``tool_call_id`` come back from
    ``message_extras``; an assistant turn that only calls tools has no ``content``. Rows that break
    OpenAI's rules (`openai_problems`) are rejected with the reason.
    """
    messages = row["messages"]
    meta = _meta(row)
    extras = _extras(meta, len(messages))
    out = []
    for message, extra in zip(messages, extras):
        item: dict[str, Any] = {"role": message["role"]}
        if message["content"] or not extra.get("tool_calls"):
            item["content"] = message["content"]
        item.update({k: extra[k] for k in _OPENAI_MESSAGE_KEYS if k in extra})
        out.append(item)
    record: dict[str, Any] = {"messages": out}
    if isinstance(meta.get("tools"), list):
        record["tools"] = meta["tools"]
    if isinstance(meta.get("parallel_tool_calls"), bool):
        record["parallel_tool_calls"] = meta["parallel_tool_calls"]
    problems = openai_problems(record)
    if problems:
        raise Rejected("; ".join(problems))
    return record


def openai_problems(example: Mapping[str, Any]) -> list[str]:
    """Why OpenAI's chat fine-tuning would refuse ``example`` (empty when it would accept it).

    The checks of OpenAI's format validation (https://cookbook.openai.com/examples/chat_finetuning_data_prep
    and https://platform.openai.com/docs/guides/supervised-fine-tuning): ``messages`` is a
    non-empty list; roles are system/user/assistant/tool; content is a non-empty string (an
    assistant turn with ``tool_calls`` may have none); a tool message carries its
    ``tool_call_id``; ``weight`` (assistant only) is 0 or 1; there is an assistant message, and the
    conversation ends with one (the turn the model is trained to produce).

    >>> openai_problems({"messages": [{"role": "user", "content": "hi"}]})
    ['no assistant message', 'the last message is from user, not the assistant']
    """
    messages = example.get("messages")
    if not isinstance(messages, list) or not messages:
        return ["'messages' must be a non-empty list"]
    problems = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            problems.append(f"message {i} is not an object")
            continue
        role = m.get("role")
        if role not in _OPENAI_ROLES:
            problems.append(f"message {i} has role {role!r}; OpenAI accepts {', '.join(_OPENAI_ROLES)}")
            continue
        content = m.get("content")
        calls = role == "assistant" and bool(m.get("tool_calls"))
        if not (calls and content is None) and (not isinstance(content, str) or not content.strip()):
            problems.append(f"message {i} ({role}) has empty content")
        if role == "tool" and not isinstance(m.get("tool_call_id"), str):
            problems.append(f"message {i} (tool) has no tool_call_id")
        if "weight" in m and (role != "assistant" or m["weight"] not in (0, 1)):
            problems.append(f"message {i} ({role}) has weight {m['weight']!r}; only assistant messages, 0 or 1")
    roles = [m.get("role") for m in messages if isinstance(m, dict)]
    if "assistant" not in roles:
        problems.append("no assistant message")
    if roles and roles[-1] != "assistant":
        problems.append(f"the last message is from {roles[-1]}, not the assistant")
    return problems


def to_llama_factory_sharegpt(row: Mapping[str, Any]) -> dict[str, Any]:
    """LLaMA-Factory's ShareGPT layout (data/README.md): ``conversations: [{from, value}]`` with
    human/gpt/observation/function_call, ``system`` and ``tools`` columns.

    LLaMA-Factory skips (with only a log line) a conversation whose turns are not human or
    observation at odd positions and gpt or function_call at even ones, or whose count is odd
    (``SharegptDatasetConverter``); such rows are rejected here instead, with the reason. An
    assistant turn that calls tools becomes ``function_call`` with the calls' ``function`` objects
    as JSON, the way its own OpenAI converter does.
    """
    messages = row["messages"]
    meta = _meta(row)
    extras = _extras(meta, len(messages))
    record: dict[str, Any] = {}
    start = 0
    if messages and messages[0]["role"] == "system":
        record["system"] = messages[0]["content"]
        start = 1
    turns = []
    for i, (message, extra) in enumerate(zip(messages[start:], extras[start:]), start):
        role, value = message["role"], message["content"]
        if role == "system":
            raise Rejected(f"message {i} is a system message after the first; LLaMA-Factory takes one, first")
        if role == "assistant" and extra.get("tool_calls"):
            calls = extra["tool_calls"]
            value = json.dumps([c.get("function", c) if isinstance(c, dict) else c for c in calls], ensure_ascii=False)
            tag = "function_call"
        elif role == "assistant" and extra.get("from") == "function_call":
            tag = "function_call"
        else:
            tag = _SHAREGPT_FROM[role]
        turns.append({"from": tag, "value": value})
    accepted = (("human", "observation"), ("gpt", "function_call"))
    if not turns or len(turns) % 2 or any(t["from"] not in accepted[j % 2] for j, t in enumerate(turns)):
        raise Rejected(
            "LLaMA-Factory needs user/tool turns and assistant turns alternating, starting with the "
            f"user and ending with the assistant (after an optional first system message); roles are {_roles(messages)}"
        )
    record = {"conversations": turns, **record}
    tools = meta.get("tools")
    if isinstance(tools, (list, dict)):
        tools = json.dumps(tools, ensure_ascii=False)
    if isinstance(tools, str) and tools:
        record["tools"] = tools
    return record


def to_llama_factory_alpaca(row: Mapping[str, Any]) -> dict[str, Any]:
    """LLaMA-Factory's Alpaca layout: instruction/input/output (+ system, history); no other fields."""
    return to_alpaca(row, restore=False)


# ----------------------------------------------------------------------------- writing files


class _AtomicFile:
    """A file in OUT written under a hidden temporary name and renamed into place on success."""

    def __init__(self, out: Path, name: str, binary: bool = False) -> None:
        if not _PLAIN_NAME.match(name):
            raise InvariantError(f"refusing to write '{name}': not a plain file name; this is a bug in winnow")
        self.path = out / name
        self.tmp = out / f".{name}.tmp-{uuid.uuid4().hex[:8]}"
        # "x": never open (or follow a link at) a path that already exists
        self.file: IO[Any] = open(self.tmp, "xb" if binary else "x", encoding=None if binary else "utf-8")  # noqa: SIM115
        self.rows = 0

    def commit(self) -> None:
        self.file.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.file.close()
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()


class _JsonlSink:
    def __init__(self, out: Path, name: str) -> None:
        self.target = _AtomicFile(out, name)

    def write(self, record: Mapping[str, Any]) -> None:
        text = json.dumps(record, ensure_ascii=False)
        # U+2028/2029 are line breaks to some JSONL readers (str.splitlines, JavaScript): escape them
        text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
        self.target.file.write(text + "\n")
        self.target.rows += 1


class _ParquetSink:
    def __init__(self, out: Path, name: str, table_schema: pa.Schema) -> None:
        self.target = _AtomicFile(out, name, binary=True)
        self.schema = table_schema
        self.writer = pq.ParquetWriter(self.target.file, table_schema, compression="zstd")
        self.pending: list[Mapping[str, Any]] = []

    def write(self, record: Mapping[str, Any]) -> None:
        self.pending.append(record)
        self.target.rows += 1
        if len(self.pending) >= _ROWS_PER_READ:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.writer.write_table(pa.Table.from_pylist(self.pending, schema=self.schema))
            self.pending = []


@contextlib.contextmanager
def _sink(out: Path, name: str, table_schema: pa.Schema | None) -> Iterator[_JsonlSink | _ParquetSink]:
    sink: _JsonlSink | _ParquetSink = _ParquetSink(out, name, table_schema) if table_schema else _JsonlSink(out, name)
    try:
        yield sink
        if isinstance(sink, _ParquetSink):
            sink.flush()
            sink.writer.close()
    except BaseException:
        if isinstance(sink, _ParquetSink):
            with contextlib.suppress(Exception):
                sink.writer.close()
        sink.target.abort()
        raise
    sink.target.commit()


def _file_entry(out: Path, name: str, rows: int | None = None) -> dict[str, Any]:
    path = out / name
    entry: dict[str, Any] = {"path": name}
    if rows is not None:
        entry["rows"] = rows
    if path.is_file():
        entry["sha256"] = sha256_file(path)
    return entry


# ----------------------------------------------------------------------------- row targets


def _converter(
    target: str, layout: str, columns: list[str]
) -> tuple[Callable[[Mapping[str, Any]], dict[str, Any]], pa.Schema | None]:
    """The row function for a target/layout and, for Parquet, the schema of what it returns."""
    messages_type = pa.list_(schema.MESSAGE)
    if target in ("trl", "axolotl") and layout == "messages":
        return to_messages, pa.schema([pa.field("messages", messages_type)])
    if target == "trl" and layout == "prompt-completion":
        if "prompt" in columns and "completion" in columns:
            # a `template` stage rendered them: TRL's standard (already templated) prompt-completion
            return _templated("prompt", "completion"), pa.schema(
                [pa.field("prompt", pa.string()), pa.field("completion", pa.string())]
            )
        return to_prompt_completion, pa.schema(
            [pa.field("prompt", messages_type), pa.field("completion", messages_type)]
        )
    if target == "trl" and layout == "text":
        if "text" not in columns:
            raise ConfigError(
                "layout 'text' needs a `text` column, which a `template` stage renders; this version has "
                f"{', '.join(columns)} (use the default layout 'messages' to let TRL apply the chat template)"
            )
        return _templated("text"), pa.schema([pa.field("text", pa.string())])
    shapes: dict[tuple[str, str], Callable[[Mapping[str, Any]], dict[str, Any]]] = {
        ("llama-factory", "sharegpt"): to_llama_factory_sharegpt,
        ("llama-factory", "alpaca"): to_llama_factory_alpaca,
        ("openai", "messages"): to_openai,
        ("alpaca", "alpaca"): to_alpaca,
        ("sharegpt", "sharegpt"): to_sharegpt,
    }
    return shapes[(target, layout)], None


def _templated(*names: str) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    def convert(row: Mapping[str, Any]) -> dict[str, Any]:
        missing = [n for n in names if not isinstance(row.get(n), str)]
        if missing:
            raise Rejected(f"{', '.join(missing)} is null")
        return {n: row[n] for n in names}

    return convert


def _export_rows(
    store: Corpus, folder: Path, out: Path, result: ExportResult, chat_template: str | None, name: str
) -> None:
    version = folder.name
    convert, table_schema = _converter(result.format, result.layout, _columns(store, version))
    if result.file_format != "parquet":
        table_schema = None
    ext = "parquet" if table_schema is not None else "jsonl"
    written: dict[str, str] = {}
    seen: set[str] = set()  # top-level fields of the written records
    rejected: _JsonlSink | None = None
    with contextlib.ExitStack() as stack:
        for split in SPLITS:
            if split != "train" and not store.files(version, split):
                continue
            file_name = f"{split}.{ext}"
            sink = stack.enter_context(_sink(out, file_name, table_schema))
            for row in _rows(store, version, split):
                try:
                    record = convert(row)
                except Rejected as why:
                    if rejected is None:
                        rejected = stack.enter_context(_sink(out, REJECTED_FILE, None))  # type: ignore[assignment]
                    assert rejected is not None
                    rejected.write(
                        {"id": row["id"], "split": split, "reason": str(why), "messages": _plain(row["messages"])}
                    )
                    continue
                sink.write(record)
                seen.update(record)
            result.counts[split] = sink.target.rows
            written[split] = file_name
    result.counts["rejected"] = rejected.target.rows if rejected is not None else 0
    # a split that lost every row to rejection leaves no file (OpenAI refuses an empty one)
    if "validation" in written and result.counts["validation"] == 0:
        (out / written.pop("validation")).unlink()
    for split, file_name in written.items():
        result.files.append(_file_entry(out, file_name, result.counts[split]))
    if rejected is not None:
        result.files.append(_file_entry(out, REJECTED_FILE, result.counts["rejected"]))
    if result.format == "axolotl":
        _write_axolotl_yaml(out, written, chat_template or DEFAULT_AXOLOTL_TEMPLATE, result)
    if result.format == "llama-factory":
        _write_dataset_info(out, written, name, seen, result)
    _warn(result)


def _warn(result: ExportResult) -> None:
    if result.format == "openai" and result.counts["train"] < 10:
        # https://platform.openai.com/docs/guides/supervised-fine-tuning: "The minimum number of examples ... is 10"
        result.warnings.append(
            f"OpenAI fine-tuning needs at least 10 training examples; train.jsonl has {result.counts['train']}"
        )
    if result.counts["rejected"]:
        result.warnings.append(
            f"{result.counts['rejected']:,} row(s) do not fit '{result.format}' and were written to "
            f"{REJECTED_FILE} with the reason"
        )
    if result.counts["train"] == 0:
        result.warnings.append("the train file is empty")


def _write_axolotl_yaml(out: Path, written: dict[str, str], chat_template: str, result: ExportResult) -> None:
    """axolotl's ``chat_template`` dataset type on OpenAI-style messages.

    Keys as in axolotl's docs (docs/dataset-formats/conversation.qmd and docs/config-reference.qmd):
    ``type: chat_template``, ``field_messages``, ``message_property_mappings`` (role/content),
    ``roles_to_train: ["assistant"]``, ``train_on_eos: turn``; a local JSON file needs ``ds_type:
    json`` and ``split: train``. Paths are absolute so the snippet works from any directory.
    """
    import yaml

    def dataset(file_name: str) -> dict[str, Any]:
        return {
            "path": str(out / file_name),
            "ds_type": "json",
            "split": "train",
            "type": "chat_template",
            "field_messages": "messages",
            "message_property_mappings": {"role": "role", "content": "content"},
            "roles_to_train": ["assistant"],
            "train_on_eos": "turn",
        }

    config: dict[str, Any] = {"chat_template": chat_template, "datasets": [dataset(written["train"])]}
    if "validation" in written:
        config["test_datasets"] = [dataset(written["validation"])]
    header = (
        f"# axolotl dataset config written by winnow {__version__} from {result.corpus}@{result.version}\n"
        "# (fingerprint {fp}). Merge it into your training config (base_model, sequence_len, ...).\n"
        "# chat_template: the model's own, or ChatML if it has none; set e.g. chatml, llama3, qwen3 to pick one.\n"
    ).format(fp=result.fingerprint[:12])
    with _sink(out, "axolotl.yaml", None) as sink:
        sink.target.file.write(header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    result.files.append(_file_entry(out, "axolotl.yaml"))


def _write_dataset_info(out: Path, written: dict[str, str], name: str, seen: set[str], result: ExportResult) -> None:
    """``dataset_info.json`` as LLaMA-Factory's data/README.md describes: one entry per split
    (``NAME`` and ``NAME_validation``), ``file_name`` relative to ``dataset_dir`` (= OUT)."""
    if result.layout == "sharegpt":
        columns = {"messages": "conversations", "system": "system", "tools": "tools"}
        extra: dict[str, Any] = {
            "formatting": "sharegpt",
            "tags": {
                "role_tag": "from",
                "content_tag": "value",
                "user_tag": "human",
                "assistant_tag": "gpt",
                "observation_tag": "observation",
                "function_tag": "function_call",
                "system_tag": "system",
            },
        }
        optional = ("system", "tools")
    else:
        columns = {
            "prompt": "instruction",
            "query": "input",
            "response": "output",
            "system": "system",
            "history": "history",
        }
        extra = {"formatting": "alpaca"}
        optional = ("system", "history")
    # declare an optional column only where some row has it
    columns = {k: v for k, v in columns.items() if k not in optional or v in seen}
    info = {}
    for split, file_name in written.items():
        key = name if split == "train" else f"{name}_{split}"
        info[key] = {"file_name": file_name, "formatting": extra["formatting"], "columns": columns}
        if "tags" in extra:
            info[key]["tags"] = extra["tags"]
    with _sink(out, "dataset_info.json", None) as sink:
        sink.target.file.write(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    result.files.append(_file_entry(out, "dataset_info.json"))


# ----------------------------------------------------------------------------- hf


def _export_hf(store: Corpus, folder: Path, out: Path, result: ExportResult) -> None:
    """``DatasetDict.save_to_disk`` of the splits the version has, plus its dataset card.

    ``Dataset.from_parquet`` streams the shards into Arrow files (in a temporary cache, removed
    afterwards) rather than reading the table into memory.
    """
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a core dependency
        raise MissingDependencyError("datasets", purpose="the hf export") from None
    version = folder.name
    staging = Path(tempfile.mkdtemp(prefix=".hf-tmp-", dir=out))
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # the library does not draw on the terminal; the CLI reports
    try:
        with tempfile.TemporaryDirectory(prefix="winnow-hf-cache-") as cache:
            splits = {}
            for split in SPLITS:
                files = store.files(version, split)
                if not files:
                    continue
                splits[split] = datasets.Dataset.from_parquet(
                    [str(f) for f in files], cache_dir=cache, keep_in_memory=False
                )
                result.counts[split] = splits[split].num_rows
            datasets.DatasetDict(splits).save_to_disk(str(staging / "dataset"))
            del splits
        names = sorted(p.name for p in (staging / "dataset").iterdir())
        for entry in names:
            target = out / entry
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(staging / "dataset" / entry, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if bars:
            datasets.enable_progress_bars()
    for entry in names:
        result.files.append({"path": entry} if (out / entry).is_dir() else _file_entry(out, entry))
    card = folder / "README.md"
    if card.is_file():
        with _sink(out, "README.md", None) as sink:
            sink.target.file.write(card.read_text(encoding="utf-8"))
        result.files.append(_file_entry(out, "README.md"))
    _warn(result)


# ----------------------------------------------------------------------------- the record


def _write_export_json(out: Path, result: ExportResult) -> None:
    record = {
        "corpus": str(result.corpus),
        "version": result.version,
        "fingerprint": result.fingerprint,
        "format": result.format,
        "layout": result.layout,
        "file_format": result.file_format,
        "counts": result.counts,
        "files": result.files,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "winnow_version": __version__,
    }
    with _sink(out, EXPORT_JSON, None) as sink:
        sink.target.file.write(json.dumps(record, indent=2, ensure_ascii=False) + "\n")


def load_hint(result: ExportResult) -> str:
    """One line saying how the target's trainer reads what was written (for the CLI)."""
    out = result.path
    has_val = result.counts["validation"] > 0
    if result.format == "openai":
        return f"upload: client.files.create(file=open('{out}/train.jsonl', 'rb'), purpose='fine-tune')" + (
            ", and validation.jsonl as the job's validation_file" if has_val else ""
        )
    if result.format == "axolotl":
        return f"train: merge {out}/axolotl.yaml into your axolotl config, then `axolotl train CONFIG`"
    if result.format == "llama-factory":
        evaluation = f", `eval_dataset: {result.dataset_name}_validation`" if has_val else ""
        dataset = f"`dataset: {result.dataset_name}`{evaluation}"
        return f"train: set `dataset_dir: {out}`, {dataset} in your LLaMA-Factory config"
    if result.format == "hf":
        return f'load: datasets.load_from_disk("{out}")'
    ext = result.file_format if result.format == "trl" else "jsonl"
    loader = "parquet" if ext == "parquet" else "json"
    files = f'{{"train": "{out}/train.{ext}"' + (f', "validation": "{out}/validation.{ext}"' if has_val else "") + "}"
    then = ' → SFTTrainer(train_dataset=ds["train"], ...)' if result.format == "trl" else ""
    return f'load: ds = datasets.load_dataset("{loader}", data_files={files}){then}'
