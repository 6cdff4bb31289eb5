"""Pipelines: YAML ↔ Python objects, validated before any data is read, and run.

The YAML shape is a public contract (DESIGN.md §3): ``name``, ``inputs`` (a list of
``{path, format?, …}``), ``stages`` (a list of one-key maps ``stage_name: {params}``),
``output``, ``split`` and ``engine``. Relative paths are taken from the working directory,
as in other data tools' configs. Errors name the file, the line and the valid choices.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import difflib
import errno
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml

from winnow import __version__, schema
from winnow.card import render_card
from winnow.corpus import Corpus, Draft
from winnow.engines.local import EngineOutput, LocalEngine, StageStats, read_batches, read_ipc
from winnow.errors import ConfigError, CorpusError, InvariantError
from winnow.formats import InputSource, InputSpec, from_object, open_input
from winnow.report import render_report
from winnow.stages import base as stage_base
from winnow.stages.base import Stage
from winnow.training.config import TrainConfig

log = logging.getLogger(__name__)

KEYS = ("name", "inputs", "stages", "output", "split", "engine", "train")
ENGINES = ("local",)
#: Bump when the corpus layout or fingerprint recipe changes.
CORPUS_FORMAT = 1


class _Unset:
    """Marks an argument left out (``output=None`` has a meaning of its own: in memory)."""


_UNSET = _Unset()


@dataclass(frozen=True)
class Split:
    """How kept rows are assigned to train and validation (by a hash of ``id``)."""

    validation: float = 0.02
    seed: int = 0


class Pipeline:
    """Inputs, stages and where the corpus goes. The same thing as a pipeline YAML file.

    >>> import winnow as wn
    >>> p = wn.Pipeline(inputs=["sample_data/alpaca.jsonl"],
    ...                 stages=[wn.stages.ExactDedup(), wn.stages.LengthFilter(min_response=2)],
    ...                 output="corpus/demo")
    >>> p.stages[1].name
    'length'
    """

    def __init__(
        self,
        inputs: Sequence[Any] = (),
        stages: Sequence[Stage | Mapping[str, Any]] = (),
        output: str | Path | None = None,
        name: str = "pipeline",
        split: Split | Mapping[str, Any] | None = None,
        engine: str = "local",
        train: TrainConfig | Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.inputs = [_input(i) for i in inputs]
        self.stages = [s if isinstance(s, Stage) else stage_base.from_config(s) for s in stages]
        self.output = Path(output) if output is not None else None
        self.split = split if isinstance(split, Split) else _split(split or {})
        if engine not in ENGINES:
            raise ConfigError(f"unknown engine '{engine}'; valid engines: {', '.join(ENGINES)}")
        self.engine = engine
        if train is not None and not isinstance(train, TrainConfig):
            train = TrainConfig.from_dict(train, corpus=str(self.output) if self.output else "")
        #: fine-tune on every version this pipeline writes (the YAML's ``train:`` section)
        self.train = train

    def __repr__(self) -> str:
        return f"Pipeline(name={self.name!r}, inputs={len(self.inputs)}, stages={[s.name for s in self.stages]})"

    # -- config ---------------------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path) -> Pipeline:
        """Read and validate a pipeline file; errors name the file and line."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"pipeline file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read pipeline file {path}: {e}") from None
        return cls.from_dict(load_yaml(text, str(path)), origin=str(path))

    @classmethod
    def from_dict(cls, data: Any, origin: str = "<pipeline>") -> Pipeline:
        where = _Where(origin)
        if not isinstance(data, Mapping):
            raise ConfigError(f"{origin}: a pipeline is a map with keys {', '.join(KEYS)}")
        for key in data:
            if key not in KEYS:
                raise where.error(data, key, f"unknown key '{key}'{_hint(key, KEYS)}; valid keys: {', '.join(KEYS)}")
        inputs = data.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            raise where.error(data, "inputs", "`inputs` must be a non-empty list like `- path: data.jsonl`")
        specs = []
        for i, item in enumerate(inputs):
            try:
                specs.append(_input(item))
            except ConfigError as e:
                raise where.error(inputs, i, str(e), item, e.key) from None
        stages = data.get("stages") or []
        if not isinstance(stages, list):
            raise where.error(data, "stages", "`stages` must be a list of one-key maps like `- length: {}`")
        built = []
        for i, entry in enumerate(stages):
            try:
                built.append(stage_base.from_config(entry))
            except ConfigError as e:
                params = next(iter(entry.values()), None) if isinstance(entry, Mapping) and len(entry) == 1 else None
                raise where.error(stages, i, str(e), params, e.key) from None
        for key, kind in (("name", str), ("output", str)):
            if key in data and data[key] is not None and not isinstance(data[key], kind):
                raise where.error(data, key, f"`{key}` must be a string, got {data[key]!r}")
        try:
            split = _split(data.get("split") or {})
        except ConfigError as e:
            raise where.error(data, "split", str(e), data.get("split"), e.key) from None
        engine = data.get("engine", "local")
        if engine not in ENGINES:
            raise where.error(data, "engine", f"unknown engine {engine!r}; valid engines: {', '.join(ENGINES)}")
        train = None
        if data.get("train") is not None:
            try:
                train = TrainConfig.from_dict(data["train"], corpus=data.get("output") or "")
            except ConfigError as e:
                raise where.error(data, "train", str(e), data["train"], e.key) from None
        return cls(
            inputs=specs,
            stages=built,
            output=data.get("output"),
            name=data.get("name") or Path(origin).stem,
            split=split,
            engine=engine,
            train=train,
        )

    def to_dict(self) -> dict[str, Any]:
        """The pipeline as plain data (the YAML shape); in-memory inputs appear as a description."""
        return {
            "name": self.name,
            "inputs": [_input_config(i) for i in self.inputs],
            "stages": [s.to_config() for s in self.stages],
            "output": str(self.output) if self.output is not None else None,
            "split": dataclasses.asdict(self.split),
            "engine": self.engine,
            **({"train": self.train.to_dict()} if self.train is not None else {}),
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    # -- running --------------------------------------------------------------------------------
    def run(
        self,
        data: Any = None,
        *,
        output: str | Path | _Unset | None = _UNSET,
        workers: int | None = None,
        batch_size: int = 1000,
        force: bool = False,
        progress: bool = True,
    ) -> RunResult:
        """Run the stages over the inputs (or over ``data``: a DataFrame, Arrow table, Dataset).

        With an output folder (the pipeline's, or ``output=``) the result is a new corpus
        version — or the existing one when nothing changed (``force`` writes anyway). With
        ``output=None`` the rows stay in memory, in ``RunResult.data``.
        """
        if batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {batch_size}")
        target = self.output if isinstance(output, _Unset) else (Path(output) if output is not None else None)
        inputs = [_input(data)] if data is not None else self.inputs
        if not inputs:
            raise ConfigError("the pipeline has no inputs: give `inputs=` or pass data to run()")
        sources = [_open(i) for i in inputs]
        fingerprint = self._fingerprint(inputs, sources)
        engine = LocalEngine(workers=workers, progress=progress)
        kind = _kind(data)
        if target is None:
            with tempfile.TemporaryDirectory(prefix="winnow-") as work:
                out = engine.run(_ingest(sources, batch_size), self.stages, Path(work) / "work")
                kept = _concat(list(read_batches(out.batches)), schema.SCHEMA)
                rejected = _concat([read_ipc(p) for files in out.rejected for p in files], schema.REJECTED_SCHEMA)
                tables = {f"{name}/{step:02d}-{stage}": read_ipc(p) for step, stage, name, p in out.tables}
            return RunResult(
                self, out.stats, sources, fingerprint, kept=kept, rejected=rejected, kind=kind, tables=tables
            )

        corpus = Corpus(target)
        if not force and corpus.versions():
            latest = corpus.manifest()
            if latest.get("fingerprint") == fingerprint:
                stats = [_stats_from_dict(d) for d in latest.get("stages", [])]
                result = RunResult(
                    self,
                    stats,
                    sources,
                    fingerprint,
                    corpus=corpus,
                    version=latest["version"],
                    up_to_date=True,
                    kind=kind,
                )
                return self._train(result, progress)
        with _writing(target), corpus.draft() as draft:
            out = engine.run(_ingest(sources, batch_size), self.stages, draft.folder / ".work")
            manifest = self._write(draft, out, sources, fingerprint)
            shutil.rmtree(draft.folder / ".work")
            version = draft.commit(manifest, {"README.md": lambda _, m: render_card(m), "report.html": render_report})
        result = RunResult(self, out.stats, sources, fingerprint, corpus=corpus, version=version, kind=kind)
        return self._train(result, progress)

    def _train(self, result: RunResult, progress: bool) -> RunResult:
        """With a ``train:`` section, fine-tune on the version — unless its output folder already
        holds a run on this very version (same fingerprint)."""
        if self.train is None or result.corpus is None or result.version is None:
            return result
        done = Path(self.train.output) / "train_run.json"
        if done.is_file():
            previous = json.loads(done.read_text())
            if (
                previous.get("status") == "complete"
                and previous.get("corpus", {}).get("fingerprint") == result.fingerprint
            ):
                log.info("%s already holds a training run on this version", self.train.output)
                return result
        from winnow.training import train

        config = dataclasses.replace(self.train, corpus=f"{result.corpus.path}@{result.version}", force=True)
        result.trained = train(config=config, progress=progress)
        return result

    def _fingerprint(self, inputs: list[Any], sources: list[InputSource]) -> str:
        """A hash of the inputs' contents, the config and each stage's version (not the output)."""
        config = self.to_dict()
        config.pop("output")
        config.pop("engine")
        config["inputs"] = [_input_config(i) for i in inputs]
        payload = {
            "corpus_format": CORPUS_FORMAT,
            "config": config,
            "stage_versions": [[s.name, s.version] for s in self.stages],
            "external": [s.external_fingerprint() for s in self.stages],
            "inputs": [s.fingerprint() for s in sources],
        }
        text = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def _write(self, draft: Draft, out: EngineOutput, sources: list[InputSource], fingerprint: str) -> dict[str, Any]:
        first = read_ipc(out.batches[0]).schema if out.batches else schema.SCHEMA
        # re-read per pass (ids, then each split), so the kept rows are never all in memory at once
        batches = _Reread(out.batches)
        shards = draft.write_data(batches, self.split.validation, self.split.seed, first)
        rejected_shards = []
        steps = ["ingest", *[s.name for s in self.stages]]
        for step, (name, files) in enumerate(zip(steps, out.rejected)):
            if files:
                rejected_shards += draft.write_table(
                    "rejected",
                    f"{step:02d}-{name}",
                    read_batches(files),
                    out.stats[step].removed,
                    schema.REJECTED_SCHEMA,
                )
        table_shards = []
        mixes = []
        for step, stage_name, table_name, path in out.tables:
            table = read_ipc(path)
            table_shards += draft.write_table(
                table_name, f"{step:02d}-{stage_name}", [table], table.num_rows, table.schema
            )
            if table_name == "mix":  # balance: the mix before and after, with its entropy, in words too
                facts = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
                mixes.append({"step": step, "stage": stage_name, **facts, "groups": table.to_pylist()})
        counts = {
            s: sum(x["rows"] for x in shards if x["path"].startswith(f"data/{s}-")) for s in ("train", "validation")
        }
        counts["input"] = out.stats[0].rows_in
        counts["rejected"] = sum(x["rows"] for x in rejected_shards)
        if counts["input"] != counts["train"] + counts["validation"] + counts["rejected"]:
            raise InvariantError(f"row counts do not add up: {counts}; this is a bug in winnow, please report it")
        table_schema = schema.without_internal(first.empty_table()).schema
        stage_params = [None, *[s.to_config()[s.name] for s in self.stages]]
        stage_versions = [None, *[s.version for s in self.stages]]
        return {
            "fingerprint": fingerprint,
            "name": self.name,
            "config": self.to_dict(),
            "inputs": [s.describe() for s in sources],
            "stages": [
                {**st.to_dict(), "params": p, "stage_version": v}
                for st, p, v in zip(out.stats, stage_params, stage_versions)
            ],
            "counts": counts,
            "schema": [{"name": f.name, "type": str(f.type)} for f in table_schema],
            "shards": {"data": shards, "rejected": rejected_shards, "tables": table_shards},
            "languages": _languages(out.batches),
            **({"mix": mixes} if mixes else {}),
            "winnow_version": __version__,
            "versions": _library_versions(),
        }


class _Reread:
    """The engine's batch files as an iterable that reads them again on every pass."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __iter__(self) -> Iterator[pa.Table]:
        return read_batches(self.paths)


class RunResult:
    """What a run did: the funnel, and where the corpus version is (or the rows, in memory)."""

    def __init__(
        self,
        pipeline: Pipeline,
        stats: list[StageStats],
        sources: list[InputSource],
        fingerprint: str,
        corpus: Corpus | None = None,
        version: str | None = None,
        up_to_date: bool = False,
        kept: pa.Table | None = None,
        rejected: pa.Table | None = None,
        kind: str = "pandas",
        tables: dict[str, pa.Table] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.stats = stats
        self.sources = sources
        self.fingerprint = fingerprint
        self.corpus = corpus
        self.version = version
        self.up_to_date = up_to_date
        self._kept = kept
        self._rejected = rejected
        self.kind = kind
        self._tables = tables
        #: the training run of a pipeline with a ``train:`` section (a ``winnow.training.TrainResult``)
        self.trained: Any = None

    @property
    def path(self) -> Path | None:
        return self.corpus.resolve(self.version) if self.corpus and self.version else None

    def to_arrow(self) -> pa.Table:
        if self._kept is not None:
            return self._kept
        assert self.corpus is not None
        return self.corpus.load(self.version or "latest", format="arrow")  # type: ignore[no-any-return]

    def to_pandas(self) -> Any:
        return self.to_arrow().to_pandas()

    @property
    def data(self) -> Any:
        """The kept rows in the type the run was given (files → pandas)."""
        table = self.to_arrow()
        if self.kind == "arrow":
            return table
        if self.kind == "datasets":
            import datasets

            return datasets.Dataset(table)
        return table.to_pandas()

    def rejected(self, format: str = "pandas") -> Any:
        """Removed rows with ``stage`` and ``reason``."""
        if self._rejected is not None:
            table = self._rejected
            return table if format == "arrow" else table.to_pandas()
        assert self.corpus is not None
        return self.corpus.rejected(self.version or "latest", format=format)  # type: ignore[arg-type]

    def table(self, name: str, stage: str | None = None) -> pa.Table:
        """A table a stage explained itself with, e.g. ``table("clusters")``."""
        if self._tables is None:
            assert self.corpus is not None
            return self.corpus.table(name, self.version or "latest", stage)
        found = [
            t
            for key, t in self._tables.items()
            if key.startswith(f"{name}/") and (stage is None or key.endswith(f"-{stage}"))
        ]
        if not found:
            raise CorpusError(f"this run wrote no '{name}' table")
        return pa.concat_tables(found)

    def funnel(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in self.stats]

    def _repr_html_(self) -> str:
        """A summary table in Jupyter: where the rows went, stage by stage."""
        from html import escape

        where = escape(str(self.path)) if self.path else "in memory"
        note = " (up to date: nothing written)" if self.up_to_date else ""
        rows = "".join(
            f"<tr><td>{escape(s.name)}</td><td>{s.rows_in:,}</td><td>{s.rows_out:,}</td><td>{s.removed:,}</td>"
            f"<td>{s.seconds:.2f}s</td><td>{escape('; '.join(f'{r} ({n:,})' for r, n in s.reasons.most_common(3)))}"
            "</td></tr>"
            for s in self.stats
        )
        return (
            f"<p><b>{escape(self.pipeline.name)}</b> → {where}{note}</p><table><tr><th>stage</th><th>in</th>"
            f"<th>out</th><th>removed</th><th>time</th><th>top reasons</th></tr>{rows}</table>"
        )

    def __repr__(self) -> str:
        where = f"{self.path}" if self.path else "in memory"
        rows = self.stats[-1].rows_out if self.stats else 0
        note = " (up to date)" if self.up_to_date else ""
        return f"RunResult({self.pipeline.name}: {rows} rows, {where}{note})"


# -- YAML with line numbers --------------------------------------------------------------------


class _Map(dict):  # type: ignore[type-arg]
    lines: dict[Any, int]


class _List(list):  # type: ignore[type-arg]
    lines: list[int]


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader that remembers the line of every key and list item, with YAML 1.2
    booleans: only true/false, so that `on: instruction` (a stage parameter) stays the key "on"
    instead of YAML 1.1's boolean True."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _mapping(loader: _Loader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)
    out = _Map()
    out.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            raise ConfigError(f"line {key_node.start_mark.line + 1}: duplicate key '{key}'")
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = key_node.start_mark.line + 1
    return out


def _sequence(loader: _Loader, node: yaml.SequenceNode) -> _List:
    out = _List(loader.construct_object(child, deep=True) for child in node.value)
    out.lines = [child.start_mark.line + 1 for child in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


def load_yaml(text: str, origin: str = "<yaml>") -> Any:
    """Parse YAML safely (no Python objects), keeping line numbers for error messages."""
    try:
        return yaml.load(text, Loader=_Loader)
    except ConfigError as e:
        raise ConfigError(f"{origin}, {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{origin}{where}: invalid YAML ({problem})") from None


@dataclass
class _Where:
    origin: str

    def error(self, parent: Any, key: Any, message: str, child: Any = None, child_key: Any = None) -> ConfigError:
        """A ConfigError at the line of ``child[child_key]`` if known, else of ``parent[key]``."""
        line = _line(child, child_key) or _line(parent, key)
        where = f"{self.origin}, line {line}" if line else self.origin
        return ConfigError(f"{where}: {message}")


def _line(container: Any, key: Any) -> int | None:
    lines = getattr(container, "lines", None)
    if lines is None or key is None:
        return None
    try:
        return lines[key]  # type: ignore[no-any-return]
    except (KeyError, IndexError, TypeError):
        return None


# -- helpers -----------------------------------------------------------------------------------

_SPEC_FIELDS = tuple(f.name for f in dataclasses.fields(InputSpec))


def _input(item: Any) -> Any:
    """An input as given by a user: a path string, a map of InputSpec fields, an InputSpec, or
    an in-memory table (kept as it is)."""
    if isinstance(item, InputSpec):
        return item
    if isinstance(item, (str, Path)):
        return InputSpec(path=str(item))
    if isinstance(item, Mapping):
        for key in item:
            if key not in _SPEC_FIELDS:
                hint, valid = _hint(key, _SPEC_FIELDS), ", ".join(_SPEC_FIELDS)
                raise ConfigError(f"unknown input key '{key}'{hint}; valid keys: {valid}", key)
        if not item.get("path") and not item.get("hf_dataset"):
            raise ConfigError("an input needs `path:` (file, glob, folder or URL) or `hf_dataset:`")
        for key, value in item.items():
            if key == "columns":
                if value is not None and not (
                    isinstance(value, Mapping) and all(isinstance(v, str) for v in value.values())
                ):
                    raise ConfigError("`columns` must map canonical fields to source field names", key)
            elif value is not None and not isinstance(value, str):
                raise ConfigError(f"input key '{key}' must be a string, got {value!r}", key)
        if item.get("on_error", "raise") not in ("raise", "skip"):
            raise ConfigError(f"on_error must be 'raise' or 'skip', got {item['on_error']!r}", "on_error")
        return InputSpec(**{str(k): (dict(v) if isinstance(v, Mapping) else v) for k, v in item.items()})  # type: ignore[arg-type]
    if _kind(item) in ("pandas", "arrow", "datasets", "records"):
        return item
    raise ConfigError(f"cannot use {type(item).__name__} as an input; give a path, a map or a table")


def _open(item: Any) -> InputSource:
    return open_input(item) if isinstance(item, InputSpec) else from_object(item)


def _input_config(item: Any) -> Any:
    if isinstance(item, InputSpec):
        return {
            k: v
            for k, v in dataclasses.asdict(item).items()
            if v is not None and v != InputSpec.__dataclass_fields__[k].default
        }
    return {"object": f"{type(item).__module__}.{type(item).__name__}", "rows": len(item)}


def _kind(data: Any) -> str:
    if data is None:
        return "pandas"
    module = type(data).__module__
    if module.startswith("pandas"):
        return "pandas"
    if isinstance(data, (pa.Table, pa.RecordBatch)):
        return "arrow"
    if module.startswith("datasets"):
        return "datasets"
    if isinstance(data, list):
        return "records"
    return "unknown"


def _split(value: Any) -> Split:
    if not isinstance(value, Mapping):
        raise ConfigError("`split` must be a map like `{validation: 0.02}`")
    for key in value:
        if key not in ("validation", "seed"):
            raise ConfigError(f"unknown split key '{key}'; valid keys: validation, seed", key)
    validation = value.get("validation", Split.validation)
    seed = value.get("seed", Split.seed)
    if isinstance(validation, bool) or not isinstance(validation, (int, float)) or not 0 <= validation < 1:
        raise ConfigError(f"split.validation must be a fraction in [0, 1), got {validation!r}", "validation")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"split.seed must be an integer, got {seed!r}", "seed")
    return Split(float(validation), seed)


def _hint(word: Any, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _ingest(sources: list[InputSource], batch_size: int) -> Iterator[tuple[pa.Table, pa.Table]]:
    for source in sources:
        for batch in source.batches(batch_size):
            yield batch.rows, batch.rejected


def _concat(tables: list[pa.Table], empty_schema: pa.Schema) -> pa.Table:
    if not tables:
        return schema.empty(empty_schema)
    return schema.without_internal(pa.concat_tables(tables, promote_options="default"))


#: errors of a write that the user fixes (space, permissions, a read-only mount), not bugs
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


@contextlib.contextmanager
def _writing(target: Path) -> Iterator[None]:
    """Turn a failed write under ``target`` (disk full, read-only, no permission) into one clear
    CorpusError. The draft is removed on the way out, so no partial version is left."""
    try:
        yield
    except OSError as e:
        # pyarrow's write errors carry the errno only in the text ("[errno 28] No space left")
        found = re.search(r"\[errno (\d+)\]", str(e), re.IGNORECASE)
        code = e.errno if e.errno is not None else int(found.group(1)) if found else None
        if code not in _WRITE_ERRNOS:
            raise
        reason = os.strerror(code)
        raise CorpusError(
            f"cannot write a corpus version into {target}: {reason} ({' '.join(str(e).split())}); "
            "nothing was written: free some space, fix the permissions or choose another --output"
        ) from e


def _stats_from_dict(d: Mapping[str, Any]) -> StageStats:
    return StageStats(
        d["stage"],
        d["rows_in"],
        d["rows_out"],
        d.get("seconds", 0.0),
        collections.Counter(d.get("reasons", {})),
        events=collections.Counter(d.get("events", {})),
    )


def _languages(batches: list[Path], share: float = 0.01) -> list[str]:
    """The languages of at least ``share`` of the kept rows (for the dataset card's header)."""
    counts: collections.Counter[str] = collections.Counter()
    for path in batches:
        table = read_ipc(path)
        if "lang" in table.column_names:
            counts.update(v for v in table.column("lang").to_pylist() if v)
    total = sum(counts.values())
    return sorted(lang for lang, n in counts.items() if total and n / total >= share)


def _library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("pyarrow", "pandas", "datasets", "datasketch", "langdetect", "jinja2"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[pkg] = md.version(pkg)
    return out
