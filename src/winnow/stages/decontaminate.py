"""Benchmark decontamination: remove training rows that overlap evaluation sets.

The benchmark index is built once, in ``combine`` (the main process), and travels to the
workers as a few sorted numpy arrays (n-gram hashes or MinHash band keys, each with the item it
came from), so ``apply`` is a ``searchsorted`` per batch and its answer for a row never depends on
the other rows of the batch: the output is the same for any batch size and worker count.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from winnow import minhash, text
from winnow.errors import ConfigError, InputError
from winnow.stages.base import GlobalStage, Verdict, register
from winnow.stages.dedup import SENTENCE_PUNCTUATION, compared_text

log = logging.getLogger(__name__)

Side = Literal["instruction", "response", "conversation"]
#: A benchmark file with this suffix is plain text, one item per line.
PLAIN_TEXT_SUFFIX = ".txt"
#: Multiplier of the rolling hash over word hashes (odd; the golden ratio's 64 bits).
_WINDOW_MUL = np.uint64(0x9E3779B97F4A7C15)
#: The longest n-gram quoted in a reason, in characters.
_QUOTE_CHARS = 100


def clean(texts: pa.Array) -> pa.Array:
    """Normalized text (NFKC, lower case, whitespace) without sentence punctuation, so that a comma
    or a quote mark does not hide an overlap; words are separated by one space."""
    texts = pc.replace_substring_regex(text.normalize(texts), SENTENCE_PUNCTUATION, " ")
    return pc.utf8_trim_whitespace(pc.replace_substring_regex(texts, r"\s+", " "))


def word_counts(texts: pa.Array) -> np.ndarray:
    """Words per text, counted as ``minhash.ngram_hashes`` splits them."""
    split = pc.utf8_split_whitespace(texts)
    flat = pc.list_flatten(split)
    nonempty = pc.greater(pc.binary_length(flat), 0).to_numpy(zero_copy_only=False)
    parents = pc.list_parent_indices(split).to_numpy()
    return np.bincount(parents[nonempty], minlength=len(texts)).astype(np.int64)


@dataclass
class Benchmarks:
    """Every benchmark item: its cleaned text, file label and 0-based index in its file."""

    labels: list[str]  # one per benchmark file, as reasons name it
    texts: list[str]
    file: np.ndarray  # int32 per item: position in ``labels``
    index: np.ndarray  # int64 per item: 0-based index in its file


@dataclass
class _NgramIndex:
    """Sorted n-gram hashes of the long items and, per shorter length k, whole short items."""

    hashes: np.ndarray  # uint64, sorted, unique
    items: np.ndarray  # int32: the first item (file order, then index) with that n-gram
    short: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


@dataclass
class _MinHashIndex:
    signatures: np.ndarray  # (items, num_perm) uint32
    keys: np.ndarray  # (bands, entries) uint64, each band sorted
    items: np.ndarray  # (bands, entries) int32, the item of each key


@dataclass
class _State:
    """What every worker gets: the item names and the index (not the items' texts)."""

    labels: list[str]
    file: np.ndarray
    item_index: np.ndarray
    index: _NgramIndex | _MinHashIndex | None


@register
class Decontaminate(GlobalStage):
    """Remove training rows that overlap an evaluation set (benchmark decontamination).

    A benchmark item is the text of all its user and assistant turns (a line, for plain text);
    rows and items are compared after the dedup stages' normalization (NFKC, lower case,
    whitespace) with sentence punctuation removed. In ``ngram`` mode a row side is contaminated
    when it shares a run of ``ngram`` consecutive words with an item (13, as in the GPT-3 and FLAN
    contamination reports); an item shorter than that counts when its whole word sequence appears
    in the row, unless it has fewer than ``min_words`` words (a one-word item would match nearly
    every row). In ``minhash`` mode a row side is contaminated when its estimated Jaccard
    similarity to an item (MinHash LSH, items as the reference rows) is at least ``threshold``:
    this catches paraphrases, at the cost of comparing whole texts, so it suits benchmarks of
    prompts (or use ``on: [conversation]`` for question-answer items).

    Items are named by their file and 0-based index in it (records for instruction files, as
    ``source_index``; non-blank lines for ``.txt``); a glob or folder is one benchmark per file.
    A row overlapping several items names the first in the order of ``benchmarks`` (in minhash
    mode, the most similar). Reasons look like ``overlaps mmlu.jsonl item 17
    (instruction 13-gram "…")`` or ``near-duplicate of gsm8k.jsonl item 3 (J≈0.91, response)``;
    they are counted per benchmark file (``overlaps mmlu.jsonl``), so the per-stage reason counts
    of the manifest are the per-benchmark contamination report.

    Args:
        benchmarks: evaluation files to remove overlap with: any supported input format (read
            like ``inputs:``; records that fail to parse are skipped), or ``.txt`` with one item
            per line. Empty: nothing to check.
        on: which sides of a row are compared, each on its own: ``instruction`` (user turns),
            ``response`` (assistant turns), ``conversation`` (all turns); a match on any removes it.
        mode: ``ngram`` (exact n-gram overlap) or ``minhash`` (near-duplicates, for paraphrases).
        ngram: ngram mode: words in a shared run that marks a row as contaminated.
        min_words: items with fewer words are ignored in both modes (too short to mean
            contamination: a one-word item would match almost every row).
        threshold: minhash mode: estimated Jaccard at or above which a row side copies an item.
        shingle: minhash mode: ``char`` or ``word`` shingles.
        shingle_size: minhash mode: shingle length in characters or words.
        num_perm: minhash mode: permutations per signature.
        seed: minhash mode: seed of the permutations.

    >>> Decontaminate(benchmarks=["evals/mmlu.jsonl", "evals/extra.txt"]).ngram
    13
    """

    name = "decontaminate"

    def __init__(
        self,
        benchmarks: list[str] = [],  # noqa: B006 (copied below, never mutated)
        on: list[Side] = ["instruction", "response"],  # noqa: B006
        mode: Literal["ngram", "minhash"] = "ngram",
        ngram: int = 13,
        min_words: int = 4,
        threshold: float = 0.8,
        shingle: Literal["char", "word"] = "char",
        shingle_size: int = 5,
        num_perm: int = 128,
        seed: int = 1,
    ) -> None:
        if ngram < 1:
            raise ConfigError(f"ngram must be at least 1, got {ngram}", "ngram")
        if min_words < 1:
            raise ConfigError(f"min_words must be at least 1, got {min_words}", "min_words")
        if not 0 < threshold <= 1:
            raise ConfigError(f"threshold must be in (0, 1], got {threshold}", "threshold")
        if shingle_size < 1 or num_perm < 1:
            key = "shingle_size" if shingle_size < 1 else "num_perm"
            raise ConfigError("shingle_size and num_perm must be at least 1", key)
        if not on:
            raise ConfigError("on must name at least one of instruction, response, conversation", "on")
        self.benchmarks = list(benchmarks)
        self.on = list(on)
        self.mode = mode
        self.ngram = ngram
        self.min_words = min_words
        self.threshold = threshold
        self.shingle = shingle
        self.shingle_size = shingle_size
        self.num_perm = num_perm
        self.seed = seed

    # -- the benchmark files ----------------------------------------------------------------------
    def _check_exists(self, path: str) -> None:
        from winnow.formats.containers import is_url

        if not is_url(path) and not any(c in path for c in "*?[") and not Path(path).exists():
            raise InputError(f"decontaminate: benchmark file {path} not found; fix or remove it in benchmarks:")

    def read_benchmarks(self) -> Benchmarks:
        """Every item of every benchmark file, cleaned; raises `InputError` naming a bad file."""
        from winnow.formats import InputSpec, open_input

        sources: list[str] = []
        raw: list[pa.Array] = []
        files: list[np.ndarray] = []
        indexes: list[np.ndarray] = []
        for path in self.benchmarks:
            self._check_exists(path)
            if path.lower().endswith(PLAIN_TEXT_SUFFIX):
                try:
                    lines = Path(path).read_text(encoding="utf-8").splitlines()
                except (OSError, UnicodeDecodeError) as e:
                    raise _unreadable(path, e) from None
                items = [line for line in lines if line.strip()]
                files.append(np.full(len(items), len(sources), np.int32))
                indexes.append(np.arange(len(items), dtype=np.int64))
                raw.append(clean(pa.array(items, pa.string())))
                sources.append(path)
                continue
            try:
                rows = open_input(InputSpec(path=path, on_error="skip")).to_table()
            except (InputError, ConfigError) as e:
                raise _unreadable(path, e) from None
            # A glob or a folder is several files: each is its own benchmark in reasons and counts.
            names = rows.column("source").to_pylist()
            for name in dict.fromkeys(names):
                sources.append(name)
            number = {name: i for i, name in enumerate(sources)}
            files.append(np.array([number[n] for n in names], np.int32))
            indexes.append(rows.column("source_index").to_numpy())
            raw.append(clean(text.role_text(rows.column("messages"), ("user", "assistant"))))
        names_only = [Path(s).name for s in sources]
        unique = len(set(names_only)) == len(names_only)
        return Benchmarks(
            labels=names_only if unique else sources,
            texts=[t for a in raw for t in a.to_pylist()],
            file=np.concatenate(files) if files else np.zeros(0, np.int32),
            index=np.concatenate(indexes) if indexes else np.zeros(0, np.int64),
        )

    def external_fingerprint(self) -> str | None:
        if not self.benchmarks:
            return None
        from winnow.formats import InputSpec, open_input

        total = hashlib.sha256()
        for path in self.benchmarks:
            self._check_exists(path)
            try:
                if path.lower().endswith(PLAIN_TEXT_SUFFIX):
                    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
                else:
                    digest = open_input(InputSpec(path=path, on_error="skip")).fingerprint()
            except (OSError, InputError, ConfigError) as e:
                raise _unreadable(path, e) from None
            total.update(f"{path}\0{digest}\n".encode())
        return total.hexdigest()

    # -- summarize → combine → apply --------------------------------------------------------------
    def summarize(self, batch: pa.Table) -> int:
        return batch.num_rows  # the index comes from the benchmarks, not from the rows

    def combine(self, partials: list[int]) -> _State:
        bench = self.read_benchmarks()
        counts = word_counts(pa.array(bench.texts, pa.string()))
        usable = counts >= self.min_words
        if self.benchmarks and not usable.any():
            log.warning("decontaminate: the benchmarks hold no item of %d words or more", self.min_words)
        index: _NgramIndex | _MinHashIndex | None = None
        if usable.any() and self.mode == "minhash":
            index = self._minhash_index(bench, usable)
        elif usable.any():
            index = self._ngram_index(bench, counts, usable)
        return _State(bench.labels, bench.file, bench.index, index)

    def _ngram_index(self, bench: Benchmarks, counts: np.ndarray, usable: np.ndarray) -> _NgramIndex:
        long = usable & (counts >= self.ngram)
        short = usable & (counts < self.ngram)
        lengths = {int(k) for k in np.unique(counts[short])} | {self.ngram}
        index = _NgramIndex(np.zeros(0, np.uint64), np.zeros(0, np.int32))
        for k, rows, start, grams in _windows(bench.texts, lengths):
            if k == self.ngram:  # every n-gram of a long item
                keep = long[rows]
                index.hashes, index.items = _first_item(grams[keep], rows[keep].astype(np.int32))
            else:  # a short item only as a whole
                keep = short[rows] & (start == 0) & (counts[rows] == k)
                index.short[k] = _first_item(grams[keep], rows[keep].astype(np.int32))
        return index

    @property
    def hasher(self) -> minhash.MinHasher:
        return minhash.MinHasher(self.num_perm, self.seed, self.shingle, self.shingle_size)

    def band_layout(self) -> tuple[int, int]:
        return minhash.lsh_bands(self.threshold, self.num_perm)

    def _minhash_index(self, bench: Benchmarks, usable: np.ndarray) -> _MinHashIndex:
        sig = self.hasher.signatures(bench.texts)
        items = np.flatnonzero(usable).astype(np.int32)
        bands, rows = self.band_layout()
        keys = minhash.band_keys(sig[items], bands, rows).T  # (bands, items)
        order = np.argsort(keys, axis=1, kind="stable")
        return _MinHashIndex(sig, np.take_along_axis(keys, order, 1), items[order])

    def reasons(self, batch: pa.Table, state: _State) -> Verdict:
        n = batch.num_rows
        reasons: list[str | None] = [None] * n
        kinds: list[str | None] = [None] * n
        if state.index is not None and n:
            sides = [clean(compared_text(batch, side, normalize=False, roles=False)) for side in self.on]
            if isinstance(state.index, _NgramIndex):
                hits = self._ngram_hits(sides, state.index)
            else:
                hits = self._minhash_hits(sides, state.index)
            for row, item, side, detail in hits:
                label = state.labels[state.file[item]]
                where = f"{label} item {state.item_index[item]}"
                if isinstance(state.index, _NgramIndex):
                    reasons[row] = f"overlaps {where} ({detail})"
                    kinds[row] = f"overlaps {label}"
                else:
                    reasons[row] = f"near-duplicate of {where} ({detail}, {self.on[side]})"
                    kinds[row] = f"near-duplicate of {label}"
        return Verdict(pa.array(reasons, pa.string()), pa.array(kinds, pa.string()))

    def _ngram_hits(self, sides: list[pa.Array], index: _NgramIndex) -> list[tuple[int, int, int, str]]:
        """Per contaminated row: (row, item, side, what matched), the first item in file order."""
        found: list[np.ndarray] = []  # columns: row, item, side, start word, length
        texts = [side.to_pylist() for side in sides]
        tables = {self.ngram: (index.hashes, index.items), **index.short}
        for s in range(len(sides)):
            for k, rows, start, grams in _windows(texts[s], set(tables)):
                hashes, items = tables[k]
                if not len(hashes):
                    continue
                pos = np.minimum(np.searchsorted(hashes, grams), len(hashes) - 1)
                hit = hashes[pos] == grams
                found.append(
                    np.stack(
                        [rows[hit], items[pos[hit]], np.full(hit.sum(), s), start[hit], np.full(hit.sum(), k)],
                        axis=1,
                    ).astype(np.int64)
                )
        out = []
        for row, item, s, first, k in _best(found, (1, 2, 3)):
            words = texts[s][row].split()[first : first + k]
            what = f"{self.on[s]} {k}-gram" if k == self.ngram else f"{self.on[s]} contains the whole item"
            out.append((row, item, s, f'{what} "{_quote(words)}"'))
        return out

    def _minhash_hits(self, sides: list[pa.Array], index: _MinHashIndex) -> list[tuple[int, int, int, str]]:
        """Per contaminated row: (row, item, side, J≈…), the most similar item (then file order)."""
        bands, rows_per_band = self.band_layout()
        found: list[np.ndarray] = []  # columns: row, item, side, -similarity in 1/num_perm units
        for s, side in enumerate(sides):
            sig = self.hasher.signatures(side.to_pylist())
            valid = np.flatnonzero(~(sig == minhash.MASK32).all(axis=1))
            if not len(valid):
                continue
            keys = minhash.band_keys(sig[valid], bands, rows_per_band)
            pairs = []
            for band in range(bands):  # every item sharing a bucket: a join, not candidate_pairs,
                # whose big-bucket shortcut would make a row's candidates depend on its batch
                lo = np.searchsorted(index.keys[band], keys[:, band], side="left")
                hi = np.searchsorted(index.keys[band], keys[:, band], side="right")
                size = hi - lo
                at = np.repeat(lo - np.cumsum(size) + size, size) + np.arange(size.sum())
                pairs.append(np.stack([np.repeat(valid, size), index.items[band][at]], axis=1))
            both = np.unique(np.concatenate(pairs), axis=0)
            if not len(both):
                continue
            row, item = both[:, 0], both[:, 1]
            similar = minhash.similarity(np.concatenate([sig, index.signatures]), row, item + len(sig))
            ok = similar >= self.threshold
            equal = np.rint(similar[ok] * self.num_perm)  # an integer, so ties sort exactly
            found.append(np.stack([row[ok], item[ok], np.full(ok.sum(), s), -equal], axis=1).astype(np.int64))
        return [(row, item, s, f"J≈{-neg / self.num_perm:.2f}") for row, item, s, neg in _best(found, (3, 1, 2))]


def _windows(texts: list[str], lengths: set[int]) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """For each ``k`` in ``lengths`` (ascending): every window of ``k`` consecutive words of the
    texts, as (k, row, first word's position in the row, 64-bit hash).

    Words are tokenized and hashed once (``minhash.ngram_hashes`` with n=1), then the window
    hashes grow one word at a time (a polynomial rolling hash), so checking the ten or so short
    item lengths below ``ngram`` costs one pass over the words each, not one tokenization each.
    """
    rows, words = minhash.ngram_hashes(texts, 1)  # one hash per word, in row order
    if not len(words) or not lengths:
        return
    counts = np.bincount(rows, minlength=len(texts))
    position = np.arange(len(words)) - np.repeat(np.cumsum(counts) - counts, counts)
    left = counts[rows] - position  # words from each word to the end of its row
    grams = words.copy()
    for k in range(1, max(lengths) + 1):
        if k > 1:  # the hash of words[i : i + k] from that of words[i : i + k - 1]
            grams = grams[:-1] * _WINDOW_MUL + words[k - 1 :]
        if k in lengths:
            inside = left[: len(grams)] >= k
            yield k, rows[: len(grams)][inside], position[: len(grams)][inside], grams[inside]


def _unreadable(path: str, error: Exception) -> InputError:
    detail = str(error).removeprefix(f"{path}: ")
    if "cannot detect the record format" in detail:  # a benchmark has no format: to set
        detail = detail.split("; set format:")[0] + "; plain text needs a .txt name (one item per line)"
    return InputError(f"decontaminate: cannot read benchmark file {path}: {detail}")


def _first_item(hashes: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique sorted hashes, each with the smallest item that has it."""
    order = np.lexsort((items, hashes))
    hashes, items = hashes[order], items[order]
    first = np.r_[True, hashes[1:] != hashes[:-1]] if len(hashes) else np.zeros(0, bool)
    return hashes[first], items[first]


def _best(found: list[np.ndarray], by: tuple[int, ...]) -> list[tuple[int, ...]]:
    """One hit per row: the smallest by the columns ``by`` (first is the most significant)."""
    if not found:
        return []
    hits = np.concatenate(found)
    if not len(hits):
        return []
    order = np.lexsort((*(hits[:, c] for c in reversed(by)), hits[:, 0]))
    hits = hits[order]
    first = np.r_[True, hits[1:, 0] != hits[:-1, 0]]
    return [tuple(int(v) for v in h) for h in hits[first]]


def _quote(words: list[str]) -> str:
    quoted = " ".join(words)
    return quoted if len(quoted) <= _QUOTE_CHARS else quoted[: _QUOTE_CHARS - 1].rstrip() + "…"
