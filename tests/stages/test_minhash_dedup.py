from __future__ import annotations

import json
import logging
import random

import numpy as np
import pyarrow as pa
import pytest

import winnow as wn
from tests.conftest import table
from winnow.errors import ConfigError
from winnow.stages import MinHashDedup

WORDS = (
    "river stone light garden paper window silver morning quiet market letter bridge winter "
    "orange candle forest number simple travel engine little golden summer yellow basket "
    "mountain ocean whisper thunder pencil meadow harbor lantern velvet crystal shadow copper"
).split()


def passage(seed: int, n: int = 60) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(WORDS) for _ in range(n)]


def changed(words: list[str], positions: range, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = list(words)
    for p in positions:
        out[p] = rng.choice([w for w in WORDS if w != out[p]]) + "x"
    return out


def estimated(stage: MinHashDedup, a: str, b: str) -> float:
    sig = stage.hasher.signatures([a, b])
    return float((sig[0] == sig[1]).mean())


def test_near_duplicates_found_and_near_miss_kept() -> None:
    base = passage(1)
    rows = [
        ("Describe the scene.", " ".join(base)),
        ("Describe the scene!", " ".join(base[:30]) + ", " + " ".join(base[30:])),  # punctuation only
        ("Describe the scene.", " ".join(changed(base, range(0, 1), 2))),  # one word changed
        ("Describe the scene.", " ".join(changed(base, range(0, 20), 3))),  # a third changed: kept
        ("Write a poem.", " ".join(passage(9))),
    ]
    out = MinHashDedup(keep="first").run(table(rows))
    assert out.kept.column("source_index").to_pylist() == [0, 3, 4]
    first = table(rows)["id"][0].as_py()
    reasons = out.rejected.column("reason").to_pylist()
    assert all(r.startswith(f"near-duplicate of {first} (J≈") for r in reasons)
    assert out.counts == {"near-duplicate": 2}


def test_short_instructions_with_a_typo_or_a_polite_prefix() -> None:
    rows = [
        ("What is the capital city of Australia and why was it chosen?", "Canberra, as a compromise."),
        ("what is the capitol city of Australia and why was it chosen", "Canberra, as a compromise."),
        ("What is the capital city of Austria and why was it chosen?", "Vienna, historically."),
    ]
    out = MinHashDedup(keep="first").run(table(rows))
    assert out.kept.column("source_index").to_pylist() == [0, 2]  # a different answer: not a duplicate
    # On the instructions alone, "Australia" and "Austria" leave the char 5-gram sets at J = 0.83:
    # at threshold 0.8 that IS a near-duplicate — short prompts want a higher threshold.
    assert MinHashDedup(on="instruction", keep="first").run(table(rows)).kept.num_rows == 1
    out = MinHashDedup(on="instruction", keep="first", threshold=0.9).run(table(rows))
    assert 2 in out.kept.column("source_index").to_pylist()


def test_math_symbols_are_content() -> None:
    rows = [("What is 15*3?", "45"), ("What is 15/3?", "5"), ("What is 15+3?", "18")]
    assert MinHashDedup(on="instruction").run(table(rows)).rejected.num_rows == 0


def test_keep_rules() -> None:
    base = " ".join(passage(4))
    rows = [("Q", base), ("Q", base + " extra words here to be longer"), ("Q", base, "More?", "No.")]
    t = table(rows)
    assert MinHashDedup(on="response", keep="first").run(t).kept.column("source_index").to_pylist() == [0]
    assert MinHashDedup(on="response").run(t).kept.column("source_index").to_pylist() == [1]
    assert MinHashDedup(on="response", keep="most_turns").run(t).kept.column("source_index").to_pylist() == [2]
    scored = t.append_column("quality", pa.array([{"score": 0.1}, {"score": 0.3}, {"score": 0.9}]))
    out = MinHashDedup(on="response", keep={"by": "quality.score"}).run(scored)
    assert out.kept.column("source_index").to_pylist() == [2]


def test_a_chain_is_not_merged_into_one_duplicate_group() -> None:
    base = passage(5, 80)
    a = " ".join(base)
    b = " ".join(changed(base, range(0, 6), 6))
    c = " ".join(changed(changed(base, range(0, 6), 6), range(40, 46), 7))
    stage = MinHashDedup(on="response", keep="first", num_perm=256)
    # the premise: A≈B and B≈C above the threshold, A and C below it
    assert estimated(stage, a, b) >= 0.8 and estimated(stage, b, c) >= 0.8 and estimated(stage, a, c) < 0.8
    t = table([("q", b), ("q", a), ("q", c)])  # B first, so the walk starts from the middle of the chain
    out = MinHashDedup(on="response", keep="first", num_perm=256).run(t)
    assert out.kept.column("source_index").to_pylist() == [0]  # B kept; A and C are each close to B
    t = table([("q", a), ("q", b), ("q", c)])
    out = MinHashDedup(on="response", keep="first", num_perm=256).run(t)
    assert out.kept.column("source_index").to_pylist() == [0, 2]  # A and C kept: C is far from A
    assert out.rejected.column("source_index").to_pylist() == [1]


def test_clusters_table_and_dup_cluster_column() -> None:
    base = " ".join(passage(8))
    t = table([("q", base), ("q", base + " and more"), ("other", " ".join(passage(10)))])
    result = wn.Pipeline(stages=[MinHashDedup(keep="first")]).run(t, output=None, progress=False)
    clusters = result.table("clusters").to_pylist()
    first, second = t["id"][0].as_py(), t["id"][1].as_py()
    assert [(c["id"], c["kept"], c["duplicate_of"]) for c in clusters] == [(first, True, None), (second, False, first)]
    assert clusters[1]["similarity"] >= 0.8 and clusters[0]["cluster"] == first
    kept = result.to_arrow()
    assert kept.column("dup_cluster").to_pylist() == [first, None]
    index = result.table("index")
    assert index.num_rows == 2 and index.schema.field("signature").type.list_size == 128


def test_against_a_corpus_uses_its_saved_index(tmp_path) -> None:
    old = [("q", " ".join(passage(20))), ("q", " ".join(passage(21)))]
    p = wn.Pipeline(stages=[MinHashDedup()], output=tmp_path / "old")
    p.run(table(old, source="old"), progress=False)
    assert (tmp_path / "old" / "v1" / "index").is_dir()
    new = [("q", " ".join(passage(20)) + " again"), ("q", " ".join(passage(30)))]
    stage = MinHashDedup(against=f"{tmp_path / 'old'}@v1")
    out = stage.run(table(new, source="new"))
    assert out.kept.column("source_index").to_pylist() == [1]
    assert f"in {tmp_path / 'old'}@v1 (J≈" in out.rejected.column("reason")[0].as_py()
    assert stage.external_fingerprint() == wn.Corpus(tmp_path / "old").manifest("v1")["fingerprint"]


def test_against_any_input_file(tmp_path) -> None:
    ref = tmp_path / "ref.jsonl"
    ref.write_text(json.dumps({"instruction": "q", "output": " ".join(passage(40))}) + "\n")
    out = MinHashDedup(against=str(ref)).run(table([("q", " ".join(passage(40))), ("q", "unrelated text here")]))
    assert out.kept.column("source_index").to_pylist() == [1]


def test_large_clusters_are_reported(caplog) -> None:
    rows = [("same question again", "same answer again")] * 1001
    with caplog.at_level(logging.WARNING):
        out = MinHashDedup().run(table(rows))
    assert out.kept.num_rows == 1
    assert "a cluster of 1001 rows" in caplog.text


def test_parameters_are_checked() -> None:
    with pytest.raises(ConfigError, match="threshold"):
        MinHashDedup(threshold=1.5)
    with pytest.raises(ConfigError, match="both bands and rows"):
        MinHashDedup(bands=10)
    assert MinHashDedup(bands=16, rows=8).band_layout() == (16, 8)
    assert MinHashDedup().band_layout() == (17, 7)  # recall-weighted: candidates are verified
    assert MinHashDedup(weights=[0.5, 0.5]).band_layout() == (9, 13)


def test_empty_texts_are_never_duplicates() -> None:
    out = MinHashDedup(on="response").run(table([("a", ""), ("b", ""), ("c", "  ")]))
    assert out.rejected.num_rows == 0
    assert np.all(out.kept.column("dup_cluster").is_null())


def test_response_guard_keeps_rows_that_share_a_long_prompt_but_answer_differently() -> None:
    definition = " ".join(passage(50, 120))  # a long task definition, as in Super-NaturalInstructions
    rows = [
        (f"{definition} Input: where is the station?", "Wo ist der Bahnhof?"),
        (f"{definition} Input: i would like a coffee.", "Ich möchte einen Kaffee."),
        (f"{definition} Input: where is the station?", "Wo ist der Bahnhof?!"),
    ]
    out = MinHashDedup(keep="first").run(table(rows))
    assert out.kept.column("source_index").to_pylist() == [0, 1]
    unguarded = MinHashDedup(keep="first", response_guard=None).run(table(rows))
    assert unguarded.kept.column("source_index").to_pylist() == [0]
