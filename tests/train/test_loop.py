"""The loop end to end on the tiny model: it learns, the checkpoint reloads and stops at EOS,
and everything a run writes is there."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch

from winnow.corpus import Corpus
from winnow.errors import ConfigError, MissingDependencyError
from winnow.training import TrainConfig, loop, train
from winnow.training import data as D


@pytest.fixture(scope="module")
def run(color_corpus, tmp_path_factory):
    """40 steps on the synthetic color corpus (360 train rows, batch 8, lr 3e-3)."""
    out = tmp_path_factory.mktemp("runs") / "colors"
    return train(color_corpus, model="tiny", output=out, steps=40, lr=3e-3, max_len=128, batch_size=8, progress=False)


def test_eval_loss_drops_by_more_than_30_percent(run):
    assert run.eval_loss_initial > 4.0  # about ln(vocab): it starts from nothing
    assert run.eval_loss_final < 0.7 * run.eval_loss_initial


def test_run_files_and_record(run, color_corpus):
    out = run.output
    for name in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json"):
        assert (out / name).is_file(), name
    assert (out / "loss.png").stat().st_size > 1000
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in metrics if "loss" in m]
    assert [m["step"] for m in steps] == list(range(1, 41))
    assert metrics[0] == {"step": 0, "eval_loss": run.eval_loss_initial}
    assert metrics[-1]["eval_loss"] == run.eval_loss_final
    assert all(m["lr"] > 0 and m["trained_tokens"] > 0 for m in steps)
    record = json.loads((out / "train_run.json").read_text())
    manifest = Corpus(color_corpus).manifest()
    assert record["status"] == "complete"
    assert record["corpus"] == {"path": str(color_corpus), "version": "v1", "fingerprint": manifest["fingerprint"]}
    assert record["config"]["steps"] == 40 and record["config"]["lr"] == 3e-3
    counts = record["counts"]["train"]
    assert counts["rows"] == manifest["counts"]["train"] == counts["used"]
    assert counts["dropped_too_long"] == counts["dropped_no_trainable"] == 0
    assert 0 < counts["trained_tokens"] < counts["total_tokens"]
    assert record["results"]["trained_tokens"] > 0 and record["results"]["tokens_per_second"] > 0


def test_checkpoint_reloads_with_identical_logits(run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run.output, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(run.output, local_files_only=True).eval()
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What color is the cup? It is blue."}], tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    assert ids[0].tolist() == run.tokenizer(text)["input_ids"]  # same tokenizer, BOS added once
    run.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, run.model(input_ids=ids).logits, atol=0, rtol=0)


def test_generate_stops_at_end_of_turn(run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run.output, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(run.output, local_files_only=True).eval()
    assert tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What color is the lamp? It is green."}],
        tokenize=False,
        add_generation_prompt=True,
    )
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    out = model.generate(ids, max_new_tokens=30, do_sample=False)[0, ids.shape[1] :].tolist()
    assert out[-1] == tokenizer.eos_token_id and len(out) < 30
    # 40 steps learn the answer's frame and when to stop (copying the right words takes longer)
    assert re.fullmatch(r"The \w+ is \w+\.", tokenizer.decode(out, skip_special_tokens=True).strip())


def test_per_token_normalization_across_accumulation(run, color_corpus):
    # one batch of 8 rows and the same rows as two micro-batches of 4 give the same gradient
    encoder = D.Encoder(run.tokenizer, _template(run), 128)
    rows = Corpus(color_corpus).load(split="train", format="arrow").slice(0, 8)
    examples, _ = encoder.encode_table(rows)
    examples[0] = D.Example(examples[0].input_ids * 3, examples[0].labels * 3)  # uneven token counts
    net = run.model
    net.train()
    off = torch.autocast("cpu", enabled=False)
    grads = []
    for batches in ([examples], [examples[:4], examples[4:]]):
        net.zero_grad()
        inputs = [D.collate(b, run.tokenizer.pad_token_id, packed=False) for b in batches]
        loop.accumulate(net, inputs, torch.device("cpu"), off)
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
    net.zero_grad()
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-4)


def _template(run):
    from winnow.chat_template import ChatTemplate

    return ChatTemplate(run.tokenizer.chat_template, bos_token=run.tokenizer.bos_token, eos_token="<|im_end|>")


def test_packed_run_and_finetune_from_the_saved_folder(run, color_corpus, tmp_path):
    packed = train(
        color_corpus, model=str(run.output), output=tmp_path / "ft", steps=3, packing=True, max_len=128, progress=False
    )
    record = packed.run
    assert record["packing"]["enabled"] and record["packing"]["check_max_abs_diff"] < 1e-4
    assert record["packing"]["fill"] > 0.8
    assert record["config"]["lr"] == 2e-5  # a folder is fine-tuned, not trained from scratch
    assert record["template"]["name"] == "the model's chat_template"
    assert record["model"]["added_tokens"] == []
    assert packed.eval_loss_final <= run.eval_loss_final + 0.05


def test_output_folder_is_protected(run, color_corpus, tmp_path):
    with pytest.raises(ConfigError, match="holds an earlier run"):
        train(color_corpus, model="tiny", output=run.output, steps=1, progress=False)
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not empty"):
        train(color_corpus, model="tiny", output=tmp_path, steps=1, progress=False, force=True)
    assert (tmp_path / "mine.txt").exists()


def test_config_from_dict():
    cfg = TrainConfig.from_dict({"model": "tiny", "steps": 5, "packing": True}, corpus="c", output="o")
    assert (cfg.corpus, cfg.steps, cfg.packing, cfg.learning_rate) == ("c", 5, True, 1e-3)
    with pytest.raises(ConfigError, match="did you mean 'max_len'") as e:
        TrainConfig.from_dict({"model": "tiny", "max_length": 5}, corpus="c", output="o")
    assert e.value.key == "max_length"
    with pytest.raises(ConfigError, match="train.steps must be an integer") as e:
        TrainConfig.from_dict({"model": "tiny", "steps": "5"}, corpus="c", output="o")
    assert e.value.key == "steps"
    with pytest.raises(ConfigError, match="needs output"):
        TrainConfig.from_dict({"model": "tiny"}, corpus="c")


def test_missing_torch_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch → ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'winnow\[train\]'"):
        train("corpus", model="tiny", output="out")


def test_import_winnow_does_not_import_torch():
    code = (
        "import sys, winnow; winnow.Pipeline, winnow.train, winnow.TrainConfig; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_train_is_the_function_and_its_package_stays_importable():
    code = (
        "import winnow as wn, winnow.training.loop as loop; "
        "assert wn.train is loop.train and callable(wn.train), wn.train"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
