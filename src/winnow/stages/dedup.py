"""Duplicate removal: exact (normalized text hashes) and near-duplicates (MinHash LSH).

Both stages share the comparison text (``on:`` and the normalization) and the keep rules, so
``exact_dedup`` then ``minhash_dedup`` agree on which copy survives.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from winnow import minhash, schema, text
from winnow.errors import ConfigError
from winnow.stages.base import Combined, GlobalStage, Rescan, Verdict, register

log = logging.getLogger(__name__)

Target = Literal["conversation", "instruction", "response"]
KeepRule = Literal["first", "longest_response", "most_turns"]
#: Removed before shingling: sentence punctuation and quotes, whose changes are edits of form, not
#: content. Symbols that change meaning (+ - * / = < > % brackets) stay: "5*3" is not "5/3".
SENTENCE_PUNCTUATION = r"[.,;:!?¿¡\"'“”‘’«»„…。，；：！？、]+"
#: Values in the response sketch of ``response_guard``: enough to tell a different answer
#: (J≈0.1) from the same one (J≥0.8), cheap next to the 128-value signature.
GUARD_PERM = 32
#: LSH weights (false positive, false negative): candidates are verified, so recall is what
#: the banding must protect (measured in bench/dedup.py: 9×13 bands found 40% of pairs at J=0.8).
DEFAULT_WEIGHTS = (0.02, 0.98)
#: A pair whose estimated Jaccard is this close to the threshold is checked on the exact shingle
#: sets (``verify: exact``): 0.1 is ~3 standard deviations of a 128-value estimate near 0.8.
VERIFY_MARGIN = 0.1
#: A component this large is reported: usually many copies of a template, or a low threshold.
LARGE_CLUSTER = 1000


def compared_text(batch: pa.Table, on: str, normalize: bool, roles: bool = True) -> pa.Array:
    """The text two rows are compared on, after the shared normalization.

    With ``roles`` a conversation's turns carry their role, so moving text between turns is a
    difference (exact matching); without, turns are joined by newlines (near matching).
    """
    messages = batch.column("messages")
    if normalize:  # per turn, so that a trailing space in one turn is not a difference
        messages = text.map_contents(messages, lambda _role, content: text.normalize(content))
    if on == "conversation" and roles:
        return text.conversation_text(messages, text.TARGETS[on])
    return text.role_text(messages, text.TARGETS[on])


def check_keep(keep: Any) -> None:
    if isinstance(keep, Mapping) and (
        set(keep) - {"by", "order"} or "by" not in keep or keep.get("order", "desc") not in ("asc", "desc")
    ):
        raise ConfigError("keep as a map is {by: COLUMN, order: desc|asc}, e.g. {by: quality.score}", "keep")


def keep_rank(batch: pa.Table, keep: Any) -> np.ndarray:
    """Per row, a number where higher survives (``first``: earlier in source order survives).

    Ties are broken by ``id`` by the callers — never by the order rows arrive in.
    """
    if isinstance(keep, Mapping):
        values = _column_path(batch, keep["by"])
        numbers = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
        numbers = np.where(np.isnan(numbers), -np.inf, numbers)
        return numbers if keep.get("order", "desc") == "desc" else -numbers
    if keep == "longest_response":
        response = text.role_text(batch.column("messages"), text.TARGETS["response"])
        return pc.utf8_length(response).to_numpy(zero_copy_only=False).astype(np.float64)
    if keep == "most_turns":
        return pc.list_value_length(batch.column("messages")).fill_null(0).to_numpy().astype(np.float64)
    return -batch.column(schema.ORDER).to_numpy().astype(np.float64)


def _column_path(batch: pa.Table, path: str) -> pa.Array:
    """``quality.score`` → the ``score`` field of the ``quality`` struct column."""
    head, *rest = path.split(".")
    if head not in batch.column_names:
        raise ConfigError(f"keep.by: no column '{head}' in the rows; columns: {', '.join(batch.column_names)}")
    values = batch.column(head).combine_chunks()
    for name in rest:
        try:
            values = pc.struct_field(values, name)
        except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError):
            raise ConfigError(f"keep.by: '{path}' does not name a field of column '{head}'") from None
    return values


@dataclass
class _Duplicates:
    """Rows to drop, by ingest position (sorted), with the id each duplicates."""

    orders: np.ndarray
    survivors: np.ndarray
    similarity: np.ndarray | None = None


def _lookup(state: _Duplicates, orders: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each order: whether it is in ``state.orders`` and its position there."""
    if not len(state.orders):
        return np.zeros(len(orders), bool), np.zeros(len(orders), np.int64)
    pos = np.minimum(np.searchsorted(state.orders, orders), len(state.orders) - 1)
    return state.orders[pos] == orders, pos


@register
class ExactDedup(GlobalStage):
    """Remove rows whose normalized text equals that of a row that is kept.

    Rows whose compared text is empty (say, ``on: response`` with no answer) are never called
    duplicates: emptiness is a length or quality problem, not duplication.

    Args:
        on: what is compared: ``conversation`` (every turn with its role), ``instruction`` (user
            turns) or ``response`` (assistant turns).
        keep: which copy survives: ``first`` (source order), ``longest_response``,
            ``most_turns``, or ``{by: COLUMN, order: desc|asc}``; ties go to the smaller id.
        normalize: compare after Unicode NFKC, lower-casing and collapsing whitespace.

    >>> ExactDedup(on="instruction", keep="longest_response")
    ExactDedup(on='instruction', keep='longest_response', normalize=True)
    """

    name = "exact_dedup"

    def __init__(
        self, on: Target = "conversation", keep: KeepRule | dict[str, str] = "first", normalize: bool = True
    ) -> None:
        check_keep(keep)
        self.on = on
        self.keep = keep
        self.normalize = normalize

    def summarize(self, batch: pa.Table) -> pa.Table:
        key = compared_text(batch, self.on, self.normalize)
        nonempty = pc.greater(pc.utf8_length(key), 0)
        partial = pa.table(
            {
                "hash": text.digest(key),
                "order": batch.column(schema.ORDER),
                "rank": pa.array(keep_rank(batch, self.keep)),
                "id": batch.column("id"),
            }
        )
        return partial.filter(nonempty)

    def combine(self, partials: list[pa.Table]) -> _Duplicates:
        table = pa.concat_tables(partials) if partials else None
        if table is None or table.num_rows == 0:
            return _Duplicates(np.zeros(0, np.int64), np.zeros(0, object))
        words = np.frombuffer(table.column("hash").combine_chunks().buffers()[1], dtype=np.uint64)
        hi, lo = words[0::2], words[1::2]
        # by group, then rank (high first), then id: the first row of a group survives. Arrow
        # sorts the ids where they are; numpy would need them as Python strings first (~150 B a row)
        keys = pa.table({"hi": hi, "lo": lo, "rank": pc.negate(table.column("rank")), "id": table.column("id")})
        idx = pc.sort_indices(keys, sort_keys=[(name, "ascending") for name in keys.column_names]).to_numpy()
        del keys
        hi, lo = hi[idx], lo[idx]
        new_group = np.ones(len(idx), bool)
        new_group[1:] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])
        group_start = np.maximum.accumulate(np.where(new_group, np.arange(len(idx)), 0))
        dup = ~new_group
        dup_orders = table.column("order").to_numpy()[idx[dup]]
        survivors = table.column("id").take(pa.array(idx[group_start[dup]])).to_numpy(zero_copy_only=False)
        sort = np.argsort(dup_orders, kind="stable")
        return _Duplicates(dup_orders[sort], survivors[sort])

    def reasons(self, batch: pa.Table, state: _Duplicates) -> Verdict:
        hit, pos = _lookup(state, batch.column(schema.ORDER).to_numpy())
        reasons = [f"exact duplicate of {state.survivors[p]}" if h else None for p, h in zip(pos, hit)]
        kinds = ["exact duplicate" if h else None for h in hit]
        return Verdict(pa.array(reasons, pa.string()), pa.array(kinds, pa.string()))


@dataclass
class _Carry:
    """What ``combine`` keeps in the main process while the workers take a second look."""

    order: np.ndarray
    ids: np.ndarray
    rank: np.ndarray
    sig: minhash.RowStack
    guard: minhash.RowStack | None
    is_ref: np.ndarray
    i: np.ndarray
    j: np.ndarray
    est: np.ndarray


@dataclass
class _NearState:
    removed: _Duplicates
    #: kept rows that belong to a cluster: their orders (sorted) and cluster ids
    clustered: _Duplicates
    against: str | None


@register
class MinHashDedup(GlobalStage):
    """Remove near-duplicates: MinHash signatures, LSH candidates, verified clusters.

    Candidate pairs from LSH are verified against the signatures' estimated Jaccard before they
    join a cluster, and inside a cluster rows are walked in keep order: a row is removed only if
    it is verified similar to a row already kept, so A≈B, B≈C with A far from C keeps A and C.
    Each removed row names the row it duplicates; the version gets a ``clusters`` table (every
    clustered row, whether kept, what it duplicates and how similar) and an ``index`` table of
    the kept rows' signatures, which ``against:`` reads in a later run.

    Args:
        on: what is compared: ``conversation``, ``instruction`` (user turns) or ``response``.
        shingle: ``char`` n-grams (robust to typos in short instructions) or ``word`` n-grams.
        ngram: shingle length in characters or words.
        threshold: estimated Jaccard at or above which two rows are duplicates.
        num_perm: permutations per signature (more: slower, more precise estimates).
        seed: seed of the permutations (as ``datasketch.MinHash(seed=...)``).
        bands: LSH bands; with ``rows``, overrides the choice datasketch makes for ``threshold``.
        rows: signature values per band.
        weights: [false-positive, false-negative] weights for choosing bands and rows; the
            default [0.02, 0.98] favours recall (17 bands × 7 rows at 0.8), because every
            candidate is verified afterwards.
        verify: ``exact`` checks pairs whose estimate is within 0.1 of the threshold on their
            exact shingle sets (a second read of those rows only); ``signature`` trusts the
            128-value estimate.
        keep: which copy survives: ``longest_response``, ``first`` (source order),
            ``most_turns`` or ``{by: COLUMN, order: desc|asc}``; ties go to the smaller id.
        normalize: shingle the text after Unicode NFKC, lower-casing and whitespace collapsing.
        strip_punctuation: drop sentence punctuation and quotes before shingling (symbols such as
            ``+ - * / =`` and brackets stay).
        response_guard: with ``on: conversation``, rows whose responses alone are less similar
            than this (estimated on a small 32-value sketch) are never duplicates: rows sharing a
            long template prompt or system prompt but answering differently stay. Null: off.
        against: a corpus (``corpus/NAME@vN``) or any input whose rows count as already kept:
            rows near-duplicating them are removed (incremental curation).

    >>> MinHashDedup(threshold=0.85, on="instruction").to_config()["minhash_dedup"]["threshold"]
    0.85
    """

    name = "minhash_dedup"

    def __init__(
        self,
        on: Target = "conversation",
        shingle: Literal["char", "word"] = "char",
        ngram: int = 5,
        threshold: float = 0.8,
        num_perm: int = 128,
        seed: int = 1,
        bands: int | None = None,
        rows: int | None = None,
        weights: list[float] | None = None,
        verify: Literal["exact", "signature"] = "exact",
        keep: KeepRule | dict[str, str] = "longest_response",
        normalize: bool = True,
        strip_punctuation: bool = True,
        response_guard: float | None = 0.5,
        against: str | None = None,
    ) -> None:
        check_keep(keep)
        if not 0 < threshold <= 1:
            raise ConfigError(f"threshold must be in (0, 1], got {threshold}", "threshold")
        if ngram < 1 or num_perm < 1:
            raise ConfigError("ngram and num_perm must be at least 1", "ngram" if ngram < 1 else "num_perm")
        if (bands is None) != (rows is None) or (bands and rows and bands * rows > num_perm):
            raise ConfigError("give both bands and rows, with bands × rows ≤ num_perm", "bands")
        if weights is not None and (len(weights) != 2 or any(w < 0 for w in weights)):
            raise ConfigError("weights is [false_positive_weight, false_negative_weight]", "weights")
        self.on = on
        self.shingle = shingle
        self.ngram = ngram
        self.threshold = threshold
        self.num_perm = num_perm
        self.seed = seed
        self.bands = bands
        self.rows = rows
        self.weights = weights
        self.verify = verify
        self.keep = keep
        self.normalize = normalize
        self.strip_punctuation = strip_punctuation
        self.response_guard = response_guard
        self.against = against

    @property
    def hasher(self) -> minhash.MinHasher:
        return minhash.MinHasher(self.num_perm, self.seed, self.shingle, self.ngram)

    def band_layout(self) -> tuple[int, int]:
        if self.bands is not None and self.rows is not None:
            return self.bands, self.rows
        weights = tuple(self.weights) if self.weights else DEFAULT_WEIGHTS
        return minhash.lsh_bands(self.threshold, self.num_perm, weights)  # type: ignore[arg-type]

    @property
    def guarded(self) -> bool:
        return self.on == "conversation" and self.response_guard is not None

    def _prepared(self, batch: pa.Table) -> pa.Array:
        """The messages as they are shingled: each turn normalized and, if asked, without
        sentence punctuation — computed once per batch for every text taken from it."""

        def prepare(_role: pa.Array, content: pa.Array) -> pa.Array:
            if self.normalize:
                content = text.normalize(content)
            if self.strip_punctuation:
                content = pc.replace_substring_regex(content, SENTENCE_PUNCTUATION, " ")
                content = pc.utf8_trim_whitespace(pc.replace_substring_regex(content, r"\s+", " "))
            return content

        return text.map_contents(batch.column("messages"), prepare)

    def _texts(self, messages: pa.Array, on: str | None = None) -> list[str]:
        return text.role_text(messages, text.TARGETS[on or self.on], sep=" ").to_pylist()  # type: ignore[no-any-return]

    def signatures(self, batch: pa.Table) -> np.ndarray:
        """The 128-value signature of each row's compared text."""
        return self.hasher.signatures(self._texts(self._prepared(batch)))

    def response_sketches(self, messages: pa.Array) -> np.ndarray:
        """A 32-value signature of the responses alone, for ``response_guard``."""
        small = minhash.MinHasher(GUARD_PERM, self.seed, self.shingle, self.ngram)
        return small.signatures(self._texts(messages, "response"))

    def summarize(self, batch: pa.Table) -> dict[str, np.ndarray]:
        messages = self._prepared(batch)
        partial = {
            "order": batch.column(schema.ORDER).to_numpy(),
            "id": np.array(batch.column("id").to_pylist(), dtype=object),
            "rank": keep_rank(batch, self.keep),
            "sig": self.hasher.signatures(self._texts(messages)),
        }
        if self.guarded:
            partial["guard"] = self.response_sketches(messages)
        return partial

    def combine(self, partials: list[dict[str, np.ndarray]]) -> Combined | Rescan:
        """Candidates from LSH, each pair's estimated Jaccard, and — with ``verify: exact`` —
        a second look at the rows of the pairs whose estimate is too close to call."""
        parts = [p for p in partials if p is not None and len(p["order"])]
        order = np.concatenate([p["order"] for p in parts]) if parts else np.zeros(0, np.int64)
        ids = np.concatenate([p["id"] for p in parts]) if parts else np.zeros(0, object)
        rank = np.concatenate([p["rank"] for p in parts]) if parts else np.zeros(0)
        sigs = [p["sig"] for p in parts]
        guards = [p["guard"] for p in parts] if self.guarded else None
        del parts, partials
        current = len(order)
        ref_ids, ref_sig, ref_guard = self._reference()
        if len(ref_ids):
            ids = np.concatenate([ids, ref_ids])
            sigs.append(ref_sig)
            rank = np.concatenate([rank, np.full(len(ref_ids), np.inf)])
            guards = [*guards, ref_guard] if guards is not None and ref_guard is not None else None
        sig = minhash.RowStack(sigs, self.num_perm)
        guard = minhash.RowStack(guards, GUARD_PERM) if guards is not None else None
        is_ref = np.arange(len(ids)) >= current
        walk_rank = np.empty(len(ids), np.int64)  # the keep order: reference rows, rank, then id
        keys = pa.table({"ref": ~is_ref, "rank": -rank, "id": pa.array(ids, pa.string())})  # Arrow: no str copies
        walk_rank[pc.sort_indices(keys, [(name, "ascending") for name in keys.column_names]).to_numpy()] = np.arange(
            len(ids)
        )
        del keys
        i, j, est = self._candidates(sig, guard, is_ref, walk_rank)
        carry = _Carry(order, ids, rank, sig, guard, is_ref, i, j, est)
        unsure = np.abs(est - self.threshold) < VERIFY_MARGIN
        unsure &= ~is_ref[i] & ~is_ref[j]  # reference rows have no text here: their estimate stands
        if self.verify == "exact" and unsure.any():
            rows = np.unique(np.concatenate([i[unsure], j[unsure]]))
            return Rescan(request=np.sort(order[rows]), carry=carry)
        return self.finish([], carry)

    def rescan(self, batch: pa.Table, request: np.ndarray) -> dict[str, np.ndarray]:
        """The exact shingle sets of the rows in ``request`` (their ingest positions)."""
        orders = batch.column(schema.ORDER).to_numpy()
        pos = np.minimum(np.searchsorted(request, orders), max(len(request) - 1, 0))
        wanted = np.flatnonzero(request[pos] == orders) if len(request) else np.zeros(0, np.int64)
        if not len(wanted):
            return {"order": np.zeros(0, np.int64), "offsets": np.zeros(1, np.int64), "hashes": np.zeros(0, np.uint32)}
        rows, hashes = self.hasher.shingles(self._texts(self._prepared(batch.take(pa.array(wanted)))))
        keys = np.sort((rows.astype(np.uint64) << np.uint64(32)) | hashes.astype(np.uint64))
        keys = keys[np.r_[True, keys[1:] != keys[:-1]]]  # sets: sorted, distinct (a sort beats np.unique here)
        rows, hashes = (keys >> np.uint64(32)).astype(np.int64), (keys & np.uint64(minhash.MASK32)).astype(np.uint32)
        offsets = np.searchsorted(rows, np.arange(len(wanted) + 1))
        return {"order": orders[wanted], "offsets": offsets, "hashes": hashes}

    def finish(self, partials: list[dict[str, np.ndarray]], carry: _Carry) -> Combined:
        """Exact Jaccard for the pairs too close to call, then clusters and the keep-order walk."""
        c = carry
        sim = c.est.copy()
        sets: dict[int, np.ndarray] = {}
        for part in partials:
            for n, o in enumerate(part["order"]):
                sets[int(o)] = part["hashes"][part["offsets"][n] : part["offsets"][n + 1]]
        current = len(c.order)
        for pair in np.flatnonzero(np.abs(c.est - self.threshold) < VERIFY_MARGIN).tolist() if sets else []:
            if c.i[pair] >= current or c.j[pair] >= current:
                continue  # a reference row: its estimate stands
            a, b = sets.get(int(c.order[c.i[pair]])), sets.get(int(c.order[c.j[pair]]))
            if a is not None and b is not None:
                both = len(np.intersect1d(a, b, assume_unique=True))
                sim[pair] = both / max(len(a) + len(b) - both, 1)
        ok = sim >= self.threshold
        clusters, removed_by, similar = self._walk(c, c.i[ok], c.j[ok], sim[ok])
        return self._result(c, clusters, removed_by, similar)

    def _candidates(
        self, sig: minhash.RowStack, guard: minhash.RowStack | None, is_ref: np.ndarray, walk_rank: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """LSH candidate pairs (i < j) that pass the response guard, with estimated Jaccard."""
        if len(sig) < 2:
            empty = np.zeros(0, np.int64)
            return empty, empty, np.zeros(0)
        valid = sig.map(lambda s: ~(s == minhash.MASK32).all(axis=1))
        bands, rows = self.band_layout()
        keys = sig.map(lambda s: minhash.band_keys(s, bands, rows))
        i, j = minhash.candidate_pairs(keys, valid, priority=walk_rank)
        del keys
        keep = ~(is_ref[i] & is_ref[j])
        if guard is not None:
            keep &= minhash.similarity(guard, i, j) >= self.response_guard
        i, j = i[keep], j[keep]
        est = minhash.similarity(sig, i, j)
        plausible = est >= self.threshold - VERIFY_MARGIN  # far below: not worth a second look
        return i[plausible], j[plausible], est[plausible]

    def _walk(
        self, c: _Carry, i: np.ndarray, j: np.ndarray, sim: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row: its cluster (the index of the cluster's first row, -1 when alone), the row it
        duplicates (-1 when kept) and the similarity to that row.

        Clusters are the connected components of the verified pairs; inside one, rows are walked
        in keep order (reference rows first, then keep rank, then id) and a row is removed only
        if it is verified similar to a row already kept — so a chain A≈B≈C with A far from C
        keeps A and C.
        """
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        n = len(c.ids)
        clusters = np.full(n, -1, np.int64)
        removed_by = np.full(n, -1, np.int64)
        similar = np.zeros(n, np.float64)
        if not len(i):
            return clusters, removed_by, similar
        graph = coo_matrix((np.ones(len(i), np.int8), (i, j)), shape=(n, n))
        _, labels = connected_components(graph, directed=False)
        sizes = np.bincount(labels)
        members = np.flatnonzero(sizes[labels] > 1)
        ids = c.ids.astype(str)
        walk = members[np.lexsort((ids[members], -c.rank[members], ~c.is_ref[members], labels[members]))]
        position = np.empty(n, np.int64)
        position[walk] = np.arange(len(walk))
        # Each verified pair, seen from its later row in the walk: (later, earlier, similarity).
        later = np.where(position[i] > position[j], i, j)
        earlier = np.where(position[i] > position[j], j, i)
        by_later = np.argsort(position[later], kind="stable")
        later, earlier, sim = later[by_later], earlier[by_later], sim[by_later]
        bounds = np.searchsorted(position[later], np.arange(len(walk) + 1))
        starts = np.flatnonzero(np.r_[True, labels[walk][1:] != labels[walk][:-1]])
        kept = np.zeros(n, bool)
        for start, end in zip(starts, np.r_[starts[1:], len(walk)]):
            component = walk[start:end]
            clusters[component] = component[0]
            if len(component) > LARGE_CLUSTER:
                log.warning(
                    "minhash_dedup: a cluster of %d rows (for example %s): many copies of one text, "
                    "or a threshold too low for this data?",
                    len(component),
                    ids[component[0]],
                )
            for p in range(int(start), int(end)):
                row = walk[p]
                partners = earlier[bounds[p] : bounds[p + 1]]
                scores = sim[bounds[p] : bounds[p + 1]]
                mask = kept[partners]
                if not mask.any():  # no verified partner kept: a sure estimate against the kept rows
                    partners = walk[start:p][kept[walk[start:p]]]
                    scores = (c.sig[partners] == c.sig[row]).mean(axis=1) if len(partners) else scores[:0]
                    mask = scores >= self.threshold + VERIFY_MARGIN
                if mask.any() and not c.is_ref[row]:
                    best = int(np.argmax(np.where(mask, scores, -1.0)))
                    removed_by[row] = partners[best]
                    similar[row] = scores[best]
                else:
                    kept[row] = True
        return clusters, removed_by, similar

    def _result(self, c: _Carry, clusters: np.ndarray, removed_by: np.ndarray, similar: np.ndarray) -> Combined:
        ids, is_ref, order = c.ids, c.is_ref, c.order
        removed = np.flatnonzero((removed_by >= 0) & ~is_ref)
        kept_clustered = np.flatnonzero((clusters >= 0) & (removed_by < 0) & ~is_ref)
        cluster_ids = np.where(clusters >= 0, ids[np.maximum(clusters, 0)], None)
        state = _NearState(
            removed=_sorted(order[removed], ids[removed_by[removed]], similar[removed]),
            clustered=_sorted(order[kept_clustered], cluster_ids[kept_clustered]),
            against=self.against,
        )
        members = np.flatnonzero(clusters >= 0)
        clusters_table = pa.table(
            {
                "cluster": pa.array(cluster_ids[members].tolist(), pa.string()),
                "id": pa.array(ids[members].tolist(), pa.string()),
                "kept": pa.array((removed_by[members] < 0).tolist(), pa.bool_()),
                "duplicate_of": pa.array([ids[r] if r >= 0 else None for r in removed_by[members]], pa.string()),
                "similarity": pa.array(
                    np.where(removed_by[members] >= 0, similar[members], np.nan), pa.float64(), from_pandas=True
                ),
                "reference": pa.array(is_ref[members].tolist(), pa.bool_()),
            }
        ).sort_by([("cluster", "ascending"), ("kept", "descending"), ("id", "ascending")])
        survivors = np.flatnonzero((removed_by < 0) & ~is_ref)
        columns = {
            "id": pa.array(ids[survivors].tolist(), pa.string()),
            "signature": pa.FixedSizeListArray.from_arrays(
                pa.array(c.sig[survivors].ravel(), pa.uint32()), self.num_perm
            ),
        }
        if c.guard is not None:
            columns["guard"] = pa.FixedSizeListArray.from_arrays(
                pa.array(c.guard[survivors].ravel(), pa.uint32()), GUARD_PERM
            )
        index = pa.table(columns).replace_schema_metadata({"winnow.minhash": str(self._index_params())})
        return Combined(state, {"clusters": clusters_table, "index": index})

    def annotate(self, batch: pa.Table, state: _NearState) -> pa.Table:
        hit, pos = _lookup(state.clustered, batch.column(schema.ORDER).to_numpy())
        cluster = [state.clustered.survivors[p] if h else None for p, h in zip(pos, hit)]
        column = pa.array(cluster, pa.string())
        if "dup_cluster" in batch.column_names:
            return batch.set_column(batch.column_names.index("dup_cluster"), "dup_cluster", column)
        return batch.append_column("dup_cluster", column)

    def reasons(self, batch: pa.Table, state: _NearState) -> Verdict:
        hit, pos = _lookup(state.removed, batch.column(schema.ORDER).to_numpy())
        where = f" in {state.against}" if state.against else ""
        sims = state.removed.similarity if state.removed.similarity is not None else np.zeros(0)
        reasons = [
            f"near-duplicate of {state.removed.survivors[p]}{where} (J≈{sims[p]:.2f})" if h else None
            for p, h in zip(pos, hit)
        ]
        kinds = ["near-duplicate" if h else None for h in hit]
        return Verdict(pa.array(reasons, pa.string()), pa.array(kinds, pa.string()))

    # -- against: rows already kept elsewhere ---------------------------------------------------
    def _index_params(self) -> dict[str, Any]:
        keys = (
            "on",
            "shingle",
            "ngram",
            "num_perm",
            "seed",
            "normalize",
            "strip_punctuation",
            "response_guard",
        )
        return {k: getattr(self, k) for k in keys}

    def _reference(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Ids, signatures and response sketches of the ``against`` rows (from a saved index
        when it fits)."""
        if not self.against:
            return np.zeros(0, object), np.zeros((0, self.num_perm), np.uint32), None
        from winnow.corpus import Corpus, parse_ref

        path, version = parse_ref(self.against)
        corpus = Corpus(path)
        if corpus.versions():
            folder = corpus.resolve(version)
            for file in sorted((folder / "index").glob(f"*-{self.name}-*.parquet")):
                import pyarrow.parquet as pq

                table = pq.read_table(file)
                meta = (table.schema.metadata or {}).get(b"winnow.minhash", b"").decode()
                if meta == str(self._index_params()):
                    ids = np.array(table.column("id").to_pylist(), object)
                    sig = table.column("signature").combine_chunks().flatten().to_numpy().reshape(-1, self.num_perm)
                    guard = None
                    if self.guarded:
                        guard = table.column("guard").combine_chunks().flatten().to_numpy().reshape(-1, GUARD_PERM)
                    return ids, sig, guard
            rows = corpus.load(version, format="arrow")
        else:
            from winnow.formats import InputSpec, open_input

            rows = open_input(InputSpec(path=str(self.against))).to_table()
        guard = self.response_sketches(self._prepared(rows)) if self.guarded else None
        return np.array(rows.column("id").to_pylist(), object), self.signatures(rows), guard

    def external_fingerprint(self) -> str | None:
        if not self.against:
            return None
        from winnow.corpus import Corpus, parse_ref

        path, version = parse_ref(self.against)
        corpus = Corpus(path)
        if corpus.versions():
            return str(corpus.manifest(version)["fingerprint"])
        from winnow.formats import InputSpec, open_input

        return open_input(InputSpec(path=str(Path(self.against)))).fingerprint()


def _sorted(orders: np.ndarray, values: np.ndarray, similarity: np.ndarray | None = None) -> _Duplicates:
    sort = np.argsort(orders, kind="stable")
    return _Duplicates(orders[sort], values[sort], similarity[sort] if similarity is not None else None)
