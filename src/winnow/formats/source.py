"""Inputs: what a pipeline's ``inputs:`` entry names, opened as a stream of canonical batches.

`open_input` takes an `InputSpec` (a file, glob, folder, fsspec URL, ``save_to_disk`` folder or
Hub dataset); `from_object` takes a DataFrame, Arrow table, ``datasets.Dataset`` or list of
dicts. Both return an `InputSource`, whose `InputSource.batches` yields `IngestBatch` es in the
canonical schema, in file order.

Identity (DESIGN.md §1): ``id = schema.row_id(source, source_index, messages)``, where
``source_index`` is the record's 0-based position in its file (non-blank lines for JSONL; the
position in ``Instances`` for a task object). A record that yields several rows (self-instruct
with several ``instances``) hashes ``f"{source}\\0instance={i}"`` as the source so siblings never
share an id. Rejected records keep their index, so indexes never shift.

Rejected records (``on_error="skip"``) are canonical rows with ``messages = []``,
``meta = {"raw": <the line or record text>}`` and ``id = row_id(source, index,
[{"role": "raw", "content": <raw>}])``, so two different bad lines never share an id; ``stage`` is
``"ingest"`` and ``reason`` the sentence the error would have raised.

Lone UTF-16 surrogates (legal in JSON escapes, not in UTF-8) are replaced with U+FFFD and the row
is kept; its meta then carries ``"_ingest_note"`` saying so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa

from winnow import schema
from winnow.errors import ConfigError, InputError
from winnow.formats.adapters import ADAPTERS, AdaptContext, AdaptedRow, Adapter, RecordError, detect_adapter
from winnow.formats.containers import (
    FILE_TYPES,
    FileReader,
    FileRef,
    RawRecord,
    file_sha256,
    is_saved_dataset,
    resolve,
    table_records,
)

__all__ = ["IngestBatch", "InputSource", "InputSpec", "from_object", "open_input"]

log = logging.getLogger(__name__)

ON_ERROR = ("raise", "skip")
_READ_ROWS = 1024  # rows per read from Parquet/Arrow/datasets; independent of the output batch size


@dataclass(frozen=True)
class InputSpec:
    """One ``inputs:`` entry of a pipeline.

    >>> InputSpec(path="data/*.jsonl", format="alpaca").on_error
    'raise'
    """

    #: A file, a glob ("data/*.jsonl"), a folder, an fsspec URL or a ``save_to_disk`` folder.
    path: str | None = None
    #: A Hugging Face Hub dataset "org/name" (or anything ``datasets.load_dataset`` accepts).
    hf_dataset: str | None = None
    #: Split of a Hub dataset or a saved DatasetDict; default "train".
    split: str | None = None
    #: Hub revision (branch, tag or commit).
    revision: str | None = None
    #: Record format: "auto" or a name in ``ADAPTERS``.
    format: str = "auto"
    #: Field mapping for the ``columns`` format: instruction, input, response, system, task_type.
    columns: dict[str, str] | None = None
    #: "raise" stops at the first bad record; "skip" routes bad records to ``rejected``.
    on_error: str = "raise"
    #: The ``source`` column; default the path as written (each matched file's path for globs).
    name: str | None = None
    #: Override content sniffing: "jsonl" | "json" | "csv" | "parquet" | "arrow".
    file_type: str | None = None


@dataclass
class IngestBatch:
    rows: pa.Table  # schema.SCHEMA
    rejected: pa.Table  # schema.REJECTED_SCHEMA


# ----------------------------------------------------------------------------- units


class _Unit:
    """One file or in-memory table, read as records."""

    label: str  # names it in messages
    source: str  # the ``source`` column
    header: Mapping[str, Any] | None = None

    def records(self) -> Iterator[RawRecord]:
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        return {}


class _FileUnit(_Unit):
    def __init__(self, ref: FileRef, source: str, file_type: str | None) -> None:
        self.ref = ref
        self.label = ref.path
        self.source = source
        self._file_type = file_type
        self._reader: FileReader | None = None
        self.sha256: str | None = None

    @property
    def reader(self) -> FileReader:
        if self._reader is None:
            self._reader = FileReader(self.ref, self._file_type)
        return self._reader

    @property
    def header(self) -> Mapping[str, Any] | None:  # type: ignore[override]
        return self.reader.header

    def records(self) -> Iterator[RawRecord]:
        return self.reader.records(_READ_ROWS)

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.ref.path, "bytes": self.ref.size, "sha256": self.sha256}
        out["file_type"] = self.reader.file_type
        out["compression"] = self.reader.compression
        if self.reader.list_key:
            out["records_under"] = self.reader.list_key
        return out


class _TableUnit(_Unit):
    def __init__(
        self,
        label: str,
        source: str,
        batches: Callable[[], Iterable[Any]],
        where: str = "row",
        license: str | None = None,
    ) -> None:
        self.label = label
        self.source = source
        self._batches = batches
        self._where = where
        self._license = license

    def records(self) -> Iterator[RawRecord]:
        return table_records(self._batches(), self._where)

    def info(self) -> dict[str, Any]:
        # a Hugging Face dataset may say its license: the dataset card of the corpus repeats it
        return {"license": self._license} if self._license else {}


class _ListUnit(_Unit):
    def __init__(self, label: str, source: str, items: list[Any]) -> None:
        self.label = label
        self.source = source
        self._items = items

    def records(self) -> Iterator[RawRecord]:
        for i, value in enumerate(self._items):
            if isinstance(value, dict):
                yield RawRecord(i, f"record {i}", value)
            else:
                kind = type(value).__name__
                yield RawRecord(
                    i,
                    f"record {i}",
                    error=f"the record is a {kind}, not a dict; expected a dict per record",
                    raw=_dumps(value),
                )


# ----------------------------------------------------------------------------- the source


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=_json_default)


def _add_header(meta: dict[str, Any], header: Mapping[str, Any]) -> None:
    """Fields shared by every record of a file, after the record's own (``header.KEY`` on a clash)."""
    for key, value in header.items():
        meta[f"header.{key}" if key in meta else key] = value


class InputSource:
    """An opened input: stream it with `batches`, record it with `describe` and `fingerprint`."""

    def __init__(
        self,
        units: list[_Unit],
        *,
        format: str = "auto",
        columns: Mapping[str, str] | None = None,
        on_error: str = "raise",
        spec: Mapping[str, Any] | None = None,
        fingerprint: Callable[[], str] | None = None,
        kind: str = "files",
    ) -> None:
        self._units = units
        self._format = format
        self._columns = dict(columns) if columns else None
        self._on_error = on_error
        self._spec = dict(spec or {})
        self._fingerprint_fn = fingerprint
        self._fingerprint: str | None = None
        self._kind = kind
        self._stats: list[dict[str, Any]] = [{} for _ in units]

    def __repr__(self) -> str:
        more = "…" if len(self._units) > 3 else ""
        return f"InputSource({self._kind}: {', '.join(u.label for u in self._units[:3])}{more})"

    # -- identity

    def fingerprint(self) -> str:
        """Hex hash of the input's content (streamed; for files: sha256 of their bytes in order)."""
        if self._fingerprint is None:
            if self._fingerprint_fn is not None:
                self._fingerprint = self._fingerprint_fn()
            else:
                total = hashlib.sha256()
                for unit in self._units:
                    assert isinstance(unit, _FileUnit)
                    unit.sha256, unit.ref.size = file_sha256(unit.ref, total.update)
                self._fingerprint = total.hexdigest()
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        """JSON-able account for the run manifest: the spec and, per file, what was read."""
        fingerprint = self.fingerprint()
        files = []
        for unit, stats in zip(self._units, self._stats, strict=True):
            entry = {"source": unit.source, **unit.info()}
            entry.update(
                {
                    "format": stats.get("format"),
                    "format_reason": stats.get("format_reason"),
                    "records": stats.get("records"),
                    "rows_read": stats.get("rows"),
                    "rows_rejected": stats.get("rejected"),
                }
            )
            files.append(entry)
        return {"kind": self._kind, "spec": self._spec, "fingerprint": fingerprint, "files": files}

    # -- reading

    def batches(self, batch_size: int = 10_000) -> Iterator[IngestBatch]:
        """Canonical batches of up to ``batch_size`` rows, in file order (and sorted file order).

        Values never depend on ``batch_size``; only JSON documents are held whole while read.
        """
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        rows: list[dict[str, Any]] = []
        rejected: list[dict[str, Any]] = []
        for unit, stats in zip(self._units, self._stats, strict=True):
            stats.clear()
            stats.update(records=0, rows=0, rejected=0)
            for kind, row in self._unit_rows(unit, stats):
                (rows if kind == "row" else rejected).append(row)
                if len(rows) >= batch_size or len(rejected) >= batch_size:
                    yield self._batch(rows, rejected)
                    rows, rejected = [], []
        if rows or rejected:
            yield self._batch(rows, rejected)

    def to_table(self) -> pa.Table:
        """All rows in one table (convenient in notebooks and tests)."""
        tables = [b.rows for b in self.batches()]
        return pa.concat_tables(tables) if tables else schema.empty()

    @staticmethod
    def _batch(rows: list[dict[str, Any]], rejected: list[dict[str, Any]]) -> IngestBatch:
        return IngestBatch(schema.make_table(rows), schema.make_table(rejected, schema.REJECTED_SCHEMA))

    def _unit_rows(self, unit: _Unit, stats: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
        adapter: Adapter | None = None
        if self._format != "auto":
            adapter = ADAPTERS[self._format]
            stats.update(format=adapter.name, format_reason="format set in the input spec")
        context: AdaptContext | None = None
        for rec in unit.records():
            stats["records"] += 1
            error = rec.error
            rows: list[AdaptedRow] = []
            uses_header = True
            if error is None:
                if adapter is None:
                    adapter = self._detect(unit, rec.value, stats)
                if context is None:
                    context = AdaptContext(header=unit.header, columns=self._columns)
                uses_header = adapter.uses_header
                try:
                    rows = adapter.adapt(rec.value, context)
                except RecordError as exc:
                    error = str(exc)
            if error is not None:
                message = f"{unit.label}, {rec.where}: {error}"
                if self._on_error == "raise":
                    raise InputError(message)
                stats["rejected"] += 1
                yield "rejected", self._rejected_row(unit, rec, message)
                continue
            for row in rows:
                stats["rows"] += 1
                if unit.header and not uses_header:
                    _add_header(row.meta, unit.header)
                yield "row", self._row(unit, rec, row)
        if stats["records"] == 0:
            raise InputError(f"{unit.label}: empty input (no records); expected at least one record")

    def _detect(self, unit: _Unit, record: Mapping[str, Any], stats: dict[str, Any]) -> Adapter:
        fields = list(record)
        found = detect_adapter(fields, unit.header)
        if found is None:
            shown = ", ".join(map(repr, fields[:20])) or "none"
            choices = ", ".join(ADAPTERS)
            raise InputError(
                f"{unit.label}: cannot detect the record format from the fields {shown}; "
                f"set format: to one of {choices} (with columns: for 'columns')"
            )
        adapter, reason = found
        log.info("%s: record format %s (%s)", unit.label, adapter.name, reason)
        stats.update(format=adapter.name, format_reason=reason)
        return adapter

    @staticmethod
    def _row(unit: _Unit, rec: RawRecord, row: AdaptedRow) -> dict[str, Any]:
        carried = row.carried
        source = str(carried.get("source", unit.source))
        index = int(carried.get("source_index", rec.index))
        meta = row.meta
        if rec.note:
            meta["_ingest_note"] = rec.note
        id_source = source if row.sub_index is None else f"{source}\0instance={row.sub_index}"
        row_id = carried.get("id")
        if not isinstance(row_id, str) or not row_id:
            row_id = schema.row_id(id_source, index, row.messages)
        return {
            "id": row_id,
            "messages": row.messages,
            "source": source,
            "source_index": index,
            "task_type": row.task_type,
            "lang": carried.get("lang"),
            "meta": _dumps(meta),
        }

    @staticmethod
    def _rejected_row(unit: _Unit, rec: RawRecord, reason: str) -> dict[str, Any]:
        raw = rec.raw if rec.raw is not None else _dumps(rec.value)
        return {
            "id": schema.row_id(unit.source, rec.index, [{"role": "raw", "content": raw}]),
            "messages": [],
            "source": unit.source,
            "source_index": rec.index,
            "task_type": None,
            "lang": None,
            "meta": _dumps({"raw": raw}),
            "stage": "ingest",
            "reason": reason,
        }


# ----------------------------------------------------------------------------- constructors


def _check_options(format: str, columns: Mapping[str, str] | None, on_error: str) -> str:
    if columns is not None and format == "auto":
        format = "columns"
    if format != "auto" and format not in ADAPTERS:
        raise ConfigError(f"format: {format!r} is not a record format; expected 'auto' or one of {', '.join(ADAPTERS)}")
    if format == "columns":
        from winnow.formats.adapters import ColumnsAdapter

        if not columns or "instruction" not in columns or "response" not in columns:
            raise ConfigError("format: columns needs columns: {instruction: FIELD, response: FIELD, ...}")
        unknown = sorted(set(columns) - set(ColumnsAdapter.ROLES))
        if unknown:
            raise ConfigError(f"columns: unknown key(s) {unknown}; expected some of {', '.join(ColumnsAdapter.ROLES)}")
    if on_error not in ON_ERROR:
        raise ConfigError(f"on_error: {on_error!r} is not valid; expected one of {', '.join(ON_ERROR)}")
    return format


def open_input(spec: InputSpec) -> InputSource:
    """Open one input. Files are found and checked now; records are read by ``batches``."""
    fmt = _check_options(spec.format, spec.columns, spec.on_error)
    if (spec.path is None) == (spec.hf_dataset is None):
        raise ConfigError("an input needs exactly one of path: or hf_dataset:")
    if spec.file_type is not None and spec.file_type not in FILE_TYPES:
        raise ConfigError(f"file_type: {spec.file_type!r} is not valid; expected one of {', '.join(FILE_TYPES)}")
    options: dict[str, Any] = {
        "format": fmt,
        "columns": spec.columns,
        "on_error": spec.on_error,
        "spec": asdict(spec),
    }
    if spec.hf_dataset is not None:
        return _hub_source(spec, options)
    assert spec.path is not None
    if is_saved_dataset(spec.path):
        return _saved_source(spec, options)
    refs = resolve(spec.path)
    units: list[_Unit] = [_FileUnit(ref, _source_name(spec, ref, refs), spec.file_type) for ref in refs]
    for unit in units:  # sniff now so a bad file fails at open, before any batch
        assert isinstance(unit, _FileUnit)
        _ = unit.reader
    return InputSource(units, kind="files", **options)


def _source_name(spec: InputSpec, ref: FileRef, refs: list[FileRef]) -> str:
    if spec.name is None:
        return ref.path
    if len(refs) == 1:
        return spec.name
    # Several files under one name: keep them apart (indexes restart in every file).
    base = os.path.commonprefix([r.path for r in refs]).rpartition("/")[0]  # noqa: RUF071 (URLs too)
    return f"{spec.name}/{ref.path[len(base) + 1 :] if base else ref.path}"


def _hub_source(spec: InputSpec, options: dict[str, Any]) -> InputSource:
    import datasets

    split = spec.split or "train"
    label = f"hf://{spec.hf_dataset}/{split}"
    try:
        ds = datasets.load_dataset(spec.hf_dataset, split=split, revision=spec.revision)
    except Exception as exc:  # any failure of the loader is the user's input problem, in one line
        raise InputError(f"{label}: cannot load the dataset ({type(exc).__name__}: {exc})") from None
    if not isinstance(ds, datasets.Dataset):
        raise InputError(f"{label}: expected a map-style Dataset, got {type(ds).__name__}")
    fingerprint = hashlib.sha256(f"{ds._fingerprint}\0{spec.revision or ''}".encode()).hexdigest()
    unit = _dataset_unit(ds, label, spec.name or label)
    return InputSource([unit], kind="hf_dataset", fingerprint=lambda: fingerprint, **options)


def _saved_source(spec: InputSpec, options: dict[str, Any]) -> InputSource:
    import datasets

    assert spec.path is not None
    try:
        loaded = datasets.load_from_disk(spec.path)
    except Exception as exc:  # a damaged save_to_disk folder
        raise InputError(f"{spec.path}: cannot load the saved dataset ({type(exc).__name__}: {exc})") from None
    label = spec.path
    if isinstance(loaded, datasets.DatasetDict):
        split = spec.split or "train"
        if split not in loaded:
            raise InputError(f"{spec.path}: no split {split!r}; expected one of {', '.join(loaded)} (set split:)")
        ds = loaded[split]
        label = f"{spec.path.rstrip('/')}/{split}"
    else:
        ds = loaded

    def fingerprint() -> str:
        total = hashlib.sha256()
        for f in ds.cache_files:
            file_sha256(FileRef(f["filename"], f["filename"]), total.update)
        return total.hexdigest()

    return InputSource(
        [_dataset_unit(ds, label, spec.name or label)],
        kind="saved_dataset",
        fingerprint=fingerprint,
        **options,
    )


def _dataset_unit(ds: Any, label: str, source: str) -> _Unit:
    license = getattr(getattr(ds, "info", None), "license", None) or None
    return _TableUnit(label, source, lambda: ds.with_format("arrow").iter(batch_size=_READ_ROWS), license=license)


def _hash_arrow(batches: Iterable[pa.RecordBatch | pa.Table], schema_: pa.Schema) -> str:
    """sha256 of the Arrow IPC stream of ``batches``, written through the hash (never held)."""
    h = hashlib.sha256()

    class _Sink:
        closed = False

        def write(self, data: Any) -> int:
            h.update(data)
            return len(data)

        def flush(self) -> None:
            pass

    with pa.ipc.new_stream(pa.PythonFile(_Sink(), mode="w"), schema_) as writer:  # type: ignore[arg-type]
        for b in batches:
            if isinstance(b, pa.Table):
                writer.write_table(b)
            else:
                writer.write_batch(b)
    return h.hexdigest()


def from_object(obj: Any, name: str | None = None, format: str = "auto") -> InputSource:
    """An in-memory table as an input, adapted exactly like file rows.

    Takes a ``pandas.DataFrame``, ``pyarrow.Table``, ``datasets.Dataset`` or a list of dicts.
    With ``format="auto"`` a table with a ``messages`` column is taken as canonical (its ``id``,
    ``task_type``, ``lang``, ``meta`` kept where present and non-null). ``name`` is the
    ``source`` column (default: "dataframe", "arrow_table", "dataset" or "records"); pass one
    that stays the same between runs so ids stay stable.

    >>> src = from_object([{"instruction": "Say hi", "input": "", "output": "hi"}], name="demo")
    >>> src.to_table().column("messages")[0].as_py()[0]["content"]
    'Say hi'
    """
    fmt = _check_options(format, None, "raise")
    spec = {"object": type(obj).__name__, "name": name, "format": fmt}
    if isinstance(obj, list):
        source = name or "records"
        unit: _Unit = _ListUnit(source, source, obj)
        if fmt == "auto" and obj and isinstance(obj[0], dict) and "messages" in obj[0]:
            fmt = "canonical"

        def fingerprint() -> str:
            h = hashlib.sha256()
            for item in obj:
                h.update(_dumps(item).encode("utf-8", "surrogatepass"))
                h.update(b"\n")
            return h.hexdigest()

        return InputSource([unit], format=fmt, spec=spec, fingerprint=fingerprint, kind="object")
    if type(obj).__module__.startswith("datasets"):
        import datasets

        if isinstance(obj, datasets.DatasetDict):
            raise InputError(
                f"a DatasetDict holds several splits ({', '.join(obj)}); expected one Dataset, e.g. ds['train']"
            )
        if not isinstance(obj, datasets.Dataset):
            raise InputError(f"cannot read a {type(obj).__name__}; expected a datasets.Dataset")
        source = name or "dataset"
        ds = obj
        columns = ds.column_names

        def ds_fingerprint() -> str:
            return _hash_arrow(ds.with_format("arrow").iter(batch_size=_READ_ROWS), ds.features.arrow_schema)

        unit, fp = _dataset_unit(ds, source, source), ds_fingerprint
    else:
        if isinstance(obj, pa.Table):
            table, default = obj, "arrow_table"
        elif type(obj).__name__ == "DataFrame" and type(obj).__module__.startswith("pandas"):
            try:
                table, default = pa.Table.from_pandas(obj, preserve_index=False), "dataframe"
            except (pa.ArrowException, TypeError, ValueError) as exc:
                raise InputError(
                    f"cannot convert the DataFrame to Arrow ({exc}); expected columns of one type each"
                ) from None
        else:
            raise InputError(
                f"cannot read a {type(obj).__name__}; expected a pandas.DataFrame, pyarrow.Table, "
                "datasets.Dataset or a list of dicts"
            )
        source = name or default
        columns = table.column_names
        unit = _TableUnit(source, source, lambda: table.to_batches(max_chunksize=_READ_ROWS))

        def fp() -> str:
            return _hash_arrow(table.to_batches(), table.schema)

    if fmt == "auto" and "messages" in columns:
        fmt = "canonical"
    return InputSource([unit], format=fmt, spec=spec, fingerprint=fp, kind="object")
