"""Vectorized MinHash signatures, LSH banding and verified duplicate clusters.

Why our own code rather than ``datasketch.MinHash`` per row: datasketch hashes one shingle at a
time in Python (≈450 docs/s); here a whole batch is one numpy computation — every shingle of
every row is hashed at once from the text's code points, each row's distinct shingles are
permuted together and ``np.minimum.reduceat`` takes the per-row minimum. The signatures are the
*same numbers* datasketch computes (``MinHash(num_perm, seed, hashfunc=shingle_hash)`` with its
default ``affine32`` scheme; a test holds us to that), so they can be stored as
``LeanMinHash`` and mixed with datasketch indexes. datasketch also picks the bands × rows that
minimise the weighted false-positive/false-negative area for a threshold.

Shingles are character n-grams (default) or word n-grams of the normalized text. A text with
fewer than ``n`` characters (or words) is one shingle, so short instructions still have a
signature; an empty text has none and is never a duplicate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

MASK32 = 0xFFFFFFFF
MASK64 = 0xFFFFFFFFFFFFFFFF
#: Multipliers of the polynomial hashes over code points and over word hashes (odd 64-bit).
_CHAR_MUL = 0x100000001B3
_WORD_MUL = 0x9E3779B97F4A7C15
#: (permutation × shingle) cells computed at once: 4 MB of uint32 stays in cache, which measured
#: 4× faster than one big array here; permutations are the leading axis for the same reason.
_CHUNK_CELLS = 1 << 20

_FMIX32 = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35), np.uint32(16))
_FMIX64 = (
    np.uint64(33),
    np.uint64(0xFF51AFD7ED558CCD),
    np.uint64(33),
    np.uint64(0xC4CEB9FE1A85EC53),
    np.uint64(33),
)


def _fmix(h: np.ndarray, consts: tuple[np.unsignedinteger, ...]) -> np.ndarray:
    """MurmurHash3's finalizer: an avalanching bijection (wrapping arithmetic is intended)."""
    s1, m1, s2, m2, s3 = consts
    h = h ^ (h >> s1)
    h = h * m1
    h = h ^ (h >> s2)
    h = h * m2
    return h ^ (h >> s3)  # type: ignore[no-any-return]


def _fmix64_int(h: int) -> int:
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & MASK64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & MASK64
    return h ^ (h >> 33)


def _poly_int(values: Sequence[int], mul: int) -> int:
    h = 0
    for v in values:
        h = (h * mul + v) & MASK64
    return h


def shingle_hash(shingle: str | tuple[str, ...]) -> int:
    """The 32-bit hash of one shingle: a string (char n-gram) or a tuple of words (word n-gram).

    This is the ``hashfunc`` under which our batch signatures equal ``datasketch.MinHash``'s;
    it is the scalar form of what :class:`MinHasher` computes for whole batches.
    """
    if isinstance(shingle, str):
        return _fmix64_int(_poly_int([ord(c) for c in shingle], _CHAR_MUL)) & MASK32
    words = [_fmix64_int(_poly_int(w.encode("utf-8", "surrogatepass"), _CHAR_MUL)) for w in shingle]
    return _fmix64_int(_poly_int(words, _WORD_MUL)) & MASK32


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's affine32 permutation parameters (a odd, b) for ``seed``."""
    from datasketch import MinHash

    a, b = MinHash(num_perm=num_perm, seed=seed).permutations
    return a.astype(np.uint32), b.astype(np.uint32)


def lsh_bands(threshold: float, num_perm: int, weights: tuple[float, float] = (0.5, 0.5)) -> tuple[int, int]:
    """Bands × rows minimising datasketch's weighted false-positive/negative probability."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=weights)
    return int(lsh.b), int(lsh.r)


@dataclass(frozen=True)
class MinHasher:
    """Signatures for batches of texts.

    >>> m = MinHasher(num_perm=16, ngram=3)
    >>> sig = m.signatures(["the cat sat", "the cat sat!", ""])
    >>> sig.shape, bool((sig[0] == sig[1]).mean() > 0.5), bool((sig[2] == 0xFFFFFFFF).all())
    ((3, 16), True, True)
    """

    num_perm: int = 128
    seed: int = 1
    shingle: str = "char"
    ngram: int = 5

    def shingles(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Every shingle hash of every text, as ``(row, hash)`` arrays grouped by row.

        A shingle repeated within a text appears once per occurrence (it cannot change a minimum,
        and removing it would cost a sort); use ``np.unique`` for sets.
        """
        counts, hashes = self._shingles(texts)
        return np.repeat(np.arange(len(texts)), counts), hashes

    def _shingles(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Shingles per text (counts) and their 32-bit hashes, grouped by text in order."""
        counts, hashes = (_word_shingles if self.shingle == "word" else _char_shingles)(texts, self.ngram)
        return counts, _to32(hashes)

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), num_perm)`` uint32; a text without shingles gets all 0xFFFFFFFF."""
        counts, hashes = self._shingles(texts)
        sig = np.full((len(texts), self.num_perm), MASK32, dtype=np.uint32)
        if not len(hashes):
            return sig
        a, b = permutations(self.num_perm, self.seed)
        a, b = a[:, None], b[:, None]
        mixed = _fmix(hashes, _FMIX32)
        rows = np.flatnonzero(counts)
        ends = np.cumsum(counts)[rows]
        starts = ends - counts[rows]
        per_chunk = max(1, _CHUNK_CELLS // self.num_perm)
        first = 0
        while first < len(starts):  # chunks of whole rows, so each reduceat covers complete rows
            last = max(int(np.searchsorted(ends, starts[first] + per_chunk, side="right")), first + 1)
            lo, hi = starts[first], ends[last - 1]
            values = a * mixed[None, lo:hi]
            values += b
            sig[rows[first:last]] = np.minimum.reduceat(values, starts[first:last] - lo, axis=1).T
            first = last
        return sig


def ngram_hashes(texts: Sequence[str], n: int, unit: str = "word") -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of every ``n``-gram of words (or characters) of each text, with the row of
    each; a text shorter than ``n`` units is one n-gram. For exact n-gram matching (e.g.
    decontamination), where 32 bits would collide across millions of n-grams."""
    counts, hashes = _word_shingles(texts, n) if unit == "word" else _char_shingles(texts, n)
    return np.repeat(np.arange(len(texts)), counts), _fmix(hashes, _FMIX64)


def _to32(hashes: np.ndarray) -> np.ndarray:
    return (_fmix(hashes, _FMIX64) & np.uint64(MASK32)).astype(np.uint32)


def _char_shingles(texts: Sequence[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    cps = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
    return _ngram_hashes(cps, lengths, n, _CHAR_MUL)


def _word_shingles(texts: Sequence[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow as pa
    import pyarrow.compute as pc

    split = pc.utf8_split_whitespace(pa.array(texts, pa.string()))
    flat = pc.list_flatten(split)
    # Arrow keeps empty strings at the ends ("".split() is [] in Python): drop them.
    nonempty = pc.greater(pc.binary_length(flat), 0).to_numpy(zero_copy_only=False)
    parents = pc.list_parent_indices(split).to_numpy()
    counts = np.bincount(parents[nonempty], minlength=len(texts)).astype(np.int64)
    encoded = pc.dictionary_encode(flat.filter(pa.array(nonempty)))
    vocab = encoded.dictionary
    ids = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = np.frombuffer(vocab.buffers()[1], dtype=np.int32)[vocab.offset : vocab.offset + len(vocab) + 1]
    data = np.frombuffer(vocab.buffers()[2], dtype=np.uint8) if len(vocab) else np.zeros(0, np.uint8)
    word_hash = _fmix(_segment_hashes(data[offsets[0] : offsets[-1]].astype(np.uint64), np.diff(offsets)), _FMIX64)
    return _ngram_hashes(word_hash[ids], counts, n, _WORD_MUL)


def _ngram_hashes(units: np.ndarray, lengths: np.ndarray, n: int, mul_int: int) -> tuple[np.ndarray, np.ndarray]:
    """Polynomial hashes of every window of ``n`` units inside each row (a row shorter than
    ``n`` is one window of all its units), unmixed 64-bit, grouped by row in row order, with the
    number of windows of each row (no per-window row array: that repeat cost as much as the hash)."""
    mul = np.uint64(mul_int)
    width = max(len(units) - n + 1, 0)
    h = np.zeros(width, dtype=np.uint64)
    for k in range(n):  # a rolling polynomial over n consecutive units, all positions at once
        h *= mul
        h += units[k : k + width]
    ends = np.cumsum(lengths)
    starts = ends - lengths
    # A window is valid unless it runs past the end of its row: the n-1 last starts of each row.
    valid = np.ones(width, dtype=bool)
    crossing = (ends[:, None] - np.arange(1, n)[None, :]).ravel()
    valid[crossing[(crossing >= 0) & (crossing < width)]] = False
    long = lengths >= n
    counts = np.where(long, lengths - n + 1, (lengths > 0).astype(np.int64))
    short = np.flatnonzero((lengths > 0) & ~long)
    if not len(short):
        return counts, h[valid]
    hashes = np.empty(int(counts.sum()), dtype=np.uint64)
    from_long = np.repeat(long, counts)
    hashes[from_long] = h[valid]
    acc = np.zeros(len(short), dtype=np.uint64)  # the whole row is one window: Horner's rule
    for k in range(n - 1):
        take = lengths[short] > k
        acc[take] = acc[take] * mul + units[starts[short[take]] + k]
    hashes[~from_long] = acc
    return counts, hashes


def _segment_hashes(units: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Polynomial hash of each segment of ``units`` (Horner's rule written as a segmented sum)."""
    ends = np.cumsum(lengths)
    power_index = np.repeat(ends, lengths) - 1 - np.arange(len(units))
    terms = units * _powers(int(lengths.max()) if len(lengths) else 1)[power_index]
    out = np.zeros(len(lengths), dtype=np.uint64)
    nonempty = lengths > 0
    if len(terms):
        out[nonempty] = np.add.reduceat(terms, (ends - lengths)[nonempty])
    return out


@lru_cache(maxsize=4)
def _powers_cached(size: int) -> np.ndarray:
    out = np.empty(size, dtype=np.uint64)
    value = 1
    for i in range(size):  # Python ints: numpy warns on scalar overflow, arrays wrap silently
        out[i] = value
        value = (value * _CHAR_MUL) & MASK64
    return out


def _powers(size: int) -> np.ndarray:
    """MUL**k mod 2**64 for k < size (grown in powers of two, so the cache stays small)."""
    return _powers_cached(1 << max(size - 1, 1).bit_length())


# -- LSH, verification and clusters ------------------------------------------------------------


class RowStack:
    """Several ``(n, width)`` arrays read as one, by row, without the copy ``np.concatenate``
    would make.

    A global stage's partials stay in memory while it combines them, so concatenating the
    signatures (512 bytes a row) would hold them twice at the peak; indexing reads through.
    """

    def __init__(self, parts: Sequence[np.ndarray], width: int, dtype: Any = np.uint32) -> None:
        self.parts = [p for p in parts if len(p)] or [np.zeros((0, width), dtype)]
        self.starts = np.cumsum([0, *(len(p) for p in self.parts)])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, rows: int | np.ndarray) -> np.ndarray:
        if isinstance(rows, (int, np.integer)):
            k = int(np.searchsorted(self.starts, rows, side="right")) - 1
            return self.parts[k][int(rows) - self.starts[k]]
        rows = np.asarray(rows, dtype=np.int64)
        which = np.searchsorted(self.starts, rows, side="right") - 1
        out = np.empty((len(rows), *self.parts[0].shape[1:]), self.parts[0].dtype)
        for k in np.unique(which):
            sel = which == k
            out[sel] = self.parts[k][rows[sel] - self.starts[k]]
        return out

    def map(self, f: Any) -> np.ndarray:
        """``f`` applied to each part, the results concatenated (for an ``f`` that works row by row)."""
        return np.concatenate([f(p) for p in self.parts])


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """``(n, bands)`` uint64: one hash per band of ``rows`` signature values."""
    mul = np.uint64(_WORD_MUL)
    keys = np.empty((len(sig), bands), dtype=np.uint64)
    for band in range(bands):
        h = np.full(len(sig), band, dtype=np.uint64)
        for value in sig[:, band * rows : (band + 1) * rows].T:
            h = h * mul + value.astype(np.uint64)
        keys[:, band] = _fmix(h, _FMIX64)
    return keys


def candidate_pairs(
    keys: np.ndarray, valid: np.ndarray, full_bucket: int = 64, priority: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Row pairs ``(i < j)`` that share a bucket in some band.

    A bucket of up to ``full_bucket`` rows gives all its pairs; a bigger one (typically many
    copies of one text) links each member to one centre, which keeps the pair count linear: the
    member with the lowest ``priority`` (the row a keep-order walk meets first), else the first.
    """
    pairs: list[np.ndarray] = []
    rows = np.flatnonzero(valid)
    rank = priority[rows] if priority is not None else np.arange(len(rows))
    for band in range(keys.shape[1]):
        k = keys[rows, band]
        order = np.lexsort((rank, k))
        sk, sr = k[order], rows[order]
        starts = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]])
        sizes = np.diff(np.r_[starts, len(sk)])
        for size in np.unique(sizes[(sizes > 1) & (sizes <= full_bucket)]):
            members = sr[starts[sizes == size][:, None] + np.arange(size)]
            i, j = np.triu_indices(int(size), 1)
            pairs.append(np.stack([members[:, i].ravel(), members[:, j].ravel()], axis=1))
        for start, size in zip(starts[sizes > full_bucket], sizes[sizes > full_bucket]):
            members = sr[start : start + size]
            pairs.append(np.stack([np.full(size - 1, members[0]), members[1:]], axis=1))
    if not pairs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    both = np.concatenate(pairs).astype(np.int64)
    both.sort(axis=1)
    codes = np.sort(both[:, 0] * len(keys) + both[:, 1])  # one int per pair: a 1-d sort, not a 2-d unique
    codes = codes[np.r_[True, codes[1:] != codes[:-1]]]
    return codes // len(keys), codes % len(keys)


def similarity(sig: np.ndarray | RowStack, i: np.ndarray, j: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Estimated Jaccard of row pairs: the share of equal signature values."""
    out = np.empty(len(i), dtype=np.float64)
    for lo in range(0, len(i), chunk):
        out[lo : lo + chunk] = (sig[i[lo : lo + chunk]] == sig[j[lo : lo + chunk]]).mean(axis=1)
    return out
