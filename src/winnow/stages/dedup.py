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
from winnow.stages.base import Combined, GlobalStage, Verdict, register

log = logging.getLogger(__name__)

Target = Literal["conversation", "instruction", "response"]
KeepRule = Literal["first", "longest_response", "most_turns"]
#: Removed before shingling: sentence punctuation and quotes, whose changes are edits of form, not
#: content. Symbols that change meaning (+ - * / = < > % brackets) stay: "5*3" is not "5/3".
SENTENCE_PUNCTUATION = r"[.,;:!?¿¡\"'“”‘’«»„…。，；：！？、]+"
#: Values in the response sketch of ``response_guard``: enough to tell a different answer
#: (J≈0.1) from the same one (J≥0.8), cheap next to the 128-value signature.
GUARD_PERM = 32
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
        raise ConfigError(
            f"keep.by: no column '{head}' in the rows; columns: {', '.join(batch.column_names)}"
        )
    values = batch.column(head).combine_chunks()
    for name in rest:
        try:
            values = pc.struct_field(values, name)
        except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError):
            raise ConfigError(f"keep.by: '{path}' does not name a field of column '{head}'") from None
    return values


def _survivor_order(hashes: tuple[np.ndarray, ...], rank: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Indexes sorted by group, then rank (high first), then id: the first of a group survives."""
    return np.lexsort((ids, -rank, *reversed(hashes)))


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
        order = table.column("order").to_numpy()
        ids = np.array(table.column("id").to_pylist())
        idx = _survivor_order((hi, lo), table.column("rank").to_numpy(), ids)
        hi, lo = hi[idx], lo[idx]
        new_group = np.ones(len(idx), bool)
        new_group[1:] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])
        group_start = np.maximum.accumulate(np.where(new_group, np.arange(len(idx)), 0))
        dup = ~new_group
        dup_orders = order[idx][dup]
        survivors = ids[idx][group_start][dup]
        sort = np.argsort(dup_orders, kind="stable")
        return _Duplicates(dup_orders[sort], survivors[sort])

    def reasons(self, batch: pa.Table, state: _Duplicates) -> Verdict:
        hit, pos = _lookup(state, batch.column(schema.ORDER).to_numpy())
        reasons = [f"exact duplicate of {state.survivors[p]}" if h else None for p, h in zip(pos, hit)]
        kinds = ["exact duplicate" if h else None for h in hit]
        return Verdict(pa.array(reasons, pa.string()), pa.array(kinds, pa.string()))


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
        weights: [false-positive, false-negative] weights for choosing bands and rows.
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
        weights = tuple(self.weights) if self.weights else (0.5, 0.5)
        return minhash.lsh_bands(self.threshold, self.num_perm, weights)  # type: ignore[arg-type]

    @property
    def guarded(self) -> bool:
        return self.on == "conversation" and self.response_guard is not None

    def signatures(
        self, batch: pa.Table, on: str | None = None, hasher: minhash.MinHasher | None = None
    ) -> np.ndarray:
        texts = compared_text(batch, on or self.on, self.normalize, roles=False)
        if self.strip_punctuation:
            texts = pc.utf8_trim_whitespace(
                pc.replace_substring_regex(
                    pc.replace_substring_regex(texts, SENTENCE_PUNCTUATION, " "), r"\s+", " "
                )
            )
        return (hasher or self.hasher).signatures(texts.to_pylist())

    def response_sketches(self, batch: pa.Table) -> np.ndarray:
        """A 32-value signature of the responses alone, for ``response_guard``."""
        small = minhash.MinHasher(GUARD_PERM, self.seed, self.shingle, self.ngram)
        return self.signatures(batch, on="response", hasher=small)

    def summarize(self, batch: pa.Table) -> dict[str, np.ndarray]:
        partial = {
            "order": batch.column(schema.ORDER).to_numpy(),
            "id": np.array(batch.column("id").to_pylist(), dtype=object),
            "rank": keep_rank(batch, self.keep),
            "sig": self.signatures(batch),
        }
        if self.guarded:
            partial["guard"] = self.response_sketches(batch)
        return partial

    def combine(self, partials: list[dict[str, np.ndarray]]) -> Combined:
        parts = [p for p in partials if p is not None and len(p["order"])]
        order = np.concatenate([p["order"] for p in parts]) if parts else np.zeros(0, np.int64)
        ids = np.concatenate([p["id"] for p in parts]) if parts else np.zeros(0, object)
        rank = np.concatenate([p["rank"] for p in parts]) if parts else np.zeros(0)
        sig = np.concatenate([p["sig"] for p in parts]) if parts else np.zeros((0, self.num_perm), np.uint32)
        guard = np.concatenate([p["guard"] for p in parts]) if parts and self.guarded else None
        del parts, partials
        current = len(order)
        ref_ids, ref_sig, ref_guard = self._reference()
        if len(ref_ids):
            ids = np.concatenate([ids, ref_ids])
            sig = np.concatenate([sig, ref_sig])
            rank = np.concatenate([rank, np.full(len(ref_ids), np.inf)])
            guard = (
                np.concatenate([guard, ref_guard]) if guard is not None and ref_guard is not None else None
            )
        is_ref = np.arange(len(ids)) >= current
        clusters, removed_by, similar = self._cluster(sig, guard, rank, ids.astype(str), is_ref)
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
                "duplicate_of": pa.array(
                    [ids[r] if r >= 0 else None for r in removed_by[members]], pa.string()
                ),
                "similarity": pa.array(
                    np.where(removed_by[members] >= 0, similar[members], np.nan),
                    pa.float64(),
                    from_pandas=True,
                ),
                "reference": pa.array(is_ref[members].tolist(), pa.bool_()),
            }
        ).sort_by([("cluster", "ascending"), ("kept", "descending"), ("id", "ascending")])
        survivors = np.flatnonzero((removed_by < 0) & ~is_ref)
        columns = {
            "id": pa.array(ids[survivors].tolist(), pa.string()),
            "signature": pa.FixedSizeListArray.from_arrays(
                pa.array(sig[survivors].ravel(), pa.uint32()), self.num_perm
            ),
        }
        if guard is not None:
            columns["guard"] = pa.FixedSizeListArray.from_arrays(
                pa.array(guard[survivors].ravel(), pa.uint32()), GUARD_PERM
            )
        index = pa.table(columns).replace_schema_metadata({"winnow.minhash": str(self._index_params())})
        return Combined(state, {"clusters": clusters_table, "index": index})

    def _cluster(
        self, sig: np.ndarray, guard: np.ndarray | None, rank: np.ndarray, ids: np.ndarray, is_ref: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row: its cluster (index of the cluster's first row, -1 if alone), the row it
        duplicates (-1 if kept) and the estimated similarity to that row."""
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        n = len(sig)
        clusters = np.full(n, -1, np.int64)
        removed_by = np.full(n, -1, np.int64)
        similar = np.zeros(n, np.float64)
        if n < 2:
            return clusters, removed_by, similar
        valid = ~(sig == minhash.MASK32).all(axis=1)
        bands, rows = self.band_layout()
        i, j = minhash.candidate_pairs(minhash.band_keys(sig, bands, rows), valid)
        keep_pair = ~(is_ref[i] & is_ref[j])
        i, j = i[keep_pair], j[keep_pair]
        ok = minhash.similarity(sig, i, j) >= self.threshold
        if guard is not None:
            ok &= minhash.similarity(guard, i, j) >= self.response_guard
        i, j = i[ok], j[ok]
        graph = coo_matrix((np.ones(len(i), np.int8), (i, j)), shape=(n, n))
        _, labels = connected_components(graph, directed=False)
        sizes = np.bincount(labels)
        members = np.flatnonzero(sizes[labels] > 1)
        if not len(members):
            return clusters, removed_by, similar
        # Walk order: component, reference rows first, then keep rank (high first), then id.
        walk = members[np.lexsort((ids[members], -rank[members], ~is_ref[members], labels[members]))]
        starts = np.flatnonzero(np.r_[True, labels[walk][1:] != labels[walk][:-1]])
        ends = np.r_[starts[1:], len(walk)]
        for start, end in zip(starts, ends):
            component = walk[start:end]
            clusters[component] = component[0]
            if len(component) > LARGE_CLUSTER:
                log.warning(
                    "minhash_dedup: a cluster of %d rows (for example %s): many copies of one text, "
                    "or a threshold too low for this data?",
                    len(component),
                    ids[component[0]],
                )
            kept = [component[0]]
            for row in component[1:]:
                scores = (sig[kept] == sig[row]).mean(axis=1)
                if guard is not None:  # a kept row with a clearly different answer is no match
                    scores[(guard[kept] == guard[row]).mean(axis=1) < self.response_guard] = 0
                best = int(np.argmax(scores))
                if scores[best] >= self.threshold and not is_ref[row]:
                    removed_by[row] = kept[best]
                    similar[row] = scores[best]
                else:
                    kept.append(row)
        return clusters, removed_by, similar

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
                    sig = (
                        table.column("signature")
                        .combine_chunks()
                        .flatten()
                        .to_numpy()
                        .reshape(-1, self.num_perm)
                    )
                    guard = None
                    if self.guarded:
                        guard = (
                            table.column("guard")
                            .combine_chunks()
                            .flatten()
                            .to_numpy()
                            .reshape(-1, GUARD_PERM)
                        )
                    return ids, sig, guard
            rows = corpus.load(version, format="arrow")
        else:
            from winnow.formats import InputSpec, open_input

            rows = open_input(InputSpec(path=str(self.against))).to_table()
        guard = self.response_sketches(rows) if self.guarded else None
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
