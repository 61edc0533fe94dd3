"""Causal-LM losses against hand-computed formulas; the top-k teacher form against the full distribution."""

from __future__ import annotations

import math

import pytest
import torch

from distilkit.losses.causal_lm import (
    ForwardKL,
    GeneralizedJSD,
    ReverseKL,
    SkewKL,
    SparseTeacher,
    TokenCrossEntropy,
    bucket_log_probs,
    forward_kl,
    generalized_jsd,
    reverse_kl,
    sampled_teacher,
    skew_kl,
    sparse_teacher,
)
from distilkit.losses.outputs import Outputs

B, S, V = 2, 5, 11


def logits(seed: int) -> torch.Tensor:
    return torch.randn(B, S, V, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2


def hand_kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)


def probs(row: torch.Tensor, T: float = 1.0) -> list[float]:
    e = [math.exp(x / T) for x in row.tolist()]
    return [x / sum(e) for x in e]


def test_divergences_match_hand_formulas_per_token():
    zs, zt = logits(0), logits(1)
    log_p, log_q = torch.log_softmax(zt, -1), torch.log_softmax(zs, -1)
    p, q = probs(zt[1, 3]), probs(zs[1, 3])
    assert forward_kl(log_p, log_q)[1, 3].item() == pytest.approx(hand_kl(p, q), rel=1e-9)
    assert reverse_kl(log_p, log_q)[1, 3].item() == pytest.approx(hand_kl(q, p), rel=1e-9)
    beta = 0.3
    m = [beta * a + (1 - beta) * b for a, b in zip(p, q)]
    assert generalized_jsd(log_p, log_q, beta)[1, 3].item() == pytest.approx(beta * hand_kl(p, m) + (1 - beta) * hand_kl(q, m), rel=1e-9)
    lam = 0.25
    skew = [lam * a + (1 - lam) * b for a, b in zip(p, q)]
    assert skew_kl(log_p, log_q, lam)[1, 3].item() == pytest.approx(hand_kl(p, skew), rel=1e-9)


def test_equal_logits_give_zero_divergence():
    z = logits(2)
    for loss in (ForwardKL(alpha=1), ReverseKL(alpha=1), GeneralizedJSD(beta=0.5, alpha=1), SkewKL(lam=0.3, alpha=1)):
        mask = torch.ones(B, S)
        labels = torch.zeros(B, S, dtype=torch.long)
        assert loss(Outputs(z), Outputs(z), labels, mask)["loss"].item() == pytest.approx(0, abs=1e-6)
        assert loss(Outputs(z), sparse_teacher(z, 4), labels, mask)["loss"].item() == pytest.approx(0, abs=1e-6)


def test_jsd_limits_are_the_kls_gkd_defines():
    log_p, log_q = torch.log_softmax(logits(3), -1), torch.log_softmax(logits(4), -1)
    fkl, rkl = forward_kl(log_p, log_q), reverse_kl(log_p, log_q)
    assert torch.equal(generalized_jsd(log_p, log_q, 0.0), fkl)
    assert torch.equal(generalized_jsd(log_p, log_q, 1.0), rkl)
    eps = 1e-7  # JSD(beta)/beta -> KL(p||q) as beta -> 0, JSD(beta)/(1-beta) -> KL(q||p) as beta -> 1
    assert torch.allclose(generalized_jsd(log_p, log_q, eps) / eps, fkl, rtol=1e-4)
    assert torch.allclose(generalized_jsd(log_p, log_q, 1 - eps) / eps, rkl, rtol=1e-4)
    assert torch.equal(skew_kl(log_p, log_q, 0.0), fkl)
    assert torch.allclose(skew_kl(log_p, log_q, 1e-12), fkl)  # the general branch at lam -> 0


def test_temperature_and_alpha_mix_with_next_token_ce():
    zs, zt = logits(5), logits(6)
    labels = torch.randint(0, V, (B, S), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(B, S)
    T, alpha = 2.0, 0.7
    parts = ForwardKL(T=T, alpha=alpha)(Outputs(zs), Outputs(zt), labels, mask)
    kl = sum(hand_kl(probs(zt[b, s], T), probs(zs[b, s], T)) for b in range(B) for s in range(S)) / (B * S)
    ce = sum(-math.log(probs(zs[b, s])[labels[b, s]]) for b in range(B) for s in range(S)) / (B * S)
    assert parts["fkl"].item() == pytest.approx(T * T * kl, rel=1e-6)
    assert parts["ce"].item() == pytest.approx(ce, rel=1e-6)
    assert parts["loss"].item() == pytest.approx(alpha * T * T * kl + (1 - alpha) * ce, rel=1e-6)


@pytest.mark.parametrize("loss", [TokenCrossEntropy(), ForwardKL(), ReverseKL(), GeneralizedJSD(), SkewKL()], ids=lambda l: type(l).__name__)
def test_padding_is_ignored(loss):
    zs, zt = logits(7), logits(8)
    labels = torch.randint(0, V, (B, S), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(B, S)
    mask[1, 3:] = 0
    base = loss(Outputs(zs), sparse_teacher(zt, 3), labels, mask)["loss"]
    zs2, zt2, labels2 = zs.clone(), zt.clone(), labels.clone()
    zs2[1, 3:] += 100 * torch.randn(2, V, dtype=torch.float64)
    zt2[1, 3:] = -zt2[1, 3:]
    labels2[1, 3:] = 0
    assert loss(Outputs(zs2), sparse_teacher(zt2, 3), labels2, mask)["loss"].item() == pytest.approx(base.item(), rel=1e-9)
    # equal to the mean over the real tokens alone
    real = mask.bool()
    flat = loss(Outputs(zs[real][None]), sparse_teacher(zt[real][None], 3), labels[real][None], torch.ones(1, int(real.sum())))["loss"]
    assert flat.item() == pytest.approx(base.item(), rel=1e-9)


def test_top_k_form_reconstructs_top_k_and_remaining_mass_exactly():
    z = logits(9).float()
    k = 4
    sparse = sparse_teacher(z, k)
    log_p = torch.log_softmax(z, -1)
    top, idx = log_p.topk(k, -1)
    assert torch.equal(sparse.indices, idx) and torch.equal(sparse.logprobs, top)
    outside = log_p.exp().sum(-1) - top.exp().sum(-1)
    assert torch.allclose(sparse.rest.exp(), outside, rtol=1e-5)
    # k = V: the bucketed distributions are the full ones, so every divergence equals the full-vocabulary one
    zs = logits(10).float()
    full_p, full_q = bucket_log_probs(zs, z)
    sp_p, sp_q = bucket_log_probs(zs, sparse_teacher(z, V))
    assert torch.allclose(forward_kl(sp_p, sp_q), forward_kl(full_p, full_q), atol=1e-5)
    # k < V: the bucketed KL is at most the full one (data-processing inequality), and close for a peaked teacher
    sp_p, sp_q = bucket_log_probs(zs, sparse)
    assert (forward_kl(sp_p, sp_q) <= forward_kl(full_p, full_q) + 1e-6).all()
    assert torch.allclose(sp_p.exp().sum(-1), torch.ones(B, S)) and torch.allclose(sp_q.exp().sum(-1), torch.ones(B, S))


def test_sparse_temperature_keeps_a_distribution():
    z, zs = logits(11).float(), logits(12).float()
    p, q = bucket_log_probs(zs, sparse_teacher(z, 3), T=2.0)
    assert torch.allclose(p.exp().sum(-1), torch.ones(B, S), atol=1e-6) and torch.allclose(q.exp().sum(-1), torch.ones(B, S), atol=1e-6)
    # top-k ratios are the tempered teacher's: log p_i - log p_j = (z_i - z_j) / T
    top = sparse_teacher(z, 3)
    assert torch.allclose(p[..., 0] - p[..., 1], (top.logprobs[..., 0] - top.logprobs[..., 1]) / 2.0, atol=1e-5)


def test_sampled_form_is_an_unbiased_estimate_of_the_forward_kl_gradient():
    """k draws per token stored as frequencies: E[p_hat] = p, and KL(p_hat || q)'s gradient over the full vocabulary
    is q - p_hat, so its mean over draws is forward KL's q - p (the top-k buckets' is not)."""
    teacher, student = logits(0).float(), logits(1).float()
    generator = torch.Generator().manual_seed(0)
    one = sampled_teacher(teacher, 8, generator)
    freq = one.logprobs.exp()
    assert torch.allclose(freq.sum(-1), torch.ones(B, S)) and torch.all(one.rest == float("-inf"))
    assert torch.all(freq[..., :-1] >= freq[..., 1:])  # descending, like top-k
    assert torch.all((freq * 8 - (freq * 8).round()).abs() < 1e-5)  # counts of 8 draws

    def grad(form) -> torch.Tensor:
        z = student.clone().requires_grad_()
        log_p, log_q = bucket_log_probs(z, form)
        forward_kl(log_p, log_q).sum().backward()
        return z.grad

    mean = sum(grad(sampled_teacher(teacher, 8, generator)) for _ in range(400)) / 400
    exact = torch.softmax(student, -1) - torch.softmax(teacher, -1)  # d KL(p || softmax(z)) / dz
    assert torch.allclose(grad(one), torch.softmax(student, -1) - torch.zeros_like(student).scatter_add(-1, one.indices, freq), atol=1e-6)
    assert (mean - exact).abs().max() < 0.03  # 3200 draws per token: the estimate's noise is ~0.01
    assert (grad(sparse_teacher(teacher, 3)) - exact).abs().max() > 0.05  # top-3 + rest: biased
