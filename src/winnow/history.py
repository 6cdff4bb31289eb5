"""What changed between corpus versions: the log, a diff of two versions, a row's trace.

Rows are matched by ``id`` (a hash of source, position and content), so an unchanged row is
recognised whatever its position, and two versions of *different* pipelines over the same
inputs can be compared too.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from winnow.corpus import Corpus, parse_ref
from winnow.errors import CorpusError


@dataclass
class VersionInfo:
    """One line of ``winnow log``."""

    version: str
    created: str
    fingerprint: str
    parent: str | None
    rows: int
    rejected: int
    changes: list[str]

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def log(corpus: Corpus) -> list[VersionInfo]:
    """The versions, newest first, each with what changed in the config since its parent."""
    out = []
    for name in reversed(corpus.versions()):
        m = corpus.manifest(name)
        parent = m.get("parent")
        before = corpus.manifest(parent)["config"] if parent in corpus.versions() else None
        c = m["counts"]
        changes = config_changes(before, m["config"]) if before is not None else ["first version"]
        out.append(
            VersionInfo(
                name, m["created"], m["fingerprint"], parent, c["train"] + c["validation"], c["rejected"], changes
            )
        )
    return out


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Readable differences between two pipeline configs ("+ stage minhash_dedup", "length.min_response: 1 → 2")."""
    changes: list[str] = []
    for key in sorted(set(old) | set(new)):
        if key in ("stages", "inputs", "output"):
            continue
        if old.get(key) != new.get(key):
            changes += _value_changes(key, old.get(key), new.get(key))
    old_inputs = [json.dumps(i, sort_keys=True) for i in old.get("inputs", [])]
    new_inputs = [json.dumps(i, sort_keys=True) for i in new.get("inputs", [])]
    changes += [f"- input {i}" for i in old_inputs if i not in new_inputs]
    changes += [f"+ input {i}" for i in new_inputs if i not in old_inputs]
    old_stages = [next(iter(s.items())) for s in old.get("stages", [])]
    new_stages = [next(iter(s.items())) for s in new.get("stages", [])]
    old_names = [n for n, _ in old_stages]
    new_names = [n for n, _ in new_stages]
    if old_names != new_names:
        changes += [f"- stage {n}" for n in old_names if n not in new_names]
        changes += [f"+ stage {n}" for n in new_names if n not in old_names]
        moved = [n for n in new_names if n in old_names]
        if moved != [n for n in old_names if n in new_names]:
            changes.append(f"stage order: {' → '.join(new_names)}")
    for name, params in new_stages:
        before = dict(old_stages).get(name)
        if before is not None and before != params:
            changes += _value_changes(name, before, params)
    return changes or ["no config change (inputs or winnow changed)"]


def _value_changes(path: str, old: Any, new: Any) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            if old.get(key) != new.get(key):
                out += _value_changes(f"{path}.{key}", old.get(key), new.get(key))
        return out
    return [f"{path}: {json.dumps(old)} → {json.dumps(new)}"]


@dataclass
class Diff:
    """Rows added and removed between two versions, with the config, funnel and mix side by side."""

    a: str
    b: str
    added: list[str]
    removed: list[str]
    unchanged: int
    config: list[str]
    funnel: list[tuple[str, dict[str, Any] | None, dict[str, Any] | None]]
    mix: dict[str, dict[str, tuple[int, int]]]
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "added": len(self.added),
            "removed": len(self.removed),
            "unchanged": self.unchanged,
            "config": self.config,
            "funnel": [{"stage": s, "a": x, "b": y} for s, x, y in self.funnel],
            "mix": {k: {v: list(n) for v, n in m.items()} for k, m in self.mix.items()},
            "samples": self.samples,
        }


def diff(ref_a: str, ref_b: str, show: int = 0, seed: int = 0) -> Diff:
    """Compare ``corpus@vA`` with ``corpus@vB`` (the corpora may differ)."""
    (corpus_a, va), (corpus_b, vb) = (_open(ref_a), _open(ref_b))
    ids_a = _ids(corpus_a, va)
    ids_b = _ids(corpus_b, vb)
    added = sorted(ids_b - ids_a)
    removed = sorted(ids_a - ids_b)
    ma, mb = corpus_a.manifest(va), corpus_b.manifest(vb)
    stages_a = {s["stage"]: s for s in ma["stages"]}
    stages_b = {s["stage"]: s for s in mb["stages"]}
    order = [s["stage"] for s in ma["stages"]] + [s["stage"] for s in mb["stages"] if s["stage"] not in stages_a]
    funnel = [(name, _brief(stages_a.get(name)), _brief(stages_b.get(name))) for name in order]
    mix = {column: _mix(corpus_a, va, corpus_b, vb, column) for column in ("task_type", "lang")}
    result = Diff(
        f"{ref_a if '@' in ref_a else ref_a + '@' + ma['version']}",
        f"{ref_b if '@' in ref_b else ref_b + '@' + mb['version']}",
        added,
        removed,
        len(ids_a & ids_b),
        config_changes(ma["config"], mb["config"]),
        funnel,
        mix,
    )
    if show:
        rng = random.Random(seed)
        result.samples = {
            "added": _explain(corpus_b, vb, corpus_a, va, _pick(added, show, rng), "was removed in A by"),
            "removed": _explain(corpus_a, va, corpus_b, vb, _pick(removed, show, rng), "removed in B by"),
        }
    return result


@dataclass
class TraceStep:
    version: str
    where: str  # train | validation | rejected | absent
    stage: str | None = None
    reason: str | None = None


def trace(ref: str, row_id: str) -> tuple[dict[str, Any] | None, list[TraceStep]]:
    """Where row ``row_id`` is in every version of a corpus: kept (which split) or removed (by
    which stage, why), and the row itself (from the newest version that has it)."""
    corpus, _ = _open(ref)
    row = None
    steps = []
    for name in corpus.versions():
        found = _find(corpus, name, row_id)
        if found is None:
            steps.append(TraceStep(name, "absent"))
            continue
        where, record = found
        row = record
        steps.append(TraceStep(name, where, record.get("stage"), record.get("reason")))
    if row is None:
        raise CorpusError(f"no row with id {row_id} in any version of {corpus.path}")
    return row, steps


# -- helpers -----------------------------------------------------------------------------------


def _open(ref: str) -> tuple[Corpus, str]:
    path, version = parse_ref(ref)
    corpus = Corpus(path)
    return corpus, corpus.resolve(version).name


def _ids(corpus: Corpus, version: str) -> set[str]:
    files = corpus.files(version)
    return set(pa.concat_tables([pq.read_table(f, columns=["id"]) for f in files]).column("id").to_pylist())


def _brief(stats: dict[str, Any] | None) -> dict[str, Any] | None:
    if stats is None:
        return None
    return {k: stats[k] for k in ("rows_in", "rows_out", "removed") if k in stats} | {
        "reasons": dict(list(stats.get("reasons", {}).items())[:3])
    }


def _mix(corpus_a: Corpus, va: str, corpus_b: Corpus, vb: str, column: str) -> dict[str, tuple[int, int]]:
    counts = []
    for corpus, version in ((corpus_a, va), (corpus_b, vb)):
        values: Counter[str] = Counter()
        for f in corpus.files(version):
            if column in pq.read_schema(f).names:
                values.update(str(v) for v in pq.read_table(f, columns=[column]).column(column).to_pylist())
        counts.append(values)
    keys = sorted(set(counts[0]) | set(counts[1]), key=lambda k: -(counts[0][k] + counts[1][k]))
    return {k: (counts[0][k], counts[1][k]) for k in keys}


def _pick(ids: list[str], n: int, rng: random.Random) -> list[str]:
    return sorted(rng.sample(ids, min(n, len(ids))))


def _explain(
    corpus: Corpus, version: str, other: Corpus, other_version: str, ids: list[str], verb: str
) -> list[dict[str, Any]]:
    """Sample rows from ``corpus@version``, each with why ``other`` removed it (if it did)."""
    if not ids:
        return []
    wanted = pa.array(ids)
    rows = corpus.load(version, format="arrow")
    rows = rows.filter(pc.is_in(rows.column("id"), wanted)).to_pylist()
    rejected = other.rejected(other_version, format="arrow")
    why = {
        r["id"]: r
        for r in rejected.filter(pc.is_in(rejected.column("id"), wanted)).select(["id", "stage", "reason"]).to_pylist()
    }
    for row in rows:
        if row["id"] in why:
            stage, reason = why[row["id"]]["stage"], why[row["id"]]["reason"]
            said = reason if reason.startswith(f"{stage}:") else f"{stage}: {reason}"
            row["note"] = f"{verb} {said}"
    return rows


def _find(corpus: Corpus, version: str, row_id: str) -> tuple[str, dict[str, Any]] | None:
    for split in ("train", "validation"):
        for f in corpus.files(version, split):
            t = pq.read_table(f, filters=[("id", "=", row_id)])
            if t.num_rows:
                return split, t.to_pylist()[0]
    folder = corpus.resolve(version) / "rejected"
    for f in sorted(folder.glob("*.parquet")) if folder.is_dir() else []:
        t = pq.read_table(f, filters=[("id", "=", row_id)])
        if t.num_rows:
            return "rejected", t.to_pylist()[0]
    return None
