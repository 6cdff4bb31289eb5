"""Stage kinds, the outcome of a stage on a batch, and the registry of stages by name.

Two kinds, because engines schedule them differently (DESIGN.md §2):

- :class:`RowStage` looks at one batch at a time. A :class:`Filter` only answers, per row,
  "keep" (null) or a reason to drop; the base class splits the batch and counts the reasons.
  A :class:`Mapper` returns the transformed batch.
- :class:`GlobalStage` needs the whole dataset, written as ``summarize`` (per batch, parallel)
  → ``combine`` (once) → ``apply`` (per batch, parallel), so the same code runs in one process
  or on a cluster. Partials are compact (hashes, ids, counts), never whole rows.

A stage's constructor only stores its parameters (as in scikit-learn), so
``Stage.from_config(stage.to_config())`` gives an equal stage and the YAML round-trips.
"""

from __future__ import annotations

import collections
import difflib
import importlib.metadata
import inspect
import logging
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import TypeAdapter, ValidationError

from winnow import schema
from winnow.errors import ConfigError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "winnow.stages"


@dataclass
class Verdict:
    """Per-row decisions of a filter: ``reasons`` (null = keep) and, for counting, ``kinds``.

    ``reasons`` are for people and may name other rows (``exact duplicate of 3fa2…``);
    ``kinds`` are the short categories the stats count (``exact duplicate``). Without
    ``kinds`` the reasons themselves are counted.
    """

    reasons: pa.Array
    kinds: pa.Array | None = None
    #: changes to rows that were kept (``email redacted``: 3), counted in the stats beside the reasons
    events: collections.Counter[str] | None = None


@dataclass
class Outcome:
    """What a stage did to one batch."""

    kept: pa.Table
    rejected: pa.Table
    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    events: collections.Counter[str] = field(default_factory=collections.Counter)


@dataclass
class Combined:
    """What ``combine`` may return when a stage also explains itself in tables.

    ``state`` travels to the workers for ``apply`` (keep it small); ``tables`` (for example
    dedup clusters) are written into the version as ``NAME/NN-stage.parquet`` and never
    travel to the workers.
    """

    state: Any
    tables: dict[str, pa.Table] = field(default_factory=dict)


@dataclass
class Rescan:
    """What ``combine`` returns when a stage needs a second, read-only look at some rows
    (for example the exact shingle sets of the near-duplicate candidates it is unsure of).

    ``request`` travels to the workers, where ``rescan(batch, request)`` returns a compact
    partial per batch; ``carry`` stays in this process and ``finish(partials, carry)`` then
    returns what ``combine`` would have returned.
    """

    request: Any
    carry: Any


@dataclass(frozen=True)
class ParamInfo:
    name: str
    annotation: str
    default: Any
    doc: str


class Stage:
    """Base of every stage. Subclasses set ``name`` (the registry name users write in YAML)."""

    name: ClassVar[str] = ""
    #: Bump when the stage's output changes for the same input, so corpus fingerprints change.
    version: ClassVar[int] = 1
    kind: ClassVar[str] = ""

    # -- parameters -------------------------------------------------------------------------
    @classmethod
    def params(cls) -> list[ParamInfo]:
        """The constructor's parameters with their types, defaults and docstring lines."""
        docs = _arg_docs(cls.__doc__ or "")
        hints = typing.get_type_hints(cls.__init__)
        out = []
        for p in inspect.signature(cls.__init__).parameters.values():
            if p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            ann = hints.get(p.name, Any)
            out.append(ParamInfo(p.name, _type_name(ann), p.default, docs.get(p.name, "")))
        return out

    def get_params(self) -> dict[str, Any]:
        return {p.name: getattr(self, p.name) for p in self.params()}

    def to_config(self) -> dict[str, Any]:
        """``{name: params}``, the shape of one entry of a pipeline's ``stages:`` list."""
        return {self.name: _plain(self.get_params())}

    @classmethod
    def from_config(cls, params: Mapping[str, Any] | None) -> Stage:
        """Build a stage from YAML parameters, checking names and types before any data is read."""
        params = dict(params or {})
        infos = {p.name: p for p in cls.params()}
        unknown = [k for k in params if k not in infos]
        if unknown:
            key = unknown[0]
            hint = difflib.get_close_matches(str(key), list(infos), n=1)
            raise ConfigError(
                f"unknown parameter '{key}' for stage '{cls.name}'"
                + (f" (did you mean '{hint[0]}'?)" if hint else "")
                + f"; valid parameters: {', '.join(infos) or '(none)'}",
                key,
            )
        hints = typing.get_type_hints(cls.__init__)
        checked = {}
        for key, value in params.items():
            try:
                checked[key] = TypeAdapter(hints.get(key, Any)).validate_python(value, strict=True)
            except ValidationError as e:
                raise ConfigError(
                    f"parameter '{key}' of stage '{cls.name}' must be {infos[key].annotation}, "
                    f"got {value!r} ({e.errors()[0]['msg'].lower()})",
                    key,
                ) from None
        try:
            return cls(**checked)
        except (TypeError, ValueError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"stage '{cls.name}': {e}") from None

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_params() == other.get_params()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__qualname__, repr(sorted(self.to_config()[self.name].items()))))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def external_fingerprint(self) -> str | None:
        """A hash of data the stage reads besides its input (a reference corpus, benchmark
        files), so that a change there makes a new corpus version. None: there is none."""
        return None

    # -- lifecycle ----------------------------------------------------------------------------
    def setup(self) -> None:
        """Load heavy resources (detectors, tokenizers). Called once per worker before use."""


class RowStage(Stage):
    """A stage that sees one batch at a time and needs nothing else."""

    kind = "row"

    def process(self, batch: pa.Table) -> Outcome:
        raise NotImplementedError


class Filter(RowStage):
    """A row stage that answers "keep" or a reason to drop; the base class does the rest.

    Override :meth:`reasons`; override :meth:`annotate` to add or fill columns (scores, ``lang``)
    before deciding, so thresholds can be re-tuned without recomputing (Data-Juicer's split).
    """

    def annotate(self, batch: pa.Table) -> pa.Table:
        return batch

    def reasons(self, batch: pa.Table) -> pa.Array | Verdict:
        raise NotImplementedError

    def process(self, batch: pa.Table) -> Outcome:
        batch = self.annotate(batch)
        return split(self.name, batch, self.reasons(batch))


class Mapper(RowStage):
    """A row stage that transforms every row and removes none."""

    def transform(self, batch: pa.Table) -> pa.Table:
        raise NotImplementedError

    def process(self, batch: pa.Table) -> Outcome:
        return Outcome(self.transform(batch), schema.empty(schema.REJECTED_SCHEMA))


class GlobalStage(Stage):
    """A stage that needs the whole dataset: summarize → combine → apply.

    ``summarize`` sees each batch (in parallel) and returns a compact, picklable partial;
    ``combine`` turns all partials, given in stream order, into a state; ``apply`` decides each
    batch against that state. ``apply`` defaults to :meth:`annotate` + :meth:`reasons`, split
    the way a :class:`Filter` splits.
    """

    kind = "global"

    def summarize(self, batch: pa.Table) -> Any:
        raise NotImplementedError

    def combine(self, partials: list[Any]) -> Any:
        """The state ``apply`` needs, from all partials in stream order (or a :class:`Combined`)."""
        raise NotImplementedError

    def rescan(self, batch: pa.Table, request: Any) -> Any:
        """A partial from a second look at ``batch`` (only for stages whose combine returns ``Rescan``)."""
        raise NotImplementedError

    def finish(self, partials: list[Any], carry: Any) -> Any:
        """The state (or a :class:`Combined`) from the second look's partials, in stream order."""
        raise NotImplementedError

    def annotate(self, batch: pa.Table, state: Any) -> pa.Table:
        return batch

    def reasons(self, batch: pa.Table, state: Any) -> pa.Array | Verdict:
        raise NotImplementedError

    def apply(self, batch: pa.Table, state: Any) -> Outcome:
        batch = self.annotate(batch, state)
        return split(self.name, batch, self.reasons(batch, state))

    def run(self, batch: pa.Table) -> Outcome:
        """All three steps on one table, for notebooks and tests."""
        result = self.combine([self.summarize(batch)])
        if isinstance(result, Rescan):
            result = self.finish([self.rescan(batch, result.request)], result.carry)
        return self.apply(batch, unwrap(result).state)


def unwrap(combined: Any) -> Combined:
    return combined if isinstance(combined, Combined) else Combined(combined)


def split(stage: str, batch: pa.Table, verdict: pa.Array | Verdict) -> Outcome:
    """Split ``batch`` into kept rows and rejected rows (with stage and reason), counting kinds."""
    if not isinstance(verdict, Verdict):
        verdict = Verdict(verdict)
    reasons = _as_array(verdict.reasons)
    if len(reasons) != batch.num_rows:
        raise ValueError(f"stage '{stage}' gave {len(reasons)} verdicts for {batch.num_rows} rows")
    drop = pc.is_valid(reasons)
    events = collections.Counter(verdict.events or {})
    if not pc.any(drop).as_py():
        return Outcome(batch, schema.empty(schema.REJECTED_SCHEMA), events=events)
    kept = batch.filter(pc.invert(drop))
    gone = schema.canonical(batch.filter(drop))
    why = reasons.filter(drop)
    rejected = gone.append_column("stage", pa.array([stage] * gone.num_rows, pa.string())).append_column(
        "reason", why.cast(pa.string())
    )
    kinds = _as_array(verdict.kinds).filter(drop) if verdict.kinds is not None else why
    counts = collections.Counter(
        {
            row["values"]: row["counts"]
            for row in pc.value_counts(kinds.cast(pa.string())).to_pylist()
            if row["values"] is not None
        }
    )
    return Outcome(kept, rejected, counts, events)


def _as_array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


# -- registry ---------------------------------------------------------------------------------

_REGISTRY: dict[str, type[Stage]] = {}
_DISCOVERED = False


def register(cls: type[Stage]) -> type[Stage]:
    """Class decorator: make a stage usable by its ``name`` in pipelines."""
    if not cls.name:
        raise TypeError(f"{cls.__qualname__} needs a `name` to be registered")
    other = _REGISTRY.get(cls.name)
    if other is not None and other is not cls:
        raise TypeError(f"stage name '{cls.name}' is taken by {other.__module__}.{other.__qualname__}")
    _REGISTRY[cls.name] = cls
    return cls


def registry() -> dict[str, type[Stage]]:
    """Every registered stage by name: the built-ins plus ``winnow.stages`` entry points."""
    global _DISCOVERED
    if not _DISCOVERED:
        _DISCOVERED = True
        import winnow.stages  # noqa: F401  (registers the built-ins)

        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                cls = ep.load()
            except Exception as e:  # a broken plugin must not break winnow
                log.warning("could not load stage '%s' from %s: %s", ep.name, ep.value, e)
                continue
            if not (isinstance(cls, type) and issubclass(cls, Stage)):
                log.warning("entry point '%s' (%s) is not a winnow Stage; ignored", ep.name, ep.value)
                continue
            if cls.name != ep.name:
                log.warning("entry point '%s' names a stage called '%s'; ignored", ep.name, cls.name)
                continue
            register(cls)
    return dict(sorted(_REGISTRY.items()))


def stage_class(name: str) -> type[Stage]:
    stages = registry()
    if name not in stages:
        hint = difflib.get_close_matches(name, list(stages), n=1)
        raise ConfigError(
            f"unknown stage '{name}'"
            + (f" (did you mean '{hint[0]}'?)" if hint else "")
            + f"; valid stages: {', '.join(stages)}"
        )
    return stages[name]


def from_config(entry: Mapping[str, Any]) -> Stage:
    """Build a stage from one ``{name: params}`` entry of a pipeline's ``stages:`` list."""
    if not isinstance(entry, Mapping) or len(entry) != 1:
        raise ConfigError("each stage must be a one-key map like `- length: {min_response: 2}`")
    ((name, params),) = entry.items()
    if params is not None and not isinstance(params, Mapping):
        raise ConfigError(f"the parameters of stage '{name}' must be a map, got {params!r}")
    return stage_class(str(name)).from_config(params)


# -- helpers ----------------------------------------------------------------------------------


def _arg_docs(doc: str) -> dict[str, str]:
    """``name: text`` lines of a Google-style ``Args:`` section."""
    out: dict[str, str] = {}
    m = re.search(r"^\s*Args:\s*$(.*?)(?=^\s*\w[\w ]*:\s*$|\Z)", doc, re.M | re.S)
    if not m:
        return out
    current = None
    for line in m.group(1).splitlines():
        hit = re.match(r"^\s{4,8}(\w+)(?: \([^)]*\))?:\s*(.*)$", line)
        if hit:
            current = hit.group(1)
            out[current] = hit.group(2).strip()
        elif not line.strip():
            current = None  # a blank line ends the section (an example may follow)
        elif current:
            out[current] += " " + line.strip()
    return out


def _type_name(ann: Any) -> str:
    if typing.get_origin(ann) is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(ann))
    if ann is type(None):
        return "null"
    if isinstance(ann, type):
        return ann.__name__
    text = repr(ann).replace("typing.", "")
    return re.sub(r"<class '(\w+)'>", r"\1", text)


def _plain(value: Any) -> Any:
    """Parameters as plain YAML/JSON data (tuples → lists)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
