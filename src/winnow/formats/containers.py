"""Containers: finding input files, sniffing what they hold, and streaming raw records out.

The file type is decided from the content, not the extension (real data has JSONL named
``.json`` and a JSON array named ``.jsonl``):

- compression by magic bytes (gzip ``1f 8b``, zstd ``28 b5 2f fd``); a ``.gz``/``.zst`` name
  whose bytes are not that compression is an error;
- ``PAR1`` → Parquet; ``ARROW1`` / an IPC stream's ``ff ff ff ff`` / ``FEA1`` → Arrow;
- text: the first non-blank line starts with ``[`` → a JSON document; it starts with ``{`` and
  parses on its own → JSONL (unless it is the file's only line and holds a list of records,
  then a JSON document); ``{`` that does not parse alone → a pretty-printed JSON document;
  anything else → CSV if the name says ``.csv``/``.tsv`` or the line has a comma or tab.

Readers yield `RawRecord` in file order with the record's 0-based index and a location for
messages ("line 3" — 1-based — for JSONL, "record 3" for JSON documents, "row 3" for tables).
Problems with one record are yielded (``error``) so the caller can raise or reject; problems
with the whole file raise `InputError` at once.
"""

from __future__ import annotations

import codecs
import csv
import glob as globmod
import gzip
import hashlib
import io
import json
import os
import re
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

import fsspec
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from winnow.errors import InputError

FILE_TYPES = ("jsonl", "json", "csv", "parquet", "arrow")

#: Extensions a folder listing picks up (with an optional .gz / .zst after the text ones).
_DATA_EXTENSIONS = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet", ".arrow", ".feather", ".ipc")
_COMPRESSED = (".gz", ".zst", ".zstd")

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CHUNK = 1 << 20
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
SURROGATE_NOTE = "lone UTF-16 surrogate(s) from JSON escapes replaced with U+FFFD"


@dataclass
class RawRecord:
    index: int
    where: str  # "line 3", "record 3", "row 3"
    value: Any = None
    raw: str | None = None  # the record's text when cheap to keep (JSONL lines)
    error: str | None = None  # "<problem>; expected <what>"
    note: str | None = None  # a repair made while reading (see SURROGATE_NOTE)


@dataclass
class FileRef:
    """One input file: ``path`` as the user (or the listing) wrote it, and how to open it."""

    path: str
    url: str  # what fsspec.open takes
    size: int | None = None


def is_url(path: str) -> bool:
    return "://" in path


def _has_magic(path: str) -> bool:
    return any(c in path for c in "*?[")


def _supported(name: str) -> bool:
    base = os.path.basename(name).lower()
    if base.startswith(".") or base.startswith("_"):
        return False
    for ext in _COMPRESSED:
        if base.endswith(ext):
            base = base[: -len(ext)]
            break
    return base.endswith(_DATA_EXTENSIONS)


def is_saved_dataset(path: str) -> bool:
    """A ``datasets.save_to_disk`` folder (a Dataset or a DatasetDict)?"""
    if is_url(path):
        return False
    return os.path.isfile(os.path.join(path, "dataset_dict.json")) or (
        os.path.isfile(os.path.join(path, "state.json")) and os.path.isfile(os.path.join(path, "dataset_info.json"))
    )


def resolve(path: str) -> list[FileRef]:
    """The files ``path`` names: one file, a glob's matches or a folder's supported files
    (recursive), in sorted path order. Raises `InputError` when it names nothing."""
    if is_url(path):
        return _resolve_url(path)
    if _has_magic(path):
        matches = sorted(p for p in globmod.glob(path, recursive=True) if os.path.isfile(p))
        if not matches:
            raise InputError(f"{path}: the glob matched no files; check the pattern and the working directory")
        return [FileRef(p, p, os.path.getsize(p)) for p in matches]
    if os.path.isdir(path):
        found = sorted(
            os.path.join(root, f)
            for root, dirs, files in os.walk(path)
            for f in files
            if _supported(f)
            and not any(part.startswith(".") for part in os.path.relpath(root, path).split(os.sep) if part != ".")
        )
        if not found:
            raise InputError(
                f"{path}: the folder holds no supported files; expected files ending in "
                f"{', '.join(_DATA_EXTENSIONS)} (optionally .gz or .zst)"
            )
        return [FileRef(p, p, os.path.getsize(p)) for p in found]
    if not os.path.isfile(path):
        raise InputError(f"{path}: file not found; expected an existing file, folder, glob or URL")
    return [FileRef(path, path, os.path.getsize(path))]


def _resolve_url(url: str) -> list[FileRef]:
    try:
        fs, root = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise InputError(f"{url}: cannot open this URL ({exc})") from None
    try:
        if _has_magic(root):
            paths = sorted(p for p in fs.glob(root) if fs.isfile(p))
            if not paths:
                raise InputError(f"{url}: the glob matched no files; check the pattern")
        elif fs.isdir(root):
            paths = sorted(p for p in fs.find(root) if _supported(p))
            if not paths:
                raise InputError(f"{url}: the folder holds no supported files")
        elif fs.isfile(root):
            paths = [root]
        else:
            raise InputError(f"{url}: file not found; expected an existing file, folder, glob or URL")
        refs = []
        for p in paths:
            full = url if p == root else fs.unstrip_protocol(p)
            if ":///" in full and ":///" not in url:  # memory://d/x, not memory:///d/x, as written
                full = full.replace(":///", "://", 1)
            refs.append(FileRef(full, full, fs.size(p)))
        return refs
    except InputError:
        raise
    except (OSError, ValueError) as exc:
        raise InputError(f"{url}: cannot list this location ({exc})") from None


# ----------------------------------------------------------------------------- opening


def _open_raw(ref: FileRef) -> IO[bytes]:
    try:
        return fsspec.open(ref.url, "rb").open()  # type: ignore[no-any-return]
    except FileNotFoundError:
        raise InputError(f"{ref.path}: file not found; expected an existing file") from None
    except OSError as exc:
        raise InputError(f"{ref.path}: cannot open ({exc})") from None


def file_sha256(ref: FileRef, also: Callable[[bytes], None] | None = None) -> tuple[str, int]:
    """sha256 and byte count of the stored bytes, streamed in 1 MiB chunks."""
    h = hashlib.sha256()
    n = 0
    with _open_raw(ref) as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            n += len(chunk)
            if also is not None:
                also(chunk)
    return h.hexdigest(), n


def _compression(ref: FileRef, head: bytes) -> str | None:
    name = ref.path.lower().split("?")[0]
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    if name.endswith(".gz"):
        raise InputError(
            f"{ref.path}: not a gzip file (it does not start with the gzip magic bytes); "
            "expected gzip-compressed data or a name without .gz"
        )
    if name.endswith((".zst", ".zstd")):
        raise InputError(
            f"{ref.path}: not a zstd file (it does not start with the zstd magic bytes); "
            "expected zstd-compressed data or a name without .zst"
        )
    return None


class _Opened:
    """A decompressed binary stream over one file (reopened per pass)."""

    def __init__(self, ref: FileRef) -> None:
        self.ref = ref
        with _open_raw(ref) as f:
            head = f.read(4)
        self.compression = _compression(ref, head)

    def open(self) -> IO[bytes]:
        raw = _open_raw(self.ref)
        if self.compression == "gzip":
            return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
        if self.compression == "zstd":
            import zstandard

            reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True, closefd=True)
            return io.BufferedReader(reader)  # type: ignore[arg-type]
        return raw


_DECOMPRESS_ERRORS: tuple[type[Exception], ...] = (EOFError, zlib.error, gzip.BadGzipFile)


def _decompress_error(ref: FileRef, compression: str | None, exc: BaseException, where: str = "") -> InputError:
    at = f", {where}" if where else ""
    return InputError(
        f"{ref.path}{at}: corrupt {compression or 'compressed'} data ({exc}); expected a complete, valid file"
    )


def _zstd_errors() -> tuple[type[Exception], ...]:
    try:
        import zstandard

        return (zstandard.ZstdError,)
    except ImportError:  # pragma: no cover - zstandard is a dependency
        return ()


# ----------------------------------------------------------------------------- sniffing


def sniff(ref: FileRef, opened: _Opened) -> str:
    """The container type of ``ref`` from its (decompressed) content."""
    errors = (*_DECOMPRESS_ERRORS, *_zstd_errors())
    try:
        with opened.open() as f:
            head = f.read(8)
        if head.startswith(b"PAR1"):
            return "parquet"
        if head.startswith((b"ARROW1", b"\xff\xff\xff\xff", b"FEA1")):
            return "arrow"
        with opened.open() as f:
            lines = (line for line in f if line.strip() and line.strip() != codecs.BOM_UTF8)
            first = next(lines, None)
            if first is None:
                raise InputError(f"{ref.path}: empty input (no records); expected at least one record")
            text = first.decode("utf-8", "replace").lstrip("\ufeff").strip()
            if text.startswith("["):
                return "json"
            if text.startswith("{"):
                try:
                    value = json.loads(text)
                except (ValueError, RecursionError):  # RecursionError: nested too deeply
                    # A pretty-printed document, unless the next line is a record of its own
                    # (then this is JSONL with a malformed first line, reported by line).
                    second = next(lines, b"").decode("utf-8", "replace").strip()
                    return "jsonl" if second.startswith("{") and _parses_as_object(second) else "json"
                if next(lines, None) is None and isinstance(value, dict) and _looks_like_container(value):
                    return "json"
                return "jsonl"
    except errors as exc:
        raise _decompress_error(ref, opened.compression, exc) from None
    name = ref.path.lower()
    for ext in _COMPRESSED:
        name = name.removesuffix(ext)
    if name.endswith((".csv", ".tsv")) or "," in text or "\t" in text:
        return "csv"
    raise InputError(
        f"{ref.path}: cannot tell the file type (first line starts {text[:40]!r}); "
        "expected JSONL, JSON, CSV, Parquet or Arrow, or set file_type"
    )


def _parses_as_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except (ValueError, RecursionError):
        return False


def _looks_like_container(obj: Mapping[str, Any]) -> bool:
    return _list_key(obj) is not None or _columnar_length(obj) is not None


# ----------------------------------------------------------------------------- readers


def fix_surrogates(value: Any) -> Any:
    """``value`` with lone surrogates (valid in JSON escapes, invalid UTF-8) replaced by U+FFFD."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [fix_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {fix_surrogates(k): fix_surrogates(v) for k, v in value.items()}
    return value


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return _LONE_SURROGATE.search(value) is not None
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    return False


def _not_object(value: Any) -> str:
    kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value))
    return f"the record is {kind or 'a number'}, not an object"


class FileReader:
    """Streams the records of one file. ``header`` is set for a JSON object holding a list of
    records under a key (the other keys), once `records` has started."""

    def __init__(self, ref: FileRef, file_type: str | None = None) -> None:
        self.ref = ref
        self.opened = _Opened(ref)
        self.file_type = file_type or sniff(ref, self.opened)
        self.header: dict[str, Any] | None = None
        self.list_key: str | None = None

    @property
    def compression(self) -> str | None:
        return self.opened.compression

    def records(self, batch_rows: int = 1024) -> Iterator[RawRecord]:
        reader = {
            "jsonl": self._jsonl,
            "json": self._json,
            "csv": self._csv,
            "parquet": self._parquet,
            "arrow": self._arrow,
        }[self.file_type]
        errors = (*_DECOMPRESS_ERRORS, *_zstd_errors())
        try:
            yield from reader(batch_rows)
        except errors as exc:
            raise _decompress_error(self.ref, self.compression, exc) from None

    # JSONL: one object per line, decoded line by line so errors name the line.
    def _jsonl(self, batch_rows: int) -> Iterator[RawRecord]:
        index = 0
        with self.opened.open() as f:
            for lineno, line in enumerate(f, start=1):
                if lineno == 1 and line.startswith(codecs.BOM_UTF8):
                    line = line[len(codecs.BOM_UTF8) :]
                if not line.strip():
                    continue
                where = f"line {lineno}"
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield RawRecord(
                        index,
                        where,
                        raw=line.decode("utf-8", "backslashreplace").rstrip("\r\n"),
                        error=f"invalid UTF-8 ({exc.reason} at byte {exc.start}); expected UTF-8 text",
                    )
                    index += 1
                    continue
                text = text.rstrip("\r\n")
                try:
                    value = json.loads(text)
                except (ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
                    msg = (
                        f"{exc.msg} at column {exc.colno}"
                        if isinstance(exc, json.JSONDecodeError)
                        else "nested too deeply"
                        if isinstance(exc, RecursionError)
                        else str(exc)
                    )
                    yield RawRecord(
                        index,
                        where,
                        raw=text,
                        error=f"invalid JSON ({msg}); expected one JSON object per line",
                    )
                    index += 1
                    continue
                note = None
                if _SURROGATE_ESCAPE.search(line) and _has_lone_surrogate(value):
                    value, note = fix_surrogates(value), SURROGATE_NOTE
                    text = fix_surrogates(text)
                if not isinstance(value, dict):
                    yield RawRecord(
                        index,
                        where,
                        raw=text,
                        error=f"{_not_object(value)}; expected one JSON object per line",
                    )
                else:
                    yield RawRecord(index, where, value, raw=text, note=note)
                index += 1

    # JSON document: parsed whole (an array, an object of arrays, or an object with one list).
    def _json(self, batch_rows: int) -> Iterator[RawRecord]:
        with self.opened.open() as f:
            data = f.read()
        if data.startswith(codecs.BOM_UTF8):
            data = data[len(codecs.BOM_UTF8) :]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise InputError(
                f"{self.ref.path}, line {line}: invalid UTF-8 ({exc.reason}); expected UTF-8 text"
            ) from None
        if not text.strip():
            raise InputError(f"{self.ref.path}: empty input (no records); expected at least one record")
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"{self.ref.path}, line {exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno}); "
                "expected a JSON array of records, an object of arrays, or an object holding a list of them"
            ) from None
        except RecursionError:
            raise InputError(
                f"{self.ref.path}: invalid JSON (nested too deeply); "
                "expected a JSON array of records, an object of arrays, or an object holding a list of them"
            ) from None
        note = None
        if _SURROGATE_ESCAPE.search(data) and _has_lone_surrogate(doc):
            doc, note = fix_surrogates(doc), SURROGATE_NOTE
        for i, value in enumerate(self._document_records(doc)):
            where = f"record {i}"
            if isinstance(value, dict):
                yield RawRecord(i, where, value, note=note)
            else:
                yield RawRecord(
                    i,
                    where,
                    error=f"{_not_object(value)}; expected a JSON object per record",
                    raw=json.dumps(value, ensure_ascii=False),
                )

    def _document_records(self, doc: Any) -> list[Any]:
        if isinstance(doc, list):
            return doc
        if not isinstance(doc, dict):
            raise InputError(
                f"{self.ref.path}: the JSON document is {_not_object(doc)[14:]}; expected an array of records"
            )
        n = _columnar_length(doc)
        if n is not None:
            keys = list(doc)
            return [{k: doc[k][i] for k in keys} for i in range(n)]
        key = _list_key(doc)
        if key is not None:
            self.list_key = key
            self.header = {k: v for k, v in doc.items() if k != key}
            return list(doc[key])
        from winnow.formats.adapters import detect_adapter

        if detect_adapter(list(doc)) is not None:
            return [doc]  # one record, pretty-printed
        raise InputError(
            f"{self.ref.path}: the JSON object has no list of records (keys: {', '.join(map(repr, doc))}); "
            "expected an array of records, an object of equal-length arrays or an object holding one list"
        )

    # CSV: streamed; each physical line decoded strictly so bad UTF-8 names its line.
    def _csv(self, batch_rows: int) -> Iterator[RawRecord]:
        name = self.ref.path.lower()
        for ext in _COMPRESSED:
            name = name.removesuffix(ext)
        with self.opened.open() as f:
            lines = self._decoded_lines(f)
            peek = next(lines, None)
            if peek is None:
                raise InputError(f"{self.ref.path}: empty input (no records); expected a header row and records")
            delimiter = "\t" if name.endswith(".tsv") or ("\t" in peek and "," not in peek) else ","

            def chain() -> Iterator[str]:
                yield peek
                yield from lines

            reader = csv.reader(chain(), delimiter=delimiter)
            try:
                header = next(reader)
                for i, row in enumerate(reader):
                    if not row:
                        continue  # csv yields [] for a blank line
                    if len(row) != len(header):
                        yield RawRecord(
                            i,
                            f"row {i}",
                            raw=json.dumps(row, ensure_ascii=False),
                            error=f"found {len(row)} fields (line {reader.line_num}); "
                            f"expected {len(header)} like the header row",
                        )
                        continue
                    yield RawRecord(i, f"row {i}", dict(zip(header, row, strict=True)))
            except csv.Error as exc:
                raise InputError(
                    f"{self.ref.path}, line {reader.line_num}: invalid CSV ({exc}); expected CSV with a header row"
                ) from None

    def _decoded_lines(self, f: IO[bytes]) -> Iterator[str]:
        for lineno, line in enumerate(f, start=1):
            if lineno == 1 and line.startswith(codecs.BOM_UTF8):
                line = line[len(codecs.BOM_UTF8) :]
            try:
                yield line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"{self.ref.path}, line {lineno}: invalid UTF-8 ({exc.reason}); expected UTF-8 text"
                ) from None

    def _parquet(self, batch_rows: int) -> Iterator[RawRecord]:
        with self.opened.open() as f:
            source: Any = f if self.compression is None else io.BytesIO(f.read())
            try:
                pf = pq.ParquetFile(source)
                yield from table_records(_validated(pf.iter_batches(batch_size=batch_rows)))
            except (pa.ArrowException, OSError, ValueError) as exc:  # corrupt names: UnicodeDecodeError
                raise InputError(
                    f"{self.ref.path}: cannot read Parquet ({_one_line(exc)}); expected a valid Parquet file"
                ) from None

    def _arrow(self, batch_rows: int) -> Iterator[RawRecord]:
        with self.opened.open() as f:
            data = f.read()  # IPC readers need random access; Arrow files are read whole anyway
        try:
            batches: Iterator[pa.RecordBatch]
            if data.startswith(b"ARROW1"):
                reader = ipc.open_file(pa.BufferReader(data))
                batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
            elif data.startswith(b"FEA1"):
                import pyarrow.feather as feather

                batches = iter(feather.read_table(pa.BufferReader(data)).to_batches(batch_rows))
            else:
                batches = iter(ipc.open_stream(pa.BufferReader(data)))
            yield from table_records(_validated(batches))
        except (pa.ArrowException, OSError, ValueError) as exc:  # corrupt names: UnicodeDecodeError
            raise InputError(
                f"{self.ref.path}: cannot read Arrow ({_one_line(exc)}); expected an Arrow IPC file or stream"
            ) from None


def table_records(batches: Any, where: str = "row") -> Iterator[RawRecord]:
    """Records of Arrow record batches (or tables), indexed across batches."""
    index = 0
    for batch in batches:
        for value in batch.to_pylist():
            yield RawRecord(index, f"{where} {index}", value)
            index += 1


def _list_key(obj: Mapping[str, Any]) -> str | None:
    """The key of an object that holds the records: ``Instances`` or the only list of objects."""
    if isinstance(obj.get("Instances"), list):
        return "Instances"
    keys = [k for k, v in obj.items() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)]
    if len(keys) == 1 and not _is_record(obj):
        return keys[0]
    return None


def _is_record(obj: Mapping[str, Any]) -> bool:
    from winnow.formats.adapters import detect_adapter

    return detect_adapter(list(obj)) is not None


def _columnar_length(obj: Mapping[str, Any]) -> int | None:
    """Rows of a column-oriented object (2+ keys, all lists of one length), else None."""
    if len(obj) < 2 or not all(isinstance(v, list) for v in obj.values()):
        return None
    lengths = {len(v) for v in obj.values()}
    if len(lengths) != 1:
        return None
    n = lengths.pop()
    # {"turns": [...], "reference": [...]} could be one record; columns need a consistent shape.
    if _is_record(obj) and any(isinstance(x, dict) for v in obj.values() for x in v):
        return None
    return n


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (Arrow's Parquet errors span several)."""
    return " ".join(str(exc).split())


def _validated(batches: Iterator[Any]) -> Iterator[Any]:
    """Batches from a file, each checked in full (offsets, UTF-8) before Python reads it: a
    corrupt file decoded without this can abort the interpreter inside Arrow's C++."""
    for batch in batches:
        batch.validate(full=True)
        yield batch
