"""pruner=width: hidden channels, heads and FFN neurons removed by importance; shapes consistent, the
pruned model trains, reloads with load_pruned and exports to ONNX that computes what torch computes."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from distilkit.errors import ConfigError
from distilkit.export.onnx import export_onnx, ort_logits, ort_session
from distilkit.prune import WidthPruner, load_pruned
from distilkit.prune.width import hidden_importance


def tiny_bert(seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, num_labels=2)
    return BertForSequenceClassification(config).eval()


def batch():
    ids = torch.randint(1, 100, (3, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[0, 7:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def test_width_pruning_shapes_reload_and_onnx(tmp_path):
    model = tiny_bert()
    weak = 5  # a channel nothing reads and every LayerNorm zeroes: it must go first
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight[weak] = 0
                module.bias[weak] = 0
    assert int(hidden_importance(model).argmin()) == weak
    kept_word = model.bert.embeddings.word_embeddings.weight.detach().clone()
    WidthPruner(hidden=0.25, heads=0.5, ffn=0.5).prepare(model)
    assert model.config.hidden_size == 24
    emb = model.bert.embeddings
    assert emb.word_embeddings.weight.shape == (100, 24) == (100, emb.position_embeddings.weight.shape[1])
    # the kept columns of the word table are the original ones, the weak channel is not among them
    cols = [j for j in range(32) if any(torch.equal(kept_word[:, j], emb.word_embeddings.weight[:, k]) for k in range(24))]
    assert len(cols) == 24 and weak not in cols
    heads = [layer.attention.self.num_attention_heads for layer in model.bert.encoder.layer]
    assert sum(heads) == 4
    for layer, h in zip(model.bert.encoder.layer, heads):
        a = layer.attention
        assert a.self.query.in_features == a.output.dense.out_features == layer.intermediate.dense.in_features == 24
        assert a.self.query.out_features == a.output.dense.in_features == h * 8  # head size unchanged
        assert layer.intermediate.dense.out_features == layer.output.dense.in_features == 32
        assert layer.output.dense.out_features == layer.output.LayerNorm.weight.numel() == 24
    assert model.bert.pooler.dense.weight.shape == (24, 24) and model.classifier.in_features == 24
    # it trains
    model.train()
    out = model(**batch(), labels=torch.tensor([0, 1, 0]))
    out.loss.backward()
    assert model.bert.embeddings.word_embeddings.weight.grad.shape == (100, 24)
    model.eval()
    with torch.no_grad():
        expected = model(**batch()).logits
    model.save_pretrained(tmp_path / "saved")
    with torch.no_grad():
        assert torch.equal(load_pruned(tmp_path / "saved")(**batch()).logits, expected)
    path = export_onnx(model, tmp_path / "width.onnx", seq_len=12)
    got = ort_logits(ort_session(path), **batch())
    assert abs(got - expected.numpy()).max() < 1e-5


@pytest.mark.parametrize("key, kwargs", [("hidden", {"hidden": 1.0}), ("ffn", {"ffn": -0.1}), ("heads", {"heads": 0.99})])
def test_width_bad_fractions(key, kwargs):
    with pytest.raises(ConfigError, match=f"^{key}:"):
        WidthPruner(**{"hidden": 0.0, "ffn": 0.0, **kwargs}).prepare(tiny_bert())


def units_weights_cannot_see() -> BertForSequenceClassification:
    """A tiny BERT with one hidden channel, one head per layer and one FFN neuron per layer that the data-free
    weight scores rank last but that produce large activations on any input: a LayerNorm channel with gain 0 and
    bias 5 that nothing reads, a head with value bias 5 whose output projection is zero, a neuron with input bias 5
    (|gelu| = 5) and a tiny output weight. Their parameters carry the marker value 5 to find them after pruning."""
    model = tiny_bert()
    channel, head, neuron, size = 3, 2, 7, 8  # head size 8: 32 hidden / 4 heads
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight[channel], module.bias[channel] = 0.0, 5.0
        for layer in model.bert.encoder.layer:
            attn = layer.attention
            for linear in (attn.self.query, attn.self.key, attn.self.value, layer.intermediate.dense):
                linear.weight[:, channel] = 0.0
            attn.self.value.bias[head * size:(head + 1) * size] = 5.0
            attn.output.dense.weight[:, head * size:(head + 1) * size] = 0.0
            layer.intermediate.dense.weight[neuron], layer.intermediate.dense.bias[neuron] = 0.0, 5.0
            layer.output.dense.weight[:, neuron] = 1e-4
        model.bert.pooler.dense.weight[:, channel] = 0.0
    return model


def kept_markers(model) -> tuple[bool, list[bool], list[bool]]:
    """Whether the marked hidden channel, and per layer the marked head and neuron, survived pruning."""
    layers = model.bert.encoder.layer
    return (bool((model.bert.embeddings.LayerNorm.bias == 5.0).any()),
            [bool((layer.attention.self.value.bias == 5.0).any()) for layer in layers],
            [bool((layer.intermediate.dense.bias == 5.0).any()) for layer in layers])


@pytest.mark.parametrize("importance", ["weight", "activation"])
def test_activation_importance_keeps_the_units_with_large_activations(importance):
    from types import SimpleNamespace

    model = units_weights_cannot_see()
    ids = torch.randint(1, 100, (40, 12), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    mask[::4, 6:] = 0
    data = SimpleNamespace(inputs=lambda split: {"input_ids": ids, "attention_mask": mask} if split == "train" else None)
    pruner = WidthPruner(hidden=0.5, heads=0.5, ffn=0.5, importance=importance, calibration_rows=32)
    pruner.calibrate(model, data)
    pruner.prepare(model)
    assert model.config.hidden_size == 16
    expected = importance == "activation"  # the weight scores rank the marked units last: removed
    assert kept_markers(model) == (expected, [expected] * 2, [expected] * 2)
    assert pruner.scores is None  # the calibration served this prepare only


def test_width_importance_and_calibration_rows_are_checked():
    with pytest.raises(ConfigError, match="importance.*weight.*activation"):
        WidthPruner(importance="gradient")
    with pytest.raises(ConfigError, match="calibration_rows"):
        WidthPruner(calibration_rows=0)
