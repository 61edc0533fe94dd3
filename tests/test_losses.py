"""Loss values against hand-computed formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import BertConfig

from distilkit.errors import ConfigError
from distilkit.losses import CrossEntropy, DistilBertLoss, IntermediateLoss, KDLoss, Outputs
from distilkit.losses.intermediate import attention_kl, uniform_layer_map

torch.manual_seed(0)
LABELS = torch.tensor([0, 2, 1, 1])
S = torch.randn(4, 3)
T_ = torch.randn(4, 3)


def hand_kl(p_logits, q_logits, T):
    """KL(softmax(p/T) || softmax(q/T)) summed over classes, averaged over rows, written out by hand."""
    total = 0.0
    for p_row, q_row in zip(p_logits.tolist(), q_logits.tolist()):
        p = [math.exp(x / T) for x in p_row]
        q = [math.exp(x / T) for x in q_row]
        p = [x / sum(p) for x in p]
        q = [x / sum(q) for x in q]
        total += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    return total / len(p_logits)


def test_kd_zero_for_equal_logits():
    out = KDLoss(T=3.0, alpha=1.0)(Outputs(S), Outputs(S.clone()), LABELS)
    assert out["kd"].item() == pytest.approx(0.0, abs=1e-6)
    assert out["loss"].item() == pytest.approx(0.0, abs=1e-6)


def test_kd_alpha_zero_is_ce():
    out = KDLoss(T=4.0, alpha=0.0)(Outputs(S), Outputs(T_), LABELS)
    assert out["loss"].item() == pytest.approx(F.cross_entropy(S, LABELS).item(), rel=1e-6)
    assert out["loss"].item() == pytest.approx(CrossEntropy()(Outputs(S), None, LABELS)["loss"].item(), rel=1e-6)


@pytest.mark.parametrize("T", [1.0, 2.0, 4.0, 8.0])
def test_kd_matches_hand_formula_with_T_squared(T):
    alpha = 0.3
    out = KDLoss(T=T, alpha=alpha)(Outputs(S), Outputs(T_), LABELS)
    kl = hand_kl(T_, S, T)
    assert out["kd"].item() == pytest.approx(T * T * kl, rel=1e-5)
    ce = F.cross_entropy(S, LABELS).item()
    assert out["loss"].item() == pytest.approx(alpha * T * T * kl + (1 - alpha) * ce, rel=1e-5)


def test_distilbert_cosine_and_weights():
    h_s = torch.randn(2, 5, 8)
    h_t = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    loss = DistilBertLoss(T=2.0, kd_weight=0.5, ce_weight=0.25, cos_weight=2.0)
    out = loss(Outputs(S[:2], (h_s,)), Outputs(T_[:2], (h_t,)), LABELS[:2], mask)
    cos = [F.cosine_similarity(h_s[b, i], h_t[b, i], dim=0).item() for b in range(2) for i in range(5) if mask[b, i]]
    expected_cos = sum(1 - c for c in cos) / len(cos)
    assert out["cos"].item() == pytest.approx(expected_cos, rel=1e-5)
    expected = 0.5 * 4 * hand_kl(T_[:2], S[:2], 2.0) + 0.25 * F.cross_entropy(S[:2], LABELS[:2]).item() + 2.0 * expected_cos
    assert out["loss"].item() == pytest.approx(expected, rel=1e-5)
    same = loss(Outputs(S[:2], (h_t,)), Outputs(T_[:2], (h_t,)), LABELS[:2], mask)
    assert same["cos"].item() == pytest.approx(0.0, abs=1e-6)


def test_distilbert_rejects_different_widths():
    with pytest.raises(ConfigError, match="cos_weight"):
        DistilBertLoss().bind(BertConfig(hidden_size=32, num_attention_heads=2), BertConfig(hidden_size=64, num_attention_heads=2))


def _cfg(layers, width, heads=2):
    return BertConfig(num_hidden_layers=layers, hidden_size=width, num_attention_heads=heads)


def _attn(layers, heads, batch=2, seq=4):
    return tuple(torch.softmax(torch.randn(batch, heads, seq, seq), -1) for _ in range(layers))


def test_intermediate_mse_without_projection_when_widths_equal():
    loss = IntermediateLoss(hidden_weight=1.0, attn_weight=0.0, alpha=0.0)
    loss.bind(_cfg(2, 8), _cfg(4, 8))
    assert len(loss.projections) == 0 and loss.layer_map == [2, 4]
    hs = tuple(torch.randn(2, 4, 8) for _ in range(3))
    ht = tuple(torch.randn(2, 4, 8) for _ in range(5))
    mask = torch.ones(2, 4, dtype=torch.long)
    out = loss(Outputs(S[:2], hs, _attn(2, 2)), Outputs(T_[:2], ht, _attn(4, 2)), LABELS[:2], mask)
    expected = sum(((hs[s] - ht[t]) ** 2).mean().item() for s, t in [(0, 0), (1, 2), (2, 4)])
    assert out["hidden"].item() == pytest.approx(expected, rel=1e-5)
    assert out["loss"].item() == pytest.approx(expected + F.cross_entropy(S[:2], LABELS[:2]).item(), rel=1e-5)


def test_intermediate_projection_only_when_widths_differ():
    loss = IntermediateLoss(attn_weight=0.0)
    loss.bind(_cfg(2, 8), _cfg(4, 16))
    assert len(loss.projections) == 3  # embeddings + 2 layers
    assert loss.projections[0].weight.shape == (16, 8)
    hs = tuple(torch.randn(2, 4, 8) for _ in range(3))
    ht = tuple(torch.randn(2, 4, 16) for _ in range(5))
    out = loss(Outputs(S[:2], hs, _attn(2, 2)), Outputs(T_[:2], ht, _attn(4, 2)), LABELS[:2], torch.ones(2, 4))
    expected = sum(((loss.projections[i](hs[s]) - ht[t]) ** 2).mean().item() for i, (s, t) in enumerate([(0, 0), (1, 2), (2, 4)]))
    assert out["hidden"].item() == pytest.approx(expected, rel=1e-5)


def test_intermediate_bound_again_keeps_or_rebuilds_projections():
    """bind runs again after the pruner's prepare: same widths keep the (possibly trained) projections, a pruned
    width rebuilds them for it, equal widths drop them."""
    loss = IntermediateLoss()
    loss.bind(_cfg(2, 8), _cfg(4, 16))
    first = loss.projections
    loss.bind(_cfg(2, 8), _cfg(4, 16))
    assert loss.projections is first
    loss.bind(_cfg(2, 6), _cfg(4, 16))
    assert [(p.in_features, p.out_features) for p in loss.projections] == [(6, 16)] * 3
    loss.bind(_cfg(2, 16), _cfg(4, 16))
    assert len(loss.projections) == 0


def test_attention_kl_by_hand_and_zero_for_equal_maps():
    a = torch.tensor([[[[0.5, 0.5], [0.9, 0.1]]]])  # [1, 1, 2, 2]
    b = torch.tensor([[[[0.25, 0.75], [0.5, 0.5]]]])
    mask = torch.tensor([[1, 1]])
    row0 = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    row1 = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    assert attention_kl(a, b, mask).item() == pytest.approx((row0 + row1) / 2, rel=1e-5)
    assert attention_kl(a, b, torch.tensor([[1, 0]])).item() == pytest.approx(row0, rel=1e-5)
    assert attention_kl(a, a, mask).item() == pytest.approx(0.0, abs=1e-6)


def test_uniform_layer_map_and_bad_map():
    assert uniform_layer_map(3, 6) == [2, 4, 6]
    assert uniform_layer_map(6, 12) == [2, 4, 6, 8, 10, 12]
    with pytest.raises(ConfigError, match="layer_map"):
        IntermediateLoss(layer_map=[1, 9]).bind(_cfg(2, 8), _cfg(4, 8))


@pytest.mark.parametrize("kwargs,key", [({"T": 0}, "T"), ({"T": -1}, "T"), ({"alpha": 1.5}, "alpha"), ({"alpha": -0.1}, "alpha")])
def test_bad_T_alpha(kwargs, key):
    with pytest.raises(ConfigError) as err:
        KDLoss(**kwargs)
    assert err.value.key == key


# --- intermediate on real models: padding, attention dropout ---------------------------------------

def _bert(layers: int, width: int, attention_dropout: float = 0.0, seed: int = 0):
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=60, hidden_size=width, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=2 * width, num_labels=3, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=attention_dropout)
    return BertForSequenceClassification(config)


def _module(student, teacher, loss):
    from functools import partial

    from distilkit.training.module import DistillModule

    module = DistillModule(student, loss, optimizer=partial(torch.optim.SGD, lr=0.1), teacher=teacher)
    module.setup("fit")
    return module


def _batch(pad: int = 0) -> dict[str, torch.Tensor]:
    ids = torch.randint(1, 60, (3, 7), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[0, 4:] = 0
    mask[2, 6:] = 0
    ids = ids * mask  # id 0 is the pad token
    if pad:
        ids = torch.cat([ids, torch.zeros(3, pad, dtype=ids.dtype)], 1)
        mask = torch.cat([mask, torch.zeros(3, pad, dtype=mask.dtype)], 1)
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 2, 1])}


def _parts(module, batch) -> dict[str, torch.Tensor]:
    student, teacher = module._run(module.student, batch), module._teacher(batch)
    return module.loss(student, teacher, batch["labels"], batch["attention_mask"])


@pytest.mark.parametrize("student_width", [16, 32])  # with and without the learned projection
def test_intermediate_loss_unchanged_by_extra_padding(student_width):
    loss = IntermediateLoss(hidden_weight=1.0, attn_weight=1.0, alpha=0.5)
    student, teacher = _bert(1, student_width, seed=1), _bert(2, 32)
    loss.bind(student.config, teacher.config)
    module = _module(student, teacher, loss).eval()
    with torch.no_grad():
        short, padded = _parts(module, _batch()), _parts(module, _batch(pad=5))
    assert short["hidden"] > 0 and short["attn"] > 0
    for name in ("hidden", "attn", "kd", "ce", "loss"):
        torch.testing.assert_close(padded[name], short[name], rtol=1e-5, atol=1e-6, msg=name)


def test_intermediate_uses_attention_before_dropout():
    """A student equal to the teacher, training with attention dropout 0.1: its attention maps (the
    softmax before dropout) equal the teacher's, so the KL is 0; dropout still acts on its forward."""
    teacher = _bert(1, 32, attention_dropout=0.1).eval()
    student = _bert(1, 32, attention_dropout=0.1)
    student.load_state_dict(teacher.state_dict())
    loss = IntermediateLoss(hidden_weight=1.0, attn_weight=1.0, alpha=0.5)
    loss.bind(student.config, teacher.config)
    module = _module(student, teacher, loss).train()
    assert module.student.training and not module.teacher.training
    batch = _batch()
    torch.manual_seed(0)
    out = module._run(module.student, batch)
    real = batch["attention_mask"].bool()
    rows = out.attentions[0].sum(-1).permute(0, 2, 1)[real]  # [real queries, heads]
    torch.testing.assert_close(rows, torch.ones_like(rows))  # after dropout, rows would not sum to 1
    assert module.student(**{k: batch[k] for k in ("input_ids", "attention_mask")}).logits.ne(out.logits).any()  # dropout is on
    parts = module.training_step(batch, 0)
    assert all(v.isfinite() for v in parts.values())
    torch.manual_seed(0)
    again = _parts(module, batch)
    assert again["attn"].item() == pytest.approx(0.0, abs=1e-6) and again["hidden"] > 0  # hidden: dropout moved them
    again["loss"].backward()
    grads = [p.grad for p in module.student.parameters() if p.grad is not None]
    assert grads and all(g.isfinite().all() for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_attention_kernel_restored_after_fit():
    student, teacher = _bert(1, 16), _bert(2, 32)
    before = student.config._attn_implementation
    loss = IntermediateLoss()
    loss.bind(student.config, teacher.config)
    module = _module(student, teacher, loss)
    assert student.config._attn_implementation == teacher.config._attn_implementation != before
    module.on_fit_end()
    assert student.config._attn_implementation == before
