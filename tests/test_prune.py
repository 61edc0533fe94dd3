"""Pruners: cubic schedule, exact magnitude sparsity, structured head/FFN removal, save/load, bad input.

The same pruners in real training runs: tests/test_compress_runs.py."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

from distilkit.errors import ConfigError
from distilkit.prune import FFNPruner, HeadPruner, MagnitudePruner, NoPruner, count_nonzero, load_pruned, sparse_size_mb
from distilkit.prune.schedule import cubic_sparsity

HEAD = 8  # hidden 32 / 4 heads


def tiny_bert(attn: str = "sdpa", seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, num_labels=2)
    return BertForSequenceClassification._from_config(config, attn_implementation=attn).eval()


def batch() -> dict[str, torch.Tensor]:
    ids = torch.randint(1, 100, (3, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[0, 7:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def logits(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch()).logits


def encoder_weights(model: nn.Module) -> list[nn.Linear]:
    return [m for n, m in model.named_modules() if isinstance(m, nn.Linear) and ".encoder." in n]


def masked(model: nn.Module) -> int:
    return sum(int((m.weight_mask == 0).sum()) for m in encoder_weights(model))


# --- magnitude ---------------------------------------------------------------------------------

def test_cubic_schedule_values():
    args = dict(initial=0.1, final=0.5, start=0.2, end=0.6)
    assert cubic_sparsity(0.0, **args) == pytest.approx(0.1)
    assert cubic_sparsity(0.2, **args) == pytest.approx(0.1)
    assert cubic_sparsity(0.3, **args) == pytest.approx(0.5 - 0.4 * 0.75**3)  # 0.33125
    assert cubic_sparsity(0.4, **args) == pytest.approx(0.45)
    assert cubic_sparsity(0.6, **args) == pytest.approx(0.5)
    assert cubic_sparsity(1.0, **args) == pytest.approx(0.5)


def test_magnitude_exact_sparsity_along_schedule():
    model, pruner = tiny_bert(), MagnitudePruner(sparsity=0.5, initial_sparsity=0.1, start=0.2, end=0.6)
    nonzero = count_nonzero(model)  # (biases start at zero)
    untouched = {k: v.clone() for k, v in model.state_dict().items() if ".encoder." not in k or "dense.bias" in k}
    pruner.prepare(model)
    linears = encoder_weights(model)
    total = sum(m.weight.numel() for m in linears)
    assert len(linears) == 12 and total == 2 * (4 * 32 * 32 + 2 * 32 * 64)
    assert masked(model) == round(0.1 * total)
    # the masked weights are the globally smallest
    magnitudes = torch.cat([m.weight_orig.abs().flatten() for m in linears])
    masks = torch.cat([m.weight_mask.flatten() for m in linears])
    assert magnitudes[masks == 0].max() <= magnitudes[masks == 1].min()
    previous = masks
    for fraction, expected in [(0.1, 0.1), (0.3, 0.33125), (0.4, 0.45), (0.7, 0.5), (1.0, 0.5)]:
        pruner.on_train_progress(model, fraction)
        assert masked(model) == round(expected * total), fraction
        current = torch.cat([m.weight_mask.flatten() for m in linears])
        assert torch.all(current <= previous)  # pruned weights never come back
        previous = current
    assert count_nonzero(model) == nonzero - round(0.5 * total)
    pruner.convert(model)
    assert not any(hasattr(m, "weight_mask") or hasattr(m, "weight_orig") for m in linears)
    assert sum(int((m.weight == 0).sum()) for m in linears) == round(0.5 * total)
    assert count_nonzero(model) == nonzero - round(0.5 * total)
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in untouched.items())  # embeddings, pooler, classifier, biases
    assert logits(model).isfinite().all()


def test_masked_weights_get_no_gradient_and_stay_zero():
    model, pruner = tiny_bert(), MagnitudePruner(sparsity=0.6, initial_sparsity=0.6)
    pruner.prepare(model)
    model(**batch()).logits.sum().backward()
    query = model.bert.encoder.layer[0].attention.self.query
    assert torch.all(query.weight_orig.grad[query.weight_mask == 0] == 0)
    assert torch.all(query.weight[query.weight_mask == 0] == 0)


def test_sparse_size_counts_csr_where_smaller():
    layer = nn.Linear(8, 4)  # 4x8 fp32 weight + 4 bias
    with torch.no_grad():
        layer.weight.view(-1)[:24] = 0  # 8 non-zeros left
    csr = 8 * (4 + 2) + (4 + 1) * 4  # values fp32, uint16 column indices, int32 row pointers
    assert sparse_size_mb(layer) == pytest.approx((csr + 4 * 4) / 2**20)
    dense = nn.Linear(8, 4)
    assert sparse_size_mb(dense) == pytest.approx((32 * 4 + 4 * 4) / 2**20)  # CSR would be larger
    assert count_nonzero(layer) == 8 + int(torch.count_nonzero(layer.bias))


def test_none_pruner():
    model = tiny_bert()
    pruner = NoPruner()
    assert pruner.prepare(model) is model and pruner.convert(model) is model


# --- heads -------------------------------------------------------------------------------------

@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_head_pruning_removes_zero_output_heads_exactly(attn, tmp_path):
    model = tiny_bert(attn)
    with torch.no_grad():  # heads whose output projection columns are zero contribute nothing
        model.bert.encoder.layer[0].attention.output.dense.weight[:, 1 * HEAD:2 * HEAD] = 0
        model.bert.encoder.layer[1].attention.output.dense.weight[:, 3 * HEAD:4 * HEAD] = 0
    before = logits(model)
    HeadPruner(amount=0.25).prepare(model)  # 2 of 8 heads: exactly the two silent ones
    for layer in model.bert.encoder.layer:
        assert layer.attention.self.num_attention_heads == 3
        assert layer.attention.self.query.weight.shape == (3 * HEAD, 32)
        assert layer.attention.self.value.out_features == 3 * HEAD
        assert layer.attention.output.dense.weight.shape == (32, 3 * HEAD)
    torch.testing.assert_close(logits(model), before, rtol=0, atol=1e-6)
    assert model.config.distilkit_structure == {"num_heads": [3, 3], "intermediate_size": [64, 64], "head_size": HEAD, "hidden_size": 32}
    model.save_pretrained(tmp_path)
    reloaded = load_pruned(tmp_path, attn_implementation=attn)
    assert reloaded.config._attn_implementation == attn
    torch.testing.assert_close(logits(reloaded), logits(model), rtol=0, atol=0)


def test_head_pruning_ranks_globally_and_keeps_one_per_layer():
    model = tiny_bert()
    with torch.no_grad():  # layer 1: three silent heads; layer 0: none
        model.bert.encoder.layer[1].attention.output.dense.weight[:, : 3 * HEAD] = 0
    HeadPruner(amount=0.5).prepare(model)  # 4 of 8 heads
    counts = [layer.attention.self.num_attention_heads for layer in model.bert.encoder.layer]
    assert counts == [3, 1] and logits(model).isfinite().all()


def test_head_pruning_runs_after_pruning_to_one_head():
    model = tiny_bert()
    HeadPruner(amount=0.75).prepare(model)  # 6 of 8: the most one can remove with 2 layers
    assert [layer.attention.self.num_attention_heads for layer in model.bert.encoder.layer] == [1, 1]
    assert logits(model).isfinite().all()


def test_too_many_heads():
    with pytest.raises(ConfigError) as err:
        HeadPruner(amount=0.9).prepare(tiny_bert())  # 7 of 8 heads would empty a layer
    assert err.value.key == "amount" and "at least one head" in err.value.message


# --- FFN ---------------------------------------------------------------------------------------

def test_ffn_pruning_removes_zero_output_neurons_exactly(tmp_path):
    model = tiny_bert()
    silent = [torch.arange(0, 16), torch.arange(24, 40)]
    with torch.no_grad():  # neurons whose output weights are zero contribute nothing
        for layer, neurons in zip(model.bert.encoder.layer, silent):
            layer.output.dense.weight[:, neurons] = 0
    before = logits(model)
    FFNPruner(amount=0.25).prepare(model)  # 16 of 64 per layer: exactly the silent ones
    for layer in model.bert.encoder.layer:
        assert layer.intermediate.dense.weight.shape == (48, 32)
        assert layer.output.dense.weight.shape == (32, 48)
        assert torch.count_nonzero(layer.output.dense.weight) == 32 * 48
    torch.testing.assert_close(logits(model), before, rtol=0, atol=1e-6)
    assert model.config.intermediate_size == 48
    model.save_pretrained(tmp_path)  # uniform width: plain from_pretrained reloads it
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(logits(reloaded), logits(model), rtol=0, atol=0)


def test_ffn_amount_removing_every_neuron():
    model = tiny_bert()
    with pytest.raises(ConfigError) as err:
        FFNPruner(amount=0.995).prepare(model)  # round(0.995 * 64) = 64
    assert err.value.key == "amount"


# --- bad input and config files ----------------------------------------------------------------

@pytest.mark.parametrize("cls, key", [(MagnitudePruner, "sparsity"), (MagnitudePruner, "initial_sparsity"),
                                      (MagnitudePruner, "start"), (MagnitudePruner, "end"),
                                      (HeadPruner, "amount"), (FFNPruner, "amount")])
@pytest.mark.parametrize("value", [1.0, 1.2, -0.1, "0.5"])
def test_fraction_outside_unit_interval(cls, key, value):
    with pytest.raises(ConfigError) as err:
        cls(**{key: value})
    assert err.value.key == key


def test_schedule_order():
    with pytest.raises(ConfigError) as err:
        MagnitudePruner(start=0.5, end=0.5)
    assert err.value.key == "end"
    with pytest.raises(ConfigError) as err:
        MagnitudePruner(sparsity=0.3, initial_sparsity=0.4)
    assert err.value.key == "initial_sparsity"


@pytest.mark.parametrize("pruner", [MagnitudePruner(), HeadPruner(), FFNPruner()])
def test_model_without_bert_encoder(pruner):
    with pytest.raises(ConfigError) as err:
        pruner.prepare(nn.Sequential(nn.Linear(4, 4)))
    assert err.value.key == "pruner" and "pruner=none" in err.value.message
