"""Hostile and broken input: whatever the bytes, reading gives rows or one clear error.

Every input adapter (through ``format:`` and auto-detection) and every container (JSONL, JSON,
CSV, Parquet, Arrow, gzip, zstd) is fed random and broken data; the YAML loader gets random
text. The outcome is always canonical rows or a ``winnow.errors.InputError`` naming the file
(``ConfigError`` for YAML and options) — never any other exception.

Default runs are small (``FAST``); ``-m slow`` runs the same targets with ``SLOW`` examples.
"""

from __future__ import annotations

import gzip
import io
import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from winnow import Pipeline, schema
from winnow.errors import ConfigError, InputError
from winnow.formats import ADAPTERS, InputSpec, from_object, open_input
from winnow.pipeline import load_yaml

FAST = 40
SLOW = 600
COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]}

KEYS = [
    "instruction",
    "input",
    "output",
    "response",
    "context",
    "category",
    "messages",
    "conversations",
    "from",
    "value",
    "role",
    "content",
    "prompt",
    "completion",
    "question",
    "answer",
    "turns",
    "text",
    "system",
    "history",
    "instances",
    "Definition",
    "Instances",
    "id",
    "source",
    "source_index",
    "meta",
    "task_type",
    "lang",
    "type",
    "tool_calls",
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(
        ["", "\x00", "\ud800", "user", "assistant", "human", "gpt", "[1, 2]", '[{"from": "human"}]', "é" * 3]
    ),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), inner, max_size=5)
    ),
    max_leaves=25,
)
RECORD = st.dictionaries(st.sampled_from(KEYS), JSON, max_size=6)
FORMATS = st.sampled_from(["auto", *[f for f in ADAPTERS if f != "columns"]])


def _ok_or_input_error(fn: Any, label: str | None = None) -> pa.Table | None:
    """Call ``fn``: a table of the canonical schema, or an InputError naming ``label``."""
    try:
        table = fn()
    except InputError as e:
        message = str(e)
        assert message and "\n" not in message.strip()
        if label is not None:
            assert label in message, message
        return None
    assert isinstance(table, pa.Table)
    assert table.schema.equals(schema.SCHEMA) or set(schema.SCHEMA.names) <= set(table.column_names)
    assert len(set(table.column("id").to_pylist())) == table.num_rows
    return table


def _ingest(path: Path, **spec: Any) -> pa.Table:
    source = open_input(InputSpec(path=str(path), **spec))
    tables = [b.rows for b in source.batches(7)]
    rejected = [b.rejected for b in source.batches(7)]
    for r in rejected:
        assert r.num_rows == 0 or set(r.column("stage").to_pylist()) == {"ingest"}
    return pa.concat_tables(tables) if tables else schema.empty()


def _jsonl_bytes(records: list[Any], junk: list[bytes]) -> bytes:
    lines = []
    for r in records:
        try:
            lines.append(json.dumps(r, ensure_ascii=False).encode("utf-8", "surrogatepass"))
        except ValueError:
            lines.append(b"{bad")
    return b"\n".join(lines + junk) + b"\n"


JUNK = st.lists(
    st.one_of(
        st.binary(max_size=30),
        st.sampled_from(
            [
                b"\xff\xfe",
                b"\x00\x00",
                b'{"a": "\\ud800"}',
                b"[1,2",
                b"\xef\xbb\xbf{}",
                b"{" * 300,
                b"[" * 5000,
                b"null",
            ]
        ),
    ),
    max_size=3,
)


class _Files:
    def __init__(self, root: Path) -> None:
        self.root, self.n = root, 0

    def write(self, name: str, data: bytes) -> Path:
        self.n += 1
        folder = self.root / str(self.n)
        folder.mkdir()
        path = folder / name
        path.write_bytes(data)
        return path


@pytest.fixture
def files(tmp_path: Path) -> _Files:
    return _Files(tmp_path)


def _jsonl(files: _Files, records: list[Any], junk: list[bytes], fmt: str, on_error: str) -> None:
    path = files.write("data.jsonl", _jsonl_bytes(records, junk))
    _ok_or_input_error(lambda: _ingest(path, format=fmt, on_error=on_error), str(path))


def _json_doc(files: _Files, doc: Any, cut: int, fmt: str) -> None:
    data = json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")
    if cut:
        data = data[: max(1, len(data) - cut)]
    path = files.write("data.json", data)
    _ok_or_input_error(lambda: _ingest(path, format=fmt, on_error="skip"), str(path))


def _csv(files: _Files, text: str, fmt: str) -> None:
    path = files.write("data.csv", text.encode("utf-8", "surrogatepass"))
    _ok_or_input_error(lambda: _ingest(path, format=fmt, on_error="skip"), str(path))


def _compressed(files: _Files, payload: bytes, kind: str, cut: int) -> None:
    if kind == "gzip":
        data, name = gzip.compress(payload), "data.jsonl.gz"
    elif kind == "zstd":
        import zstandard

        data, name = zstandard.ZstdCompressor().compress(payload), "data.jsonl.zst"
    else:  # not compressed at all, but named so
        data, name = payload, "data.jsonl.gz"
    if cut:
        data = data[: max(1, len(data) - cut)]
    path = files.write(name, data)
    _ok_or_input_error(lambda: _ingest(path, on_error="skip"), str(path))


def _binary(files: _Files, records: list[dict[str, Any]], kind: str, cut: int, flip: int) -> None:
    table = pa.Table.from_pylist(
        [{k: json.dumps(v, default=str) for k, v in r.items()} for r in records] or [{"x": "1"}]
    )
    sink = io.BytesIO()
    if kind == "parquet":
        pq.write_table(table, sink)
        name = "data.parquet"
    else:
        with pa.ipc.new_file(sink, table.schema) as w:
            w.write_table(table)
        name = "data.arrow"
    data = bytearray(sink.getvalue())
    if flip and len(data) > 8:
        data[8 + flip % (len(data) - 8)] ^= 0xFF
    if cut:
        data = data[: max(4, len(data) - cut)]
    path = files.write(name, bytes(data))
    _ok_or_input_error(lambda: _ingest(path, on_error="skip"), str(path))


def _objects(records: list[Any], fmt: str) -> None:
    _ok_or_input_error(lambda: from_object(records, name="fuzz", format=fmt).to_table())


def _yaml(text: str) -> None:
    try:
        Pipeline.from_dict(load_yaml(text, "fuzz.yaml"), origin="fuzz.yaml")
    except ConfigError as e:
        assert str(e).startswith("fuzz.yaml"), str(e)


# -- the targets, each a fast and a slow variant ---------------------------------------------------

JSONL_ARGS = {
    "records": st.lists(st.one_of(RECORD, JSON), max_size=6),
    "junk": JUNK,
    "fmt": FORMATS,
    "on_error": st.sampled_from(["raise", "skip"]),
}
JSON_ARGS = {
    "doc": st.one_of(
        JSON,
        st.lists(RECORD, max_size=5),
        st.dictionaries(st.sampled_from(KEYS), st.lists(JSON, max_size=3), max_size=4),
    ),
    "cut": st.integers(0, 3),
    "fmt": FORMATS,
}
CSV_TEXT = st.lists(
    st.lists(
        st.text(max_size=8) | st.sampled_from(['"', '""', "a,b", "\n", "\r", "\x00", "\ud800"]), min_size=0, max_size=5
    ),
    max_size=6,
).map(lambda rows: "\n".join(",".join(r) for r in ([["instruction", "output", "input"], *rows])))
CSV_ARGS = {"text": st.one_of(CSV_TEXT, st.text(max_size=80)), "fmt": FORMATS}
COMPRESSED_ARGS = {
    "payload": st.one_of(st.binary(max_size=200), st.lists(RECORD, max_size=4).map(lambda r: _jsonl_bytes(r, []))),
    "kind": st.sampled_from(["gzip", "zstd", "fake"]),
    "cut": st.integers(0, 12),
}
BINARY_ARGS = {
    "records": st.lists(RECORD, max_size=4),
    "kind": st.sampled_from(["parquet", "arrow"]),
    "cut": st.integers(0, 40),
    "flip": st.integers(0, 10_000),
}
OBJECT_ARGS = {"records": st.lists(st.one_of(RECORD, JSON), max_size=6), "fmt": FORMATS}
YAML_TEXT = st.one_of(
    st.text(max_size=200),
    st.lists(
        st.sampled_from(
            [
                "name: x",
                "inputs:",
                "  - path: a.jsonl",
                "  - {path: 1}",
                "stages:",
                "  - length: {}",
                "  - length: {min_response: x}",
                "  - nope: {}",
                "output: 3",
                "split: {validation: 2}",
                "engine: dask",
                "!!python/object/apply:os.system ['true']",
                "&a [*a]",
                "- - -",
                "\t",
                "key: [unclosed",
                "on: true",
                "{",
                "? complex",
                "inputs: 5",
                "stages: {}",
                "%YAML 1.1",
            ]
        ),
        max_size=8,
    ).map("\n".join),
)


@settings(max_examples=FAST, **COMMON)
@given(**JSONL_ARGS)
def test_jsonl(files: _Files, records: list[Any], junk: list[bytes], fmt: str, on_error: str) -> None:
    _jsonl(files, records, junk, fmt, on_error)


@settings(max_examples=FAST, **COMMON)
@given(**JSON_ARGS)
def test_json_document(files: _Files, doc: Any, cut: int, fmt: str) -> None:
    _json_doc(files, doc, cut, fmt)


@settings(max_examples=FAST, **COMMON)
@given(**CSV_ARGS)
def test_csv(files: _Files, text: str, fmt: str) -> None:
    _csv(files, text, fmt)


@settings(max_examples=FAST, **COMMON)
@given(**COMPRESSED_ARGS)
def test_compressed(files: _Files, payload: bytes, kind: str, cut: int) -> None:
    _compressed(files, payload, kind, cut)


@settings(max_examples=FAST, **COMMON)
@given(**BINARY_ARGS)
def test_parquet_and_arrow(files: _Files, records: list[dict[str, Any]], kind: str, cut: int, flip: int) -> None:
    _binary(files, records, kind, cut, flip)


@settings(max_examples=FAST * 2, **COMMON)
@given(**OBJECT_ARGS)
def test_every_adapter_on_records(records: list[Any], fmt: str) -> None:
    _objects(records, fmt)


@settings(max_examples=FAST * 2, **COMMON)
@given(text=YAML_TEXT)
def test_yaml_loader(text: str) -> None:
    _yaml(text)


@pytest.mark.slow
@settings(max_examples=SLOW, **COMMON)
@given(**JSONL_ARGS)
def test_jsonl_many(files: _Files, records: list[Any], junk: list[bytes], fmt: str, on_error: str) -> None:
    _jsonl(files, records, junk, fmt, on_error)


@pytest.mark.slow
@settings(max_examples=SLOW, **COMMON)
@given(**JSON_ARGS)
def test_json_document_many(files: _Files, doc: Any, cut: int, fmt: str) -> None:
    _json_doc(files, doc, cut, fmt)


@pytest.mark.slow
@settings(max_examples=SLOW, **COMMON)
@given(**CSV_ARGS)
def test_csv_many(files: _Files, text: str, fmt: str) -> None:
    _csv(files, text, fmt)


@pytest.mark.slow
@settings(max_examples=SLOW, **COMMON)
@given(**COMPRESSED_ARGS)
def test_compressed_many(files: _Files, payload: bytes, kind: str, cut: int) -> None:
    _compressed(files, payload, kind, cut)


@pytest.mark.slow
@settings(max_examples=SLOW, **COMMON)
@given(**BINARY_ARGS)
def test_parquet_and_arrow_many(files: _Files, records: list[dict[str, Any]], kind: str, cut: int, flip: int) -> None:
    _binary(files, records, kind, cut, flip)


@pytest.mark.slow
@settings(max_examples=SLOW * 2, **COMMON)
@given(**OBJECT_ARGS)
def test_every_adapter_on_records_many(records: list[Any], fmt: str) -> None:
    _objects(records, fmt)


@pytest.mark.slow
@settings(max_examples=SLOW * 2, **COMMON)
@given(text=YAML_TEXT)
def test_yaml_loader_many(text: str) -> None:
    _yaml(text)


# -- regressions and named cases ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("a.jsonl.gz", b'{"instruction": "x", "output": "y"}\n'),  # not gzip
        ("a.jsonl.zst", b"plain text"),
        ("a.jsonl", b'{"instruction": "x", "output": "y"}\n' + b"[" * 100_000 + b"\n"),  # deep nesting
        ("a.json", b"[" * 100_000),
        ("a.jsonl", b'{"instruction": "\xff\xfe", "output": "y"}\n'),  # invalid UTF-8
        ("a.jsonl", b'{"instruction": "a\\u0000b", "output": "\\ud800"}\n'),  # NUL, lone surrogate
        ("a.csv", b"instruction,output\nx,y\nonly-one-field\n"),  # ragged row
        ("a.csv", b'instruction,output\n"x,y\n'),  # unterminated quote
        ("a.csv", b"instruction,output\nx\x00,y\n"),
        ("a.jsonl", b'{"instruction": ' + b'"' + b"x" * 5_000_000 + b'", "output": "y"}\n'),  # a huge string
        ("a.parquet", b"PAR1" + b"\x00" * 20),
        ("a.arrow", b"ARROW1" + b"\x00" * 20),
        ("a.jsonl", b'{"messages": [{"role": "user", "content": [{"type": "image"}]}]}\n'),
        ("a.jsonl", b'{"conversations": "[{\\"from\\": \\"human\\"}]"}\n'),
        ("a.json", b'{"Definition": 3, "Instances": [{"input": "x", "output": ["y"]}]}'),
        ("a.jsonl", b'{"instruction": "x", "instances": [1]}\n'),
    ],
)
@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_named_broken_files(tmp_path: Path, name: str, data: bytes, on_error: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    _ok_or_input_error(lambda: _ingest(path, on_error=on_error), str(path))


def test_wrong_types_in_every_field_of_every_adapter() -> None:
    """Each adapter's own fields set, one at a time, to each JSON type: rows or InputError."""
    base = {
        "alpaca": {"instruction": "i", "input": "", "output": "o"},
        "dolly": {"instruction": "i", "context": "", "response": "r", "category": "open_qa"},
        "sharegpt": {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
        "openai": {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
        "canonical": {
            "messages": [{"role": "user", "content": "q"}],
            "id": "x",
            "source": "s",
            "source_index": 0,
            "meta": "{}",
            "lang": "en",
            "task_type": "t",
        },
        "prompt_completion": {"prompt": "p", "completion": "c"},
        "mtbench": {"turns": ["q"], "category": "writing"},
        "text": {"text": "t"},
    }
    values = [None, True, 0, -1, 1.5, float("nan"), "", "\x00", [], [None], [1, 2], {}, {"a": 1}, "[", 2**80]
    checked = 0
    for fmt, record in base.items():
        for key in record:
            for value in values:
                _objects([{**record, key: value}], fmt)
                checked += 1
        # nested message fields too
        for nested in ("messages", "conversations"):
            if nested in record:
                for field in record[nested][0]:
                    for value in values:
                        broken = [dict(record[nested][0], **{field: value}), *record[nested][1:]]
                        _objects([{**record, nested: broken}], fmt)
                        checked += 1
    assert checked > 300


def test_a_file_that_vanishes_or_is_a_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        open_input(InputSpec(path=str(tmp_path / "missing.jsonl")))
    folder = tmp_path / "empty"
    folder.mkdir()
    with pytest.raises(InputError, match="no supported files"):
        open_input(InputSpec(path=str(folder)))
    fifo = tmp_path / "x.jsonl"
    os.mkfifo(fifo)  # not a regular file: must not hang reading it
    with pytest.raises(InputError):
        open_input(InputSpec(path=str(fifo)))


#: An Arrow IPC file with one byte flipped (found by fuzzing): its string offsets point past the
#: data. Before batches were validated, reading it aborted the interpreter inside Arrow.
CORRUPT_ARROW = (
    "QVJST1cxAAD/////+AAAABAAAAAAAAoADAAGAAUACAAKAAAAAAEEAAwAAAAIAAgAAAAEAAgAAAAEAAAABAAAAJgAAABcAAAAMAAA"
    "AAQAAACI////AAABBRAAAAAYAAAABAAAAAAAAAAFAAAAaW5wdXQAAAB0////sP///wAAAQUQAAAAGAAAAAQAAAAAAAAABQAAAHR1"
    "cm5zAAAAnP///9j///8AAAEFEAAAABgAAAAEAAAAAAAAAAYAAABvdXRwdXQAAMT///8QABQACAAGAAcADAAAABAAEAAAAAAAAQUQ"
    "AAAAIAAAAAQAAAAAAAAACwAAAGluc3RydWN0aW9uAAQABAAEAAAA/////1gBAAAUAAAAAAAAAAwAFgAGAAUACAAMAAwAAAAAAwQA"
    "GAAAABgBAAAAAAAAAAAKABgADAAEAAgACgAAANwAAAAQAAAABAAAAAAAAAAAAAAADAAAAAAAAAAAAAAAAQAAAAAAAAAIAAAAAAAA"
    "ABQAAAAAAAAAIAAAAAAAAAAoAAAAAAAAAEgAAAAAAAAAAAAAAAAAAABIAAAAAAAAABQAAAAAAAAAYAAAAAAAAABgAAAAAAAAAMAA"
    "AAAAAAAAAQAAAAAAAADIAAAAAAAAABQAAAAAAAAA4AAAAAAAAAACAAAAAAAAAOgAAAAAAAAAAQAAAAAAAADwAAAAAAAAABQAAAAA"
    "AAAACAEAAAAAAAAMAAAAAAAAAAAAAAAEAAAABAAAAAAAAAACAAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAEAAAAAAAAAAMAAAAAAAAA"
    "BAAAAAAAAAACAAAAAAAAAAMAAAAAAAAAAAAAACYAAAAoAAAAKAAAACgAAAAAAAAAIlx1MDBlOVx1MDBlOVx1MDBlOVx1MDBlOVx1"
    "MDBlOVx1MDBlOSJbXQAAAAAsAAAAMAAAADoAAABgAAAAAAAAACJcdTAwZTlcdTAwZTlcdTAwZTlcdTAwZTlcdTAwZTlcdTAwZTlc"
    "dTAwZTkibnVsbHsiYSI6IFsxXX0iXHUwMGU5XHUwMGU5XHUwMGU5XHUwMGU5XHUwMGU5XHUwMGU5IgEAAAAAAAAAAAAAAAIAAAAC"
    "AAAAAgAAAAIAAAAAAAAAW10AAAAAAAADAAAAAAAAAAAAAAACAAAADAD/AAwAAAAMAAAAAAAAAFtdeyJhIjogWzFdfQAAAAD/////"
    "AAAAABAAAAAMABQABgAIAAwAEAAMAAAAAAAEADQAAAAkAAAABAAAAAEAAAAIAQAAAAAAAGABAAAAAAAAGAEAAAAAAAAAAAAACAAI"
    "AAAABAAIAAAABAAAAAQAAACYAAAAXAAAADAAAAAEAAAAiP///wAAAQUQAAAAGAAAAAQAAAAAAAAABQAAAGlucHV0AAAAdP///7D/"
    "//8AAAEFEAAAABgAAAAEAAAAAAAAAAUAAAB0dXJucwAAAJz////Y////AAABBRAAAAAYAAAABAAAAAAAAAAGAAAAb3V0cHV0AADE"
    "////EAAUAAgABgAHAAwAAAAQABAAAAAAAAEFEAAAACAAAAAEAAAAAAAAAAsAAABpbnN0cnVjdGlvbgAEAAQABAAAACABAABBUlJP"
    "VzE="
)


def test_corrupt_arrow_offsets_do_not_abort(tmp_path: Path) -> None:
    import base64
    import subprocess
    import sys

    from tests.reliability._util import env

    path = tmp_path / "corrupt.arrow"
    path.write_bytes(base64.b64decode(CORRUPT_ARROW))
    script = (
        "import sys\n"
        "from winnow.formats import open_input, InputSpec\n"
        "from winnow.errors import InputError\n"
        "try:\n"
        f"    open_input(InputSpec(path={str(path)!r}, on_error='skip')).to_table()\n"
        "except InputError as e:\n"
        "    print('InputError:', e)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env(), timeout=60)
    assert proc.returncode == 0, f"reading a corrupt Arrow file crashed the process ({proc.returncode}): {proc.stderr}"
    assert proc.stdout.startswith(f"InputError: {path}: cannot read Arrow"), proc.stdout
