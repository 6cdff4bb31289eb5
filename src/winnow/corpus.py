"""The versioned corpus (DESIGN.md §4): immutable ``vN/`` folders and a ``latest`` pointer.

A version is written whole in a hidden ``.tmp-*`` folder beside the versions and only then
renamed to ``vN`` under a lock file (``.lock``, via ``filelock``): the number is taken, the
folder renamed and ``latest`` swapped in one critical section, so two runs writing to the same
corpus get two distinct numbers, and a crash leaves only a ``.tmp-*`` folder that no reader lists
and that the next writer removes. ``latest`` is a relative symlink (a one-line file where the
filesystem has no symlinks).

Shards are plain Hugging Face-style Parquet (``data/train-00000-of-00002.parquet``) written in
fixed row groups, so the same rows give the same bytes whatever the batch size of the run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock

from winnow import schema
from winnow.errors import CorpusError
from winnow.interrupts import sigint_deferred

MANIFEST = "manifest.json"
LATEST = "latest"
SHARD_ROWS = 100_000
ROW_GROUP_ROWS = 10_000
SPLITS = ("train", "validation")

Format = Literal["pandas", "arrow", "datasets"]
_VERSION = re.compile(r"^v(\d+)$")


#: versions this process has published, oldest first (see `published_here`)
_committed: list[Path] = []


def published_here() -> list[Path]:
    """The version folders this process has published: what a Ctrl-C message can truthfully
    say was written."""
    return list(_committed)


def parse_ref(ref: str) -> tuple[Path, str]:
    """``corpus/name@v3`` → (corpus/name, "v3"); without ``@`` the version is "latest"."""
    m = re.match(r"^(.*)@(v?\d+|latest)$", ref)
    if m:
        return Path(m.group(1)), m.group(2)
    return Path(ref), "latest"


def validation_mask(ids: pa.Array | pa.ChunkedArray, fraction: float, seed: int = 0) -> np.ndarray:
    """True for rows in the validation split: a hash of the id, so a row keeps its split in
    every version and validation never leaks into train as the corpus evolves."""
    if fraction <= 0:
        return np.zeros(len(ids), bool)
    salt = f"{seed}:".encode()
    blake = hashlib.blake2b
    values = [int.from_bytes(blake(salt + i.encode(), digest_size=8).digest(), "big") for i in ids.to_pylist()]
    limit = min(int(fraction * 2**64), 2**64 - 1)
    return np.array(values, dtype=np.uint64) < np.uint64(limit)


class Corpus:
    """A folder of corpus versions. ``Corpus(path).load()`` reads the latest as pandas.

    >>> Corpus("corpus/quickstart").versions()  # doctest: +SKIP
    ['v1', 'v2']
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Corpus({str(self.path)!r})"

    def _repr_html_(self) -> str:
        """The versions as a table in Jupyter, newest first."""
        from html import escape

        rows = []
        for name in reversed(self.versions()):
            m = self.manifest(name)
            c = m["counts"]
            rows.append(
                f"<tr><td>{name}</td><td>{escape(m['created'])}</td><td><code>{m['fingerprint'][:12]}</code></td>"
                f"<td>{c['train']:,}</td><td>{c['validation']:,}</td><td>{c['rejected']:,}</td></tr>"
            )
        head = "".join(f"<th>{h}</th>" for h in ("version", "created", "fingerprint", "train", "validation", "removed"))
        title = f"<p><b>{escape(str(self.path))}</b> (latest: {self.latest() or '—'})</p>"
        return f"{title}<table><tr>{head}</tr>{''.join(rows)}</table>"

    # -- reading -------------------------------------------------------------------------------
    def versions(self) -> list[str]:
        """Complete versions, oldest first."""
        if not self.path.is_dir():
            return []
        found = []
        for child in self.path.iterdir():
            m = _VERSION.match(child.name)
            if m and not child.is_symlink() and (child / MANIFEST).is_file():
                found.append((int(m.group(1)), child.name))
        return [name for _, name in sorted(found)]

    def latest(self) -> str | None:
        pointer = self.path / LATEST
        if pointer.is_symlink():
            name = os.readlink(pointer)
        elif pointer.is_file():
            name = pointer.read_text().strip()
        else:
            name = None
        versions = self.versions()
        if name in versions:
            return name
        return versions[-1] if versions else None

    def resolve(self, version: str | int = "latest") -> Path:
        """The folder of ``version`` ("latest", "v3", "3" or 3)."""
        versions = self.versions()
        if not versions:
            raise CorpusError(f"{self.path} holds no corpus version (expected folders v1, v2, … with {MANIFEST})")
        name = self.latest() if version == "latest" else _version_name(version)
        if name not in versions:
            raise CorpusError(f"{self.path} has no version '{version}'; it has {', '.join(versions)}")
        return self.path / str(name)

    def manifest(self, version: str | int = "latest") -> dict[str, Any]:
        return json.loads((self.resolve(version) / MANIFEST).read_text())  # type: ignore[no-any-return]

    def files(self, version: str | int = "latest", split: str | None = None) -> list[Path]:
        """The data shards of a version, train first; ``split`` picks one."""
        folder = self.resolve(version) / "data"
        splits = [split] if split else list(SPLITS)
        unknown = [s for s in splits if s not in SPLITS]
        if unknown:
            raise CorpusError(f"unknown split '{unknown[0]}'; splits are {', '.join(SPLITS)}")
        return [f for s in splits for f in sorted(folder.glob(f"{s}-*.parquet"))]

    def load(self, version: str | int = "latest", split: str | None = None, format: Format = "pandas") -> Any:
        """A version's rows as pandas (default), Arrow, or ``datasets``.

        With ``split=None`` pandas and Arrow get every row (train, then validation) and
        ``datasets`` gets a ``DatasetDict`` of the splits.
        """
        if format == "datasets" and split is None:
            import datasets

            return datasets.DatasetDict(
                {
                    s: datasets.Dataset(self._table(self.files(version, s), version))
                    for s in SPLITS
                    if self.files(version, s)
                }
            )
        return _convert(self._table(self.files(version, split), version), format)

    def rejected(self, version: str | int = "latest", stage: str | None = None, format: Format = "pandas") -> Any:
        """The rows a version's run removed, with ``stage`` and ``reason``."""
        files = sorted((self.resolve(version) / "rejected").glob("*.parquet"))
        table = _read(files) if files else schema.empty(schema.REJECTED_SCHEMA)
        if stage is not None:
            table = table.filter(pa.compute.equal(table.column("stage"), stage))
        return _convert(table, format)

    def table(self, name: str, version: str | int = "latest", stage: str | None = None) -> pa.Table:
        """A table a stage wrote into the version, e.g. ``table("clusters")`` of ``minhash_dedup``."""
        folder = self.resolve(version) / name
        files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
        if stage is not None:
            files = [f for f in files if re.match(rf"^\d+-{re.escape(stage)}-\d+-of-", f.name)]
        if not files:
            raise CorpusError(f"{self.resolve(version)} has no '{name}' table" + (f" from {stage}" if stage else ""))
        return _read(files)

    def _table(self, files: list[Path], version: str | int) -> pa.Table:
        if files:
            return _read(files)
        # no validation rows: an empty table with the schema of the (always present) train shard
        return pq.read_schema(self.files(version, "train")[0]).empty_table()

    # -- writing -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def draft(self) -> Iterator[Draft]:
        """A hidden folder to write a version into; removed unless :meth:`Draft.commit` ran."""
        self.path.mkdir(parents=True, exist_ok=True)
        with self._lock():
            self._clean_leftovers()
        folder = self.path / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        folder.mkdir()
        draft = Draft(self, folder)
        try:
            yield draft
        finally:
            if folder.exists():
                shutil.rmtree(folder, ignore_errors=True)

    def _lock(self) -> FileLock:
        return FileLock(str(self.path / ".lock"))

    def _clean_leftovers(self) -> None:
        """Remove the drafts of runs that died (their process is gone), and ``latest`` pointers
        a writer died before swapping in (made and renamed under the lock, so any seen while
        holding it is a leftover)."""
        for child in self.path.glob(".tmp-*"):
            m = re.match(r"^\.tmp-(\d+)-", child.name)
            if m and not _alive(int(m.group(1))):
                shutil.rmtree(child, ignore_errors=True)
        for child in self.path.glob(".latest-*"):
            with contextlib.suppress(OSError):
                child.unlink()


@dataclass
class Draft:
    """A version being written. Everything goes into ``folder``; ``commit`` publishes it."""

    corpus: Corpus
    folder: Path

    def write_data(
        self, batches: Iterable[pa.Table], validation: float, seed: int, table_schema: pa.Schema
    ) -> list[dict[str, Any]]:
        """Write the kept rows as train/validation shards; returns the shard list for the manifest."""
        if iter(batches) is batches:  # a one-shot iterator must be held; a re-iterable streams
            batches = list(batches)
        masks = [validation_mask(b.column("id"), validation, seed) for b in batches]
        counts = {
            "validation": int(sum(m.sum() for m in masks)),
            "train": int(sum(len(m) - m.sum() for m in masks)),
        }
        shards = []
        for split in SPLITS:
            if counts[split] == 0 and split != "train":
                continue
            with _ShardWriter(self.folder / "data", split, counts[split], table_schema) as writer:
                for batch, mask in zip(batches, masks):
                    writer.write(batch.filter(pa.array(mask if split == "validation" else ~mask)))
            shards += writer.shards
        return shards

    def write_table(
        self, folder: str, name: str, tables: Iterable[pa.Table], rows: int, table_schema: pa.Schema
    ) -> list[dict[str, Any]]:
        """Write rows as ``folder/name-00000-of-0000N.parquet`` shards (rejected rows, clusters…)."""
        with _ShardWriter(self.folder / folder, name, rows, table_schema) as writer:
            for table in tables:
                writer.write(table)
        return writer.shards

    def commit(
        self, manifest: dict[str, Any], documents: Mapping[str, Callable[[Path, dict[str, Any]], str]] | None = None
    ) -> str:
        """Number the version, write its manifest and documents (card, report), publish it and
        point ``latest`` at it. ``documents`` maps a file name to a function of (folder, manifest)."""
        corpus = self.corpus
        with corpus._lock():
            versions = corpus.versions()
            taken = [int(m.group(1)) for c in corpus.path.iterdir() if (m := _VERSION.match(c.name))]
            name = f"v{max(taken, default=0) + 1}"
            manifest = {
                "version": name,
                "parent": corpus.latest() if versions else None,
                "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                **manifest,
            }
            (self.folder / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
            for filename, render in (documents or {}).items():
                (self.folder / filename).write_text(render(self.folder, manifest), encoding="utf-8")
            with sigint_deferred():  # a version is published with its `latest` pointer, or not at all
                os.rename(self.folder, corpus.path / name)
                _point_latest(corpus.path, name)
                _committed.append(corpus.path / name)
        return name


class _ShardWriter:
    """Write ``total`` rows as ``{prefix}-00000-of-0000N.parquet`` files in fixed row groups.

    Row groups and shard boundaries depend only on row counts, never on how the rows arrive,
    which is what makes the bytes independent of the batch size.
    """

    def __init__(self, folder: Path, prefix: str, total: int, table_schema: pa.Schema) -> None:
        self.folder = folder
        self.prefix = prefix
        self.schema = schema.without_internal(table_schema.empty_table()).schema
        self.count = max(1, math.ceil(total / SHARD_ROWS))
        self.shards: list[dict[str, Any]] = []
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._in_shard = 0

    def __enter__(self) -> _ShardWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            self._flush(final=True)
            if self._writer is None and not self.shards:
                self._open()  # an empty split still gets its (empty) shard
            self._close()

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            self._pending.append(schema.without_internal(table).cast(self.schema))
            self._pending_rows += table.num_rows
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        while self._pending_rows and (final or self._pending_rows >= ROW_GROUP_ROWS):
            if self._writer is None:
                self._open()
            take = min(ROW_GROUP_ROWS, SHARD_ROWS - self._in_shard, self._pending_rows)
            whole = pa.concat_tables(self._pending)
            group, rest = whole.slice(0, take), whole.slice(take)
            self._pending = [rest] if rest.num_rows else []
            self._pending_rows = rest.num_rows
            assert self._writer is not None
            self._writer.write_table(group.combine_chunks(), row_group_size=take)
            self._in_shard += take
            if self._in_shard >= SHARD_ROWS:
                self._close()

    def _open(self) -> None:
        index = len(self.shards)
        self._path = self.folder / f"{self.prefix}-{index:05d}-of-{self.count:05d}.parquet"
        self.folder.mkdir(parents=True, exist_ok=True)
        self._writer = pq.ParquetWriter(str(self._path), self.schema, compression="zstd")
        self._in_shard = 0

    def _close(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        self._writer = None
        self.shards.append(
            {
                "path": self._path.relative_to(self.folder.parent).as_posix(),
                "rows": self._in_shard,
                "sha256": sha256_file(self._path),
            }
        )


def _point_latest(root: Path, name: str) -> None:
    tmp = root / f".latest-{uuid.uuid4().hex[:8]}"
    try:
        os.symlink(name, tmp)
    except OSError:  # no symlinks here (some network and Windows filesystems)
        tmp.write_text(name + "\n")
    os.replace(tmp, root / LATEST)


def _version_name(version: str | int) -> str:
    text = str(version)
    return text if text.startswith("v") else f"v{text}"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sha256_file(path: Path) -> str:
    """The sha256 of a file, read in 1 MiB chunks (shard checksums, export records)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read(files: list[Path]) -> pa.Table:
    return pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")


def _convert(table: pa.Table, format: str) -> Any:
    if format == "arrow":
        return table
    if format == "pandas":
        return table.to_pandas()
    if format == "datasets":
        import datasets

        return datasets.Dataset(table)
    raise CorpusError(f"unknown format '{format}'; choose pandas, arrow or datasets")
