"""Packed rows must not see each other: packed logits equal each row's logits alone, and the
same packed sequence under a plain all-ones mask (what a leaking setup computes) differs."""

from __future__ import annotations

import pytest
import torch

from winnow.training import data as D
from winnow.training import model as M

from .conftest import tiny_setup


@pytest.fixture(scope="module")
def rows(sample_corpus):
    tokenizer, _, encoder, table = tiny_setup(sample_corpus)
    examples, _ = encoder.encode_table(table.slice(0, 40))
    return tokenizer, [e for e in examples if len(e) <= 120][:12]


def model_for(tokenizer, attn):
    return M.build_tiny_model(tokenizer, {}, max_len=512, attn=attn, seed=0).eval()


def alone(net, examples):
    with torch.no_grad():
        return [net(input_ids=torch.tensor([e.input_ids]), use_cache=False).logits[0] for e in examples]


def segments(logits_row, examples):
    out, at = [], 0
    for e in examples:
        out.append(logits_row[at : at + len(e)])
        at += len(e)
    return out


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("flatten", [False, True])
def test_packed_logits_equal_unpacked(rows, attn, flatten):
    tokenizer, examples = rows
    net = model_for(tokenizer, attn)
    units = D.make_units(examples, 256, packing=True)
    assert any(len(u) > 1 for u in units)  # something is actually packed
    batch = D.collate(units, tokenizer.pad_token_id, packed=True, flatten=flatten)
    with torch.no_grad():
        packed = net(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
    reference = dict(zip((id(e) for e in examples), alone(net, examples)))
    layout = [[e for u in units for e in u]] if flatten else units
    for r, unit in enumerate(layout):
        for e, got in zip(unit, segments(packed[r], unit)):
            torch.testing.assert_close(got, reference[id(e)], atol=1e-4, rtol=0)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_plain_mask_on_packed_rows_leaks(rows, attn):
    # The same packed input with a 2D all-ones mask is ordinary causal attention over the whole
    # sequence: later rows see earlier ones. If packing were not isolated, this is what the
    # model would compute, and it must differ from the rows alone.
    tokenizer, examples = rows
    net = model_for(tokenizer, attn)
    unit = examples[:3]
    batch = D.collate([unit], tokenizer.pad_token_id, packed=True)
    with torch.no_grad():
        leaky = net(
            input_ids=batch["input_ids"],
            position_ids=batch["position_ids"],
            attention_mask=torch.ones_like(batch["input_ids"]),
            use_cache=False,
        ).logits[0]
        isolated = net(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
    ref = alone(net, unit)
    got_leaky = segments(leaky, unit)
    got_isolated = segments(isolated, unit)
    torch.testing.assert_close(got_leaky[0], ref[0], atol=1e-4, rtol=0)  # the first row sees nothing before it
    for k in (1, 2):
        assert (got_leaky[k] - ref[k]).abs().max() > 1e-3
        torch.testing.assert_close(got_isolated[k], ref[k], atol=1e-4, rtol=0)


def test_a_kv_cache_disables_packing_isolation(rows):
    # transformers looks for packed rows only without a cache; use_cache defaults to True, so
    # the loop and check_packing pass use_cache=False. This pins that behaviour down.
    tokenizer, examples = rows
    net = model_for(tokenizer, "sdpa")
    unit = examples[:2]
    batch = D.collate([unit], tokenizer.pad_token_id, packed=True)
    with torch.no_grad():
        cached = net(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=True).logits[0]
    assert (segments(cached, unit)[1] - alone(net, unit)[1]).abs().max() > 1e-3


def test_check_packing_catches_a_leaking_model(rows):
    tokenizer, _ = rows
    net = model_for(tokenizer, "sdpa")
    assert M.check_packing(net, torch.device("cpu")) < 1e-4

    forward = net.forward

    def leaking(*args, **kwargs):  # a model that ignores the packing boundaries
        if kwargs.get("position_ids") is not None:
            kwargs["attention_mask"] = torch.ones_like(kwargs["input_ids"])
        return forward(*args, **kwargs)

    net.forward = leaking
    with pytest.raises(M.PackingLeakError, match="packing is not isolated"):
        M.check_packing(net, torch.device("cpu"))
