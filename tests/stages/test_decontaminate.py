from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import winnow as wn
from tests import engine_util
from tests.conftest import SHARED_DATA, needs_shared, table
from winnow.errors import ConfigError, InputError
from winnow.stages import Decontaminate
from winnow.stages.base import from_config

#: 20 words; a row quoting 13 of them in a row is contaminated, 12 is not.
ITEM = "A farmer has seventeen sheep and all but nine run away across the hills, so how many sheep does he have left"
WORDS = ITEM.replace(",", "").split()


def write_lines(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def write_jsonl(path: Path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return str(path)


@pytest.fixture
def bench(tmp_path) -> str:
    """A plain-text benchmark: a blank line (not an item), a long item, a short one, a 2-word one."""
    return write_lines(
        tmp_path / "riddles.txt",
        ["", ITEM, "What is the boiling point of water?", "Say hello"],
    )


def removed(stage: Decontaminate, t) -> dict[int, str]:
    out = stage.run(t)
    return dict(zip(out.rejected.column("source_index").to_pylist(), out.rejected.column("reason").to_pylist()))


def test_a_13_gram_is_removed_and_12_words_are_kept(bench) -> None:
    t = table(
        [
            ("Riddle: " + " ".join(WORDS[3:16]) + "?", "Nine."),  # 13 words of the item
            ("Riddle: " + " ".join(WORDS[3:15]) + "?", "Nine."),  # only 12
            ("Write a poem about sheep.", "Sheep on the hills ..."),
        ]
    )
    gone = removed(Decontaminate(benchmarks=[bench]), t)
    assert list(gone) == [0]
    quoted = " ".join(WORDS[3:16]).lower()
    assert gone[0] == f'overlaps riddles.txt item 0 (instruction 13-gram "{quoted}")'


def test_punctuation_case_and_spacing_do_not_hide_overlap(bench) -> None:
    noisy = "A FARMER has seventeen sheep; and all but nine,   run away -- across the Hills!"
    t = table([(noisy, "ok")])
    assert list(removed(Decontaminate(benchmarks=[bench]), t)) == []  # "--" is a word
    t = table([(noisy.replace(" --", ""), "ok")])
    assert list(removed(Decontaminate(benchmarks=[bench]), t)) == [0]


def test_short_items_are_matched_whole(bench) -> None:
    t = table(
        [
            ("Quick one: what is the boiling point of water? Thanks.", "100 °C."),
            ("What is the boiling point of milk?", "About 100 °C."),  # near miss
            ("What is the boiling point", "Of what?"),  # part of the item only
            ("Say hello to my little friend.", "Hello!"),  # the 2-word item is below min_words
        ]
    )
    gone = removed(Decontaminate(benchmarks=[bench]), t)
    assert gone == {
        0: 'overlaps riddles.txt item 1 (instruction contains the whole item "what is the boiling point of water")'
    }
    assert list(removed(Decontaminate(benchmarks=[bench], min_words=2), t)) == [0, 3]
    assert list(removed(Decontaminate(benchmarks=[bench], min_words=8), t)) == []


def test_a_smaller_ngram_matches_shorter_runs(bench) -> None:
    t = table([("Riddle: " + " ".join(WORDS[3:11]), "?")])  # 8 words
    assert list(removed(Decontaminate(benchmarks=[bench]), t)) == []
    gone = removed(Decontaminate(benchmarks=[bench], ngram=8), t)
    assert gone[0].startswith("overlaps riddles.txt item 0 (instruction 8-gram ")


def test_instruction_and_response_are_compared_separately(bench) -> None:
    t = table(
        [
            (ITEM, "Nine."),
            ("How many sheep are left?", "The riddle goes: " + ITEM),
            # the halves of a 13-gram split across the two sides do not make one
            (" ".join(WORDS[:7]), " ".join(WORDS[7:14])),
        ]
    )
    gone = removed(Decontaminate(benchmarks=[bench]), t)
    assert sorted(gone) == [0, 1]
    assert "(instruction 13-gram" in gone[0] and "(response 13-gram" in gone[1]
    assert list(removed(Decontaminate(benchmarks=[bench], on=["instruction"]), t)) == [0]
    assert list(removed(Decontaminate(benchmarks=[bench], on=["response"]), t)) == [1]
    assert list(removed(Decontaminate(benchmarks=[bench], on=["conversation"]), t)) == [0, 1, 2]


def test_an_alpaca_benchmark_counts_instruction_input_and_output(tmp_path) -> None:
    path = write_jsonl(
        tmp_path / "mini_eval.jsonl",
        [
            {"instruction": "Name a colour.", "input": "", "output": "Blue."},
            {
                "instruction": "Summarize the passage.",
                "input": "The committee met on Tuesday and voted to extend the library hours through the summer.",
                "output": "The committee voted on Tuesday to keep the library open longer over the summer months.",
            },
        ],
    )
    t = table(
        [
            ("Summarize: the committee met on Tuesday and voted to extend the library hours through June.", "Done."),
            ("What happened?", "The committee voted on Tuesday to keep the library open longer over the summer."),
            ("Name a colour.", "Red."),
        ]
    )
    gone = removed(Decontaminate(benchmarks=[path]), t)
    assert sorted(gone) == [0, 1]
    assert gone[0].startswith("overlaps mini_eval.jsonl item 1 (instruction 13-gram ")
    assert gone[1].startswith("overlaps mini_eval.jsonl item 1 (response 13-gram ")


def test_minhash_mode_catches_a_paraphrase_and_keeps_the_rest(tmp_path) -> None:
    path = write_lines(
        tmp_path / "prompts.txt",
        [
            "Explain why the sky appears blue during the day but red and orange at sunset.",
            "Write a short story about a robot who learns to paint landscapes.",
        ],
    )
    t = table(
        [
            ("Explain why the sky looks blue during the day, but red and orange at sunset?", "Rayleigh."),
            ("Write a limerick about a cat who hates Mondays.", "There once was ..."),
            ("Please write a short story about a robot that learns to paint landscapes", "Once ..."),
        ]
    )
    assert list(removed(Decontaminate(benchmarks=[path]), t)) == []  # no 13-gram survives the edits
    stage = Decontaminate(benchmarks=[path], mode="minhash", threshold=0.6)
    gone = removed(stage, t)
    assert sorted(gone) == [0, 2]
    assert gone[0].startswith("near-duplicate of prompts.txt item 0 (J≈")
    assert gone[0].endswith(", instruction)")
    assert gone[2].startswith("near-duplicate of prompts.txt item 1 (J≈")
    assert float(gone[0].split("J≈")[1][:4]) >= 0.6


def test_counts_are_per_benchmark(tmp_path, bench) -> None:
    other = write_lines(tmp_path / "trivia.txt", ["Which planet in our solar system has the most moons"])
    t = table(
        [
            (ITEM, "?"),
            ("Quiz: which planet in our solar system has the most moons?", "Saturn."),
            ("What is the boiling point of water?", "100 °C."),
            ("Hello", "Hi"),
        ]
    )
    out = Decontaminate(benchmarks=[bench, other]).run(t)
    assert out.counts == {"overlaps riddles.txt": 2, "overlaps trivia.txt": 1}
    out = Decontaminate(benchmarks=[bench, other], mode="minhash", threshold=0.5).run(t)
    assert out.counts["near-duplicate of trivia.txt"] == 1


def test_the_first_listed_benchmark_is_named_when_several_overlap(tmp_path, bench) -> None:
    copy = write_lines(tmp_path / "copy.txt", [ITEM])
    t = table([(ITEM, "?")])
    assert removed(Decontaminate(benchmarks=[copy, bench]), t)[0].startswith("overlaps copy.txt item 0 ")
    assert removed(Decontaminate(benchmarks=[bench, copy]), t)[0].startswith("overlaps riddles.txt item 0 ")


def test_same_basename_in_two_folders_is_named_by_path(tmp_path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write_lines(tmp_path / "a" / "test.txt", ["nothing to see here at all today"])
    second = write_lines(tmp_path / "b" / "test.txt", [ITEM])
    gone = removed(Decontaminate(benchmarks=[first, second]), table([(ITEM, "?")]))
    assert gone[0].startswith(f"overlaps {second} item 0 ")


def test_a_glob_of_benchmarks_names_each_file(tmp_path) -> None:
    (tmp_path / "evals").mkdir()
    write_jsonl(tmp_path / "evals" / "a.jsonl", [{"text": "nothing to see here at all today"}])
    write_jsonl(tmp_path / "evals" / "b.jsonl", [{"text": "unrelated words only"}, {"text": ITEM}])
    t = table([("?", ITEM), ("Nothing to see here at all today, really.", "ok"), ("Hi", "Hello")])
    out = Decontaminate(benchmarks=[str(tmp_path / "evals" / "*.jsonl")]).run(t)
    assert out.rejected.column("reason").to_pylist()[0].startswith("overlaps b.jsonl item 1 (response 13-gram")
    assert out.counts == {"overlaps a.jsonl": 1, "overlaps b.jsonl": 1}


def test_missing_or_unreadable_benchmark_is_one_clear_error(tmp_path, bench) -> None:
    t = table([("Hi", "Hello")])
    missing = str(tmp_path / "nope.jsonl")
    stage = Decontaminate(benchmarks=[bench, missing])
    with pytest.raises(InputError, match=r"benchmark file .*nope\.jsonl not found"):
        stage.run(t)
    with pytest.raises(InputError, match=r"nope\.jsonl"):
        stage.external_fingerprint()
    with pytest.raises(InputError, match=r"benchmark file .*nope\.txt not found"):
        Decontaminate(benchmarks=[str(tmp_path / "nope.txt")]).run(t)
    odd = write_jsonl(tmp_path / "odd.jsonl", [{"foo": 1}])
    with pytest.raises(InputError, match=r"cannot read benchmark file .*odd\.jsonl: .*needs a \.txt name"):
        Decontaminate(benchmarks=[odd]).run(t)
    binary = tmp_path / "bad.txt"
    binary.write_bytes(b"\xff\xfe\xfa not utf-8")
    with pytest.raises(InputError, match=r"cannot read benchmark file .*bad\.txt"):
        Decontaminate(benchmarks=[str(binary)]).run(t)


def test_no_benchmarks_keeps_everything(sample_rows) -> None:
    out = Decontaminate().run(sample_rows)
    assert out.kept.num_rows == sample_rows.num_rows
    assert Decontaminate().external_fingerprint() is None


def test_fingerprint_follows_the_benchmark_bytes(tmp_path) -> None:
    path = write_lines(tmp_path / "b.txt", ["one two three four"])
    before = Decontaminate(benchmarks=[path]).external_fingerprint()
    assert Decontaminate(benchmarks=[path]).external_fingerprint() == before
    write_lines(tmp_path / "b.txt", ["one two three five"])
    assert Decontaminate(benchmarks=[path]).external_fingerprint() != before


def test_config_round_trips_and_checks(bench) -> None:
    stage = from_config({"decontaminate": {"benchmarks": [bench], "on": ["response"], "ngram": 8}})
    assert stage == Decontaminate(benchmarks=[bench], on=["response"], ngram=8)
    assert from_config(stage.to_config()) == stage
    with pytest.raises(ConfigError, match="ngram must be at least 1"):
        Decontaminate(ngram=0)
    with pytest.raises(ConfigError, match="threshold"):
        Decontaminate(threshold=1.5)
    with pytest.raises(ConfigError, match="'on'"):
        from_config({"decontaminate": {"on": ["answer"]}})
    with pytest.raises(ConfigError, match="on must name"):
        Decontaminate(on=[])


@pytest.mark.parametrize("mode", ["ngram", "minhash"])
def test_same_output_for_any_batch_size_and_worker_count(tmp_path, bench, mode) -> None:
    rows = [(f"Question {i}: " + (ITEM if i % 3 == 0 else "tell me about sheep"), "ok") for i in range(12)]
    rows += [("What is the boiling point of water?", "100")] * 2
    stage = Decontaminate(benchmarks=[bench], mode=mode, threshold=0.6)
    results = []
    for i, (size, workers) in enumerate([(1000, 1), (1, 1), (4, 2)]):
        kept, rejected, out = engine_util.run(table(rows), [stage], tmp_path / str(i), size, workers)
        results.append((kept, rejected))
        assert out.stats[1].reasons == {("overlaps" if mode == "ngram" else "near-duplicate of") + " riddles.txt": 6}
    for kept, rejected in results[1:]:
        assert kept.equals(results[0][0])
        assert rejected.equals(results[0][1])


def test_pipeline_run_on_a_dataframe(bench) -> None:
    df = pd.DataFrame(
        [
            {"instruction": ITEM, "input": "", "output": "Nine."},
            {"instruction": "Name a prime number.", "input": "", "output": "7"},
        ]
    )
    result = wn.Pipeline(stages=[Decontaminate(benchmarks=[bench])]).run(df, output=None, progress=False)
    assert len(result.data) == 1
    assert result.data["messages"].iloc[0][0]["content"] == "Name a prime number."
    assert result.stats[-1].reasons == {"overlaps riddles.txt": 1}
    assert result.rejected()["reason"].iloc[0].startswith("overlaps riddles.txt item 0 ")


@needs_shared
def test_mt_bench_prompts_are_removed_from_real_rows(sample_rows) -> None:
    mtbench = SHARED_DATA / "fastchat_mtbench" / "question.jsonl"
    first = json.loads(mtbench.read_text(encoding="utf-8").splitlines()[4])
    question = first["turns"][0]
    rows = [tuple(m["content"] for m in r) for r in sample_rows.column("messages").to_pylist()]
    t = table([*rows, (question, "Here is my answer.")])
    stage = Decontaminate(benchmarks=[str(mtbench)])
    out = stage.run(t)
    assert out.rejected.column("source_index").to_pylist() == [len(rows)]
    reason = out.rejected.column("reason")[0].as_py()
    assert reason.startswith("overlaps question.jsonl item 4 (instruction ")
    assert out.kept.num_rows == len(rows)
    assert len(stage.external_fingerprint() or "") == 64
