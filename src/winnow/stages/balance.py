"""Balancing the mix of a column's groups (task types, sources, languages) by subsampling.

``balance`` decides how many rows each group keeps (its *target*) from the group sizes alone,
then which rows (``pick``). The arithmetic is exact (rational numbers, no floating-point sums)
and the same everywhere, so a plan can be computed in a notebook with :func:`targets` or
:meth:`Balance.plan` and reproduced by a pipeline.

How targets are computed, for groups ``g`` with ``n_g`` rows:

1. **Bounds.** Each group may keep at most ``U_g = min(n_g, cap)`` rows (``cap`` is optional for
   every strategy except ``cap``) and at least ``L_g = min(min_per_group, U_g)``. A group whose
   share is zero (``weights`` not naming it) has ``U_g = L_g``: it keeps exactly its minimum.
2. **Shares** ``s_g`` (only their ratios matter): ``uniform`` 1 each; ``cap`` ``min(n_g, cap)``
   (examples-proportional below the cap, as FLAN mixes tasks); ``temperature``
   ``min(n_g, cap)^(1/T)`` (T5/mT5: ``T = 1`` is proportional, larger T flattens towards
   uniform, ``T < 1`` sharpens towards the big groups); ``weights`` the given weights,
   normalized (``{a: 3, b: 1}`` is 75 %/25 %).
3. **Water-filling.** The continuous targets are ``x_g = clamp(λ·s_g, L_g, U_g)``. With ``total``
   given, λ is the exact solution of ``Σ x_g = total``: a group smaller than its share keeps all
   its rows and its surplus goes to the others in proportion to their shares; groups held up
   by ``min_per_group`` pay for it from the others. With ``total: null``, λ is the largest value
   for which no group needs more than it has (``min_g U_g/s_g`` over the groups not pinned by
   their bounds), so the mix is exact and as many rows as possible are kept: uniform keeps the
   smallest group's size from every group. A group with at most ``min_per_group`` rows is kept
   whole and set aside, so it does not drag the others down.
4. **Rounding.** Largest remainder: every group gets ``floor(x_g)``; the rows still missing to
   reach the total (``total``, or ``floor(Σ x_g)`` when it is null) go one each to the groups with
   the largest fractional parts, ties to the group whose name sorts first. Targets are integers
   that sum to the total and respect the bounds.

Edge cases: one group only keeps ``min(total, n)`` rows; a ``total`` above what the bounds allow
keeps everything they allow (logged, and noted in the mix table's metadata); a ``total`` below
``Σ L_g`` keeps ``Σ L_g`` (``min_per_group`` wins, logged). Null values of the column form their
own group named ``(none)``; other values are grouped by their text (``str``).

Which rows a group keeps (``pick``):

- ``random``: the rows with the smallest ``blake2b(id, key=seed)``: a seeded sample that does
  not depend on the order or batching of the rows.
- ``diverse``: greedy farthest-point selection (k-center) on 32-value MinHash signatures of the
  conversation (normalized, character 5-grams, each value cut to its low byte: b-bit MinHash),
  distance = 1 − estimated Jaccard. The first row is the one ``random`` would keep first; each
  next one is the row least similar to everything kept so far, ties going to the smaller seeded
  hash, so a group of near-copies gives up its copies first. Similarities under 0.25
  (:data:`DIVERSE_FLOOR`) count as 0, so among rows unrelated to everything kept the choice is
  the ``random`` order: plain farthest-point would prefer the shortest rows, whose few shingles
  share least with anything (measured on Alpaca: half the distinct word 3-grams of ``random``).
  Cost: a group of ``n`` rows is split into random blocks of at most :data:`DIVERSE_BLOCK`
  rows and the target is shared between blocks by largest remainder, so selecting ``t`` rows
  costs ``O(t · min(n, DIVERSE_BLOCK) · 32)`` byte comparisons (about 4,000 rows/s) and
  ``O(n · 32)`` bytes of memory; near-copies that fall in different blocks of a large group can
  both be kept (remove near-duplicates with ``minhash_dedup`` first).

Memory of the partials ``summarize`` sends to ``combine``: 20 bytes per row (group code int32,
``_order`` int64, seeded hash uint64) plus the batch's distinct group names; 52 bytes per row
with ``pick: diverse`` (plus the 32-byte signature). The state shipped to the workers is the
decision only: the sorted ``_order`` of the rows rejected, or of those kept when fewer (8 bytes
each), and each group's target and size.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from winnow import minhash, schema
from winnow.errors import ConfigError
from winnow.stages.base import Combined, GlobalStage, Verdict, register

log = logging.getLogger(__name__)

Strategy = Literal["uniform", "cap", "temperature", "weights"]
Pick = Literal["random", "diverse"]

#: The name of the group of rows whose ``by`` value is null.
NONE_GROUP = "(none)"
#: In ``weights``, the weight of every group the map does not name (default: 0, dropped).
OTHER_GROUPS = "*"
#: ``pick: diverse`` runs its greedy selection inside random blocks of at most this many rows,
#: which bounds the cost per kept row (see the module docstring).
DIVERSE_BLOCK = 4096
#: MinHash values per row for ``pick: diverse``, one byte each.
DIVERSE_PERM = 32
#: Estimated Jaccard below which ``pick: diverse`` calls two rows unrelated (similarity 0): the
#: common words any two texts share and the one-byte MinHash noise (1/256 per value) stay under it.
DIVERSE_FLOOR = 0.25
#: Significant digits kept of a temperature share ``n^(1/T)``, so targets do not depend on the
#: last bit a platform's ``pow`` returns.
SHARE_DIGITS = 12


# -- the arithmetic ---------------------------------------------------------------------------


@dataclass
class Plan:
    """Targets per group (names sorted) and what the computation had to give up, for the log."""

    sizes: dict[str, int]
    targets: dict[str, int]
    notes: list[str] = field(default_factory=list)


def targets(
    sizes: Mapping[str, int],
    strategy: Strategy = "uniform",
    total: int | None = None,
    cap: int | None = None,
    temperature: float = 2.0,
    weights: Mapping[str, float] | None = None,
    min_per_group: int = 0,
) -> dict[str, int]:
    """Rows to keep per group, for group sizes ``sizes`` (the rules are in the module docstring).

    >>> targets({"a": 10, "b": 100, "c": 100}, total=90)
    {'a': 10, 'b': 40, 'c': 40}
    >>> targets({"a": 100, "b": 400}, strategy="temperature", temperature=2)
    {'a': 100, 'b': 200}
    """
    return plan_targets(sizes, strategy, total, cap, temperature, weights, min_per_group).targets


def plan_targets(
    sizes: Mapping[str, int],
    strategy: Strategy = "uniform",
    total: int | None = None,
    cap: int | None = None,
    temperature: float = 2.0,
    weights: Mapping[str, float] | None = None,
    min_per_group: int = 0,
) -> Plan:
    """:func:`targets` with the notes on what could not be honoured (a total too large, …)."""
    _check(strategy, total, cap, temperature, weights, min_per_group)
    names = sorted(g for g, n in sizes.items() if n > 0)
    plan = Plan({g: int(sizes[g]) for g in names}, {})
    if not names:
        return plan
    upper = [min(plan.sizes[g], cap) if cap is not None else plan.sizes[g] for g in names]
    shares = _shares(names, upper, strategy, temperature, weights, plan.notes)
    lower = [min(min_per_group, u) for u in upper]
    upper = [u if s > 0 else lo for u, s, lo in zip(upper, shares, lower)]
    low_sum, high_sum = sum(lower), sum(upper)
    if total is None:
        free = [i for i, (s, lo, u) in enumerate(zip(shares, lower, upper)) if s > 0 and lo < u]
        scale = min((Fraction(upper[i]) / shares[i] for i in free), default=Fraction(0))
        exact = [_clamp(scale * s, lo, u) for s, lo, u in zip(shares, lower, upper)]
        want = math.floor(sum(exact))
        rows = sum(plan.sizes.values())
        limit = names[min(free, key=lambda i: Fraction(upper[i]) / shares[i])] if free else None
        if limit is not None and plan.sizes[limit] < rows / 20 and want < rows / 2:
            # a stray tiny group (one 'other' row) shrinking the whole corpus is rarely meant
            n = plan.sizes[limit]
            plan.notes.append(
                f"group '{limit}' ({n:,} row{'s' if n != 1 else ''}) sets the size of the mix: "
                f"{want:,} of {rows:,} rows kept; "
                "min_per_group: K keeps groups of up to K rows whole and sets them aside, total: N asks for a size"
            )
    elif total <= low_sum:
        if total < low_sum:
            plan.notes.append(
                f"total {total} is below the {low_sum} rows min_per_group={min_per_group} asks for; keeping {low_sum}"
            )
        exact, want = [Fraction(v) for v in lower], low_sum
    elif total >= high_sum:
        if total > high_sum:
            what = "the data has" if high_sum == sum(plan.sizes.values()) else "the groups' limits allow"
            plan.notes.append(f"total {total} is more than the {high_sum} rows {what}; keeping {high_sum}")
        exact, want = [Fraction(v) for v in upper], high_sum
    else:
        exact, want = _water_fill(shares, lower, upper, total), total
    plan.targets = dict(zip(names, _largest_remainder(exact, want, names)))
    return plan


def _check(
    strategy: str,
    total: int | None,
    cap: int | None,
    temperature: float,
    weights: Mapping[str, float] | None,
    min_per_group: int,
) -> None:
    if strategy not in ("uniform", "cap", "temperature", "weights"):
        raise ConfigError(f"strategy must be uniform, cap, temperature or weights, got {strategy!r}", "strategy")
    if total is not None and total < 1:
        raise ConfigError(f"total must be at least 1 (or null: as many as the mix allows), got {total}", "total")
    if cap is not None and cap < 1:
        raise ConfigError(f"cap must be at least 1, got {cap}", "cap")
    if strategy == "cap" and cap is None:
        raise ConfigError("strategy: cap needs `cap: K`, the most rows a group keeps", "cap")
    if not temperature > 0 or math.isinf(temperature):
        raise ConfigError(f"temperature must be a positive number, got {temperature}", "temperature")
    if min_per_group < 0:
        raise ConfigError(f"min_per_group must be at least 0, got {min_per_group}", "min_per_group")
    if cap is not None and min_per_group > cap:
        raise ConfigError(f"min_per_group ({min_per_group}) cannot be more than cap ({cap})", "min_per_group")
    if strategy == "weights":
        if not weights:
            raise ConfigError("strategy: weights needs `weights: {group: share, ...}`", "weights")
        bad = {g: w for g, w in weights.items() if not (w >= 0 and math.isfinite(w))}
        if bad:
            raise ConfigError(f"weights must be non-negative numbers, got {bad}", "weights")
        if not sum(weights.values()) > 0:
            raise ConfigError("weights must not all be 0", "weights")
    elif weights is not None:
        raise ConfigError(f"weights are only read with strategy: weights, not {strategy}", "weights")


def _shares(
    names: list[str],
    upper: list[int],
    strategy: str,
    temperature: float,
    weights: Mapping[str, float] | None,
    notes: list[str],
) -> list[Fraction]:
    if strategy == "uniform":
        return [Fraction(1)] * len(names)
    if strategy == "cap":
        return [Fraction(u) for u in upper]
    if strategy == "temperature":
        return [Fraction(f"{u ** (1 / temperature):.{SHARE_DIGITS}g}") for u in upper]
    assert weights is not None
    absent = sorted(g for g in weights if g != OTHER_GROUPS and g not in names)
    for g in absent:
        hint = difflib.get_close_matches(g, names, n=1)
        notes.append(f"weights name '{g}', which no row has" + (f" (did you mean '{hint[0]}'?)" if hint else ""))
    other = weights.get(OTHER_GROUPS, 0.0)
    return [_fraction(weights.get(g, other)) for g in names]


def _fraction(value: float) -> Fraction:
    """``0.1`` as 1/10 (what the user wrote), not the binary double nearest to it."""
    return Fraction(value) if isinstance(value, int) else Fraction(repr(float(value)))


def _clamp(value: Fraction, low: int, high: int) -> Fraction:
    return min(max(value, Fraction(low)), Fraction(high))


def _water_fill(shares: list[Fraction], lower: list[int], upper: list[int], total: int) -> list[Fraction]:
    """``clamp(λ·s, L, U)`` with the λ that makes them sum to ``total`` exactly.

    ``f(λ) = Σ clamp(λ·s_g, L_g, U_g)`` is continuous, non-decreasing and linear between the
    breakpoints ``L_g/s_g`` and ``U_g/s_g``: find the segment holding ``total``, solve on it.
    Requires ``Σ L < total < Σ U``.
    """

    def fill(scale: Fraction) -> list[Fraction]:
        return [_clamp(scale * s, lo, u) for s, lo, u in zip(shares, lower, upper)]

    points = sorted({Fraction(b) / s for s, lo, u in zip(shares, lower, upper) if s > 0 for b in (lo, u)})
    lo_i, hi_i = 0, len(points) - 1  # f(points[0]) = Σ L < total < Σ U = f(points[-1])
    while hi_i - lo_i > 1:
        mid = (lo_i + hi_i) // 2
        if sum(fill(points[mid])) <= total:
            lo_i = mid
        else:
            hi_i = mid
    start, end = points[lo_i], points[hi_i]
    at_start = sum(fill(start))
    slope = sum(
        (s for s, lo, u in zip(shares, lower, upper) if s > 0 and lo / s <= start and u / s >= end),
        Fraction(0),
    )
    return fill(start + (total - at_start) / slope)


def _largest_remainder(exact: Sequence[Fraction], total: int, names: Sequence[Any]) -> list[int]:
    """Integers summing to ``total``: floors, then +1 by largest fraction, ties by name."""
    floors = [math.floor(x) for x in exact]
    missing = total - sum(floors)
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - floors[i]), names[i]))
    for i in order[:missing]:
        floors[i] += 1
    return floors


# -- statistics ---------------------------------------------------------------------------------


def entropy_bits(counts: Sequence[int]) -> float:
    """Shannon entropy of the distribution ``counts`` (in bits; 0 for one group or none)."""
    total = sum(counts)
    if total <= 0:
        return 0.0
    return float(-sum(c / total * math.log2(c / total) for c in counts if c > 0))


def mix_table(plan: Plan, after: Mapping[str, int] | None = None) -> pa.Table:
    """The mix before and after: ``group, before, after, target, share_before, share_after``.

    The schema metadata holds ``entropy_before``/``entropy_after`` (bits) and their normalized
    forms (divided by log2 of the number of groups before; 1.0 when there is one group), and
    ``notes``.
    """
    names = list(plan.sizes)
    before = [plan.sizes[g] for g in names]
    target = [plan.targets.get(g, 0) for g in names]
    kept = [after.get(g, 0) for g in names] if after is not None else target
    n_before, n_after = sum(before), sum(kept)
    table = pa.table(
        {
            "group": pa.array(names, pa.string()),
            "before": pa.array(before, pa.int64()),
            "after": pa.array(kept, pa.int64()),
            "target": pa.array(target, pa.int64()),
            "share_before": pa.array([b / n_before if n_before else 0.0 for b in before], pa.float64()),
            "share_after": pa.array([a / n_after if n_after else 0.0 for a in kept], pa.float64()),
        }
    )
    h_before, h_after = entropy_bits(before), entropy_bits(kept)
    top = math.log2(len(names)) if len(names) > 1 else 0.0
    meta = {
        "entropy_before": h_before,
        "entropy_after": h_after,
        "normalized_entropy_before": h_before / top if top else 1.0,
        "normalized_entropy_after": h_after / top if top else 1.0,
        "rows_before": n_before,
        "rows_after": n_after,
    }
    metadata = {k: repr(v) for k, v in meta.items()}
    metadata["notes"] = json.dumps(plan.notes)
    return table.replace_schema_metadata(metadata)


# -- the stage ----------------------------------------------------------------------------------


@dataclass
class _Decisions:
    """What ``apply`` needs: the sorted ``_order`` of the listed rows, and whether listed means
    kept (when fewer rows are kept than rejected) or rejected; each group's target and size."""

    listed: np.ndarray
    listed_kept: bool
    targets: dict[str, int]
    sizes: dict[str, int]


@register
class Balance(GlobalStage):
    """Subsample rows so the groups of a column (task types by default) make a chosen mix.

    Targets per group are integers that sum to the total, computed exactly (water-filling,
    largest-remainder rounding with ties by group name): see the ``winnow.stages.balance``
    module docstring for every rule. Rows left out are rejected with
    ``balance: GROUP capped at TARGET of SIZE``. The version gets a ``mix`` table (group,
    before, after, target, share_before, share_after; entropies in its metadata);
    :meth:`plan` gives the same table for a table in a notebook, without picking rows.

    Args:
        by: the column whose values are the groups; a struct field as ``column.field``
            (``quality.bucket``). Null values form the group ``(none)``.
        strategy: ``uniform`` (equal shares), ``cap`` (shares ∝ size below ``cap``, as FLAN),
            ``temperature`` (shares ∝ size^(1/temperature), as T5) or ``weights`` (the given shares).
        total: rows to keep in all; null keeps as many as the mix allows without any group
            needing more rows than it has.
        cap: the most rows any group keeps (required by ``strategy: cap``, optional for the others).
        temperature: T of ``strategy: temperature``: 1 is proportional to size, larger is flatter.
        weights: ``{group: share}`` for ``strategy: weights``, normalized to sum to 1; groups not
            named get share 0 (dropped) unless the key ``"*"`` gives the share of each of them.
        min_per_group: every group keeps at least this many rows (all of them if it has fewer),
            decided before the others' shares.
        pick: which rows a group keeps: ``random`` (seeded hash of id) or ``diverse`` (greedy
            farthest-point on MinHash signatures, so near-copies go first).
        seed: seed of the hash that orders rows for ``random`` and breaks ties for ``diverse``.

    >>> Balance(strategy="temperature", temperature=2.0, total=10_000).to_config()["balance"]["total"]
    10000
    """

    name = "balance"

    def __init__(
        self,
        by: str = "task_type",
        strategy: Strategy = "uniform",
        total: int | None = None,
        cap: int | None = None,
        temperature: float = 2.0,
        weights: dict[str, float] | None = None,
        min_per_group: int = 0,
        pick: Pick = "random",
        seed: int = 0,
    ) -> None:
        if not by or any(not part for part in by.split(".")):
            raise ConfigError(f"by must name a column (or column.field), got {by!r}", "by")
        if pick not in ("random", "diverse"):
            raise ConfigError(f"pick must be random or diverse, got {pick!r}", "pick")
        _check(strategy, total, cap, temperature, weights, min_per_group)
        self.by = by
        self.strategy = strategy
        self.total = total
        self.cap = cap
        self.temperature = temperature
        self.weights = weights
        self.min_per_group = min_per_group
        self.pick = pick
        self.seed = seed

    # -- for notebooks ----------------------------------------------------------------------------
    def groups(self, batch: pa.Table) -> pa.Array:
        """Each row's group name (``(none)`` for null)."""
        values = _column_path(batch, self.by)
        try:
            names = pc.cast(values, pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise ConfigError(
                f"by: column '{self.by}' has type {values.type}, which cannot name groups; "
                "use a string, number or boolean column",
                "by",
            ) from None
        return pc.fill_null(names, NONE_GROUP)

    def plan_sizes(self, sizes: Mapping[str, int]) -> Plan:
        """The targets for these group sizes, with notes on what could not be honoured."""
        return plan_targets(
            sizes, self.strategy, self.total, self.cap, self.temperature, self.weights, self.min_per_group
        )

    def plan(self, rows: pa.Table) -> pa.Table:
        """The mix table this stage would produce on ``rows``, without picking any row (for
        notebooks: ``Balance(total=200).plan(rows).to_pandas()``); its ``after`` is the target."""
        counts = pc.value_counts(self.groups(rows)).to_pylist()
        return mix_table(self.plan_sizes({c["values"]: c["counts"] for c in counts}))

    # -- summarize → combine → apply --------------------------------------------------------------
    def summarize(self, batch: pa.Table) -> dict[str, Any]:
        encoded = pc.dictionary_encode(self.groups(batch))
        if isinstance(encoded, pa.ChunkedArray):
            encoded = encoded.combine_chunks()
        partial: dict[str, Any] = {
            "names": encoded.dictionary.to_pylist(),
            "code": encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32),
            "order": batch.column(schema.ORDER).to_numpy().astype(np.int64),
            "key": seeded_hash(batch.column("id"), self.seed),
        }
        if self.pick == "diverse":
            partial["sig"] = signatures(batch, self.seed)
        return partial

    def combine(self, partials: list[dict[str, Any]]) -> Combined:
        parts = [p for p in partials if p is not None and len(p["order"])]
        names = sorted({n for p in parts for n in p["names"]})
        index = {n: i for i, n in enumerate(names)}
        code = np.concatenate(
            [np.array([index[n] for n in p["names"]], np.int32)[p["code"]] for p in parts] or [np.zeros(0, np.int32)]
        )
        order = np.concatenate([p["order"] for p in parts] or [np.zeros(0, np.int64)])
        key = np.concatenate([p["key"] for p in parts] or [np.zeros(0, np.uint64)])
        sig = (
            np.concatenate([p["sig"] for p in parts] or [np.zeros((0, DIVERSE_PERM), np.uint8)])
            if self.pick == "diverse"
            else None
        )
        del parts, partials
        sizes = np.bincount(code, minlength=len(names))
        plan = self.plan_sizes(dict(zip(names, sizes.tolist())))
        for note in plan.notes:
            log.warning("balance: %s", note)
        want = np.array([plan.targets[n] for n in names], np.int64)
        keep = _select(code, key, order, want, sig)
        kept_orders, dropped_orders = np.sort(order[keep]), np.sort(order[~keep])
        listed_kept = len(kept_orders) < len(dropped_orders)
        state = _Decisions(kept_orders if listed_kept else dropped_orders, listed_kept, plan.targets, plan.sizes)
        after = dict(zip(names, np.bincount(code[keep], minlength=len(names)).tolist()))
        mix = mix_table(plan, after)
        meta = mix.schema.metadata or {}
        log.info(
            "balance by %s: %d → %d rows; entropy %.3f → %.3f bits (normalized %.3f → %.3f)",
            self.by,
            len(order),
            int(keep.sum()),
            float(meta[b"entropy_before"]),
            float(meta[b"entropy_after"]),
            float(meta[b"normalized_entropy_before"]),
            float(meta[b"normalized_entropy_after"]),
        )
        return Combined(state, {"mix": mix})

    def reasons(self, batch: pa.Table, state: _Decisions) -> Verdict:
        orders = batch.column(schema.ORDER).to_numpy()
        listed = np.zeros(len(orders), bool)
        if len(state.listed):
            pos = np.minimum(np.searchsorted(state.listed, orders), len(state.listed) - 1)
            listed = state.listed[pos] == orders
        drop = listed if not state.listed_kept else ~listed
        if not drop.any():
            none = pa.nulls(batch.num_rows, pa.string())
            return Verdict(none, none)
        names = np.array(self.groups(batch).to_pylist(), object)
        why = {
            g: f"balance: {g} capped at {state.targets.get(g, 0)} of {state.sizes.get(g, 0)}" for g in set(names[drop])
        }
        reasons = [why[g] if d else None for g, d in zip(names, drop)]
        kinds = [f"balance: {g}" if d else None for g, d in zip(names, drop)]
        return Verdict(pa.array(reasons, pa.string()), pa.array(kinds, pa.string()))


# -- helpers ----------------------------------------------------------------------------------


def seeded_hash(ids: pa.Array | pa.ChunkedArray, seed: int) -> np.ndarray:
    """A uint64 per id from ``blake2b(id, key=seed)``: a random order that depends only on the
    row and the seed."""
    key = str(seed).encode()
    blake = hashlib.blake2b
    data = b"".join(blake(i.encode("utf-8", "surrogatepass"), digest_size=8, key=key).digest() for i in ids.to_pylist())
    return np.frombuffer(data, dtype="<u8").astype(np.uint64)


def signatures(batch: pa.Table, seed: int) -> np.ndarray:
    """``(rows, 32)`` uint8: b-bit MinHash of the normalized conversation (char 5-grams)."""
    from winnow.stages.dedup import compared_text

    texts = compared_text(batch, "conversation", normalize=True, roles=False)
    sig = minhash.MinHasher(DIVERSE_PERM, seed + 1, "char", 5).signatures(texts.to_pylist())
    return (sig & 0xFF).astype(np.uint8)


def _select(
    code: np.ndarray, key: np.ndarray, order: np.ndarray, want: np.ndarray, sig: np.ndarray | None
) -> np.ndarray:
    """Whether each row is kept: per group, ``want`` rows by seeded hash or farthest-point."""
    keep = np.zeros(len(code), bool)
    if not len(code):
        return keep
    walk = np.lexsort((order, key, code))  # by group, then seeded hash (ties: ingest position)
    starts = np.searchsorted(code[walk], np.arange(len(want)))
    ends = np.r_[starts[1:], len(walk)]
    rank = np.arange(len(walk)) - np.repeat(starts, ends - starts)
    if sig is None:
        keep[walk] = rank < want[code[walk]]
        return keep
    for g, (start, end) in enumerate(zip(starts, ends)):
        rows = walk[start:end]
        if want[g] >= len(rows):
            keep[rows] = True
        elif want[g] > 0:
            keep[rows[_diverse(sig[rows], int(want[g]))]] = True
    return keep


def _diverse(sig: np.ndarray, want: int) -> np.ndarray:
    """Indexes of ``want`` rows of ``sig`` (rows in seeded-hash order), greedy farthest-point in
    random blocks of at most :data:`DIVERSE_BLOCK` rows."""
    n = len(sig)
    blocks = -(-n // DIVERSE_BLOCK)
    member = np.arange(n) % blocks  # rows are in random order, so blocks are random subsets
    sizes = np.bincount(member, minlength=blocks)
    shares = _largest_remainder([Fraction(int(s) * want, n) for s in sizes], want, list(range(blocks)))
    chosen = [
        rows[_k_center(sig[rows], k)]
        for rows, k in ((np.flatnonzero(member == b), k) for b, k in enumerate(shares))
        if k
    ]
    return np.concatenate(chosen)


def _k_center(sig: np.ndarray, want: int) -> np.ndarray:
    """Greedy farthest-point: start at row 0, then repeatedly the row whose highest similarity
    (equal signature values) to the rows chosen is lowest; ties to the earliest row.

    Similarities under :data:`DIVERSE_FLOOR` count as 0: without the floor, short rows (few
    shingles, so few shared with anything) look farthest and crowd out the long ones.
    """
    n, perm = sig.shape
    if want >= n:
        return np.arange(n)
    floor = math.ceil(DIVERSE_FLOOR * perm)
    closest = np.zeros(n, np.int16)  # most equal values shared with any chosen row
    chosen = np.empty(want, np.int64)
    pick = 0
    for step in range(want):
        chosen[step] = pick
        if step == want - 1:
            break
        similar = np.count_nonzero(sig == sig[pick], axis=1).astype(np.int16)
        similar[similar < floor] = 0
        np.maximum(closest, similar, out=closest)
        closest[pick] = perm + 1  # never again
        pick = int(np.argmin(closest))
    return chosen


def _column_path(batch: pa.Table, path: str) -> pa.Array:
    """``quality.bucket`` → the ``bucket`` field of the ``quality`` struct column."""
    head, *rest = path.split(".")
    if head not in batch.column_names:
        raise ConfigError(f"by: no column '{head}' in the rows; columns: {', '.join(batch.column_names)}", "by")
    values = batch.column(head).combine_chunks()
    for name in rest:
        try:
            values = pc.struct_field(values, name)
        except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError):
            raise ConfigError(f"by: '{path}' does not name a field of column '{head}'", "by") from None
    return values
