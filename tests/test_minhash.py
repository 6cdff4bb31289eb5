"""The vectorized MinHash core: same numbers as datasketch, LSH, pairs and similarity."""

from __future__ import annotations

import datasketch
import numpy as np
import pytest

from winnow import minhash
from winnow.minhash import MinHasher, shingle_hash

TEXTS = [
    "the cat sat on the mat",
    "hello, world! this is a test of shingles",
    "ab",
    "",
    "日本語のテキストです",
    "one two",
    "déjà vu  à la carte",
    "x",
]


def datasketch_signature(text: str, shingle: str, n: int, num_perm: int, seed: int) -> np.ndarray:
    m = datasketch.MinHash(num_perm=num_perm, seed=seed, hashfunc=shingle_hash)
    if shingle == "char":
        shingles = {text[i : i + n] for i in range(len(text) - n + 1)} if len(text) >= n else {text} - {""}
    else:
        w = text.split()
        shingles = {tuple(w[i : i + n]) for i in range(len(w) - n + 1)} if len(w) >= n else ({tuple(w)} if w else set())
    for s in shingles:
        m.update(s)
    return m.hashvalues


@pytest.mark.parametrize(("shingle", "n"), [("char", 5), ("char", 3), ("word", 5), ("word", 1), ("word", 2)])
@pytest.mark.parametrize(("num_perm", "seed"), [(128, 1), (64, 42)])
def test_signatures_equal_datasketch(shingle: str, n: int, num_perm: int, seed: int) -> None:
    ours = MinHasher(num_perm=num_perm, seed=seed, shingle=shingle, ngram=n).signatures(TEXTS)
    for text, row in zip(TEXTS, ours):
        np.testing.assert_array_equal(row, datasketch_signature(text, shingle, n, num_perm, seed), err_msg=text)


def test_signatures_do_not_depend_on_the_batch() -> None:
    m = MinHasher()
    together = m.signatures(TEXTS)
    alone = np.vstack([m.signatures([t]) for t in TEXTS])
    np.testing.assert_array_equal(together, alone)


def test_signatures_are_leanminhash_compatible() -> None:
    sig = MinHasher().signatures(["a quick brown fox jumps", "a quick brown fox jumped"])
    a, b = (datasketch.LeanMinHash(seed=1, hashvalues=s, scheme="affine32") for s in sig)
    assert a.jaccard(b) == pytest.approx(float((sig[0] == sig[1]).mean()))


def test_bands_come_from_datasketch() -> None:
    lsh = datasketch.MinHashLSH(threshold=0.8, num_perm=128)
    assert minhash.lsh_bands(0.8, 128) == (lsh.b, lsh.r)
    assert minhash.lsh_bands(0.8, 128, (0.2, 0.8)) != minhash.lsh_bands(0.8, 128, (0.8, 0.2))


def test_candidate_pairs_find_shared_buckets_only() -> None:
    keys = np.array([[1, 10], [1, 11], [2, 12], [3, 11], [4, 13]], dtype=np.uint64)
    i, j = minhash.candidate_pairs(keys, np.ones(5, bool))
    assert sorted(zip(i.tolist(), j.tolist())) == [(0, 1), (1, 3)]
    i, j = minhash.candidate_pairs(keys, np.array([True, False, True, True, True]))
    assert len(i) == 0


def test_big_buckets_link_to_their_first_row() -> None:
    keys = np.zeros((100, 1), dtype=np.uint64)
    i, _ = minhash.candidate_pairs(keys, np.ones(100, bool), full_bucket=10)
    assert len(i) == 99 and set(i.tolist()) == {0}


def test_similarity_is_the_share_of_equal_values() -> None:
    sig = np.array([[1, 2, 3, 4], [1, 2, 0, 0], [9, 9, 9, 9]], dtype=np.uint32)
    np.testing.assert_allclose(minhash.similarity(sig, np.array([0, 0]), np.array([1, 2])), [0.5, 0.0])


def test_ngram_hashes_are_64_bit_and_match_across_rows() -> None:
    rows, hashes = minhash.ngram_hashes(["a b c d", "x a b c"], 3)
    assert hashes.dtype == np.uint64
    first = set(hashes[rows == 0].tolist())
    second = set(hashes[rows == 1].tolist())
    assert len(first & second) == 1  # "a b c"


def test_row_stack_reads_like_the_concatenation() -> None:
    rng = np.random.default_rng(0)
    parts = [rng.integers(0, 99, (n, 4), dtype=np.uint32) for n in (3, 0, 5, 1)]
    whole = np.concatenate(parts)
    stack = minhash.RowStack(parts, 4)
    rows = rng.integers(0, len(whole), 50)
    assert len(stack) == len(whole) == 9
    assert np.array_equal(stack[rows], whole[rows])
    assert all(np.array_equal(stack[int(r)], whole[r]) for r in range(len(whole)))
    assert np.array_equal(stack.map(lambda p: p.sum(axis=1)), whole.sum(axis=1))
    assert np.array_equal(
        minhash.similarity(stack, rows[:25], rows[25:]), minhash.similarity(whole, rows[:25], rows[25:])
    )


def test_an_empty_row_stack_has_the_right_shape() -> None:
    stack = minhash.RowStack([], 4)
    assert len(stack) == 0
    assert stack[np.zeros(0, np.int64)].shape == (0, 4)
    assert stack.map(lambda p: p.sum(axis=1)).shape == (0,)
