"""Corpora for the train tests: the bundled sample data, and a synthetic one a tiny model learns fast."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

try:  # the train extra: without it these tests are not collected (winnow train says what to install)
    import torch  # noqa: F401
    import transformers  # noqa: F401
except ImportError:
    collect_ignore_glob = ["test_*.py"]

import winnow as wn
from winnow.chat_template import ChatTemplate
from winnow.corpus import Corpus

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_data"

COLORS = ["red", "green", "blue", "yellow", "black", "white", "orange", "purple"]
THINGS = ["apple", "car", "house", "bird", "cup", "shirt", "door", "book", "lamp", "chair", "ball", "boat"]


def color_rows(n: int = 400, seed: int = 0) -> list[dict[str, Any]]:
    """Single-turn rows with a learnable answer: the color is stated in the question and the
    answer repeats it in a fixed frame, so a 2-layer model learns most of it in 40 steps."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        color, thing = rng.choice(COLORS), rng.choice(THINGS)
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": f"What color is the {thing}? It is {color}."},
                    {"role": "assistant", "content": f"The {thing} is {color}."},
                ]
            }
        )
    return rows


@pytest.fixture(scope="session")
def sample_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sample_data/ (all five files, 340 rows, no stages) as a corpus with 10% validation."""
    out = tmp_path_factory.mktemp("corpora") / "sample"
    inputs = [str(p) for p in sorted(SAMPLE.iterdir()) if p.suffix in (".jsonl", ".json", ".csv")]
    wn.Pipeline(inputs=inputs, stages=[], output=out, split={"validation": 0.1}).run(progress=False)
    return out


@pytest.fixture(scope="session")
def color_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpora") / "colors"
    wn.Pipeline(inputs=[color_rows()], stages=[], output=out, split={"validation": 0.1}).run(progress=False)
    return out


def tiny_setup(corpus: Path, template: str = "chatml", max_len: int = 4096, vocab: int = 1024) -> tuple[Any, ...]:
    """(tokenizer, template, encoder, train table) as ``--model tiny`` builds them."""
    from winnow.training import data as D
    from winnow.training import model as M

    table = Corpus(corpus).load(split="train", format="arrow")
    base = M.template_for(template)
    texts = []
    for messages, meta in zip(table.column("messages").to_pylist(), table.column("meta").to_pylist()):
        try:
            texts.append(base.render(D.prepare_messages(messages, meta)))
        except Exception:
            continue
    tokenizer = M.build_tiny_tokenizer(texts, base, vocab)
    tpl = ChatTemplate(base.source, name=template, bos_token=tokenizer.bos_token, eos_token=tokenizer.eos_token)
    return tokenizer, tpl, D.Encoder(tokenizer, tpl, max_len), table
