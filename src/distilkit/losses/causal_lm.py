"""Token-level distillation losses for causal LMs (``task=causal_lm``): pure functions over token logits.

Every loss receives the student's logits ``[batch, seq, vocab]`` at the positions that predict a next
token, the teacher in one of two forms, the next-token ``labels`` ``[batch, seq]`` and a mask
``[batch, seq]`` (1 where the position has a real next token; padding is 0 and contributes nothing):

* **sparse** (:class:`SparseTeacher`, from the teacher-output store): the teacher's top-k log-probs per
  token, their token ids, and the log of the remaining mass ``log(1 - sum_k p_i)``. Teacher and student
  are then compared as distributions over k + 1 buckets, the top-k tokens and "the rest"
  (the student's rest is its mass outside the teacher's top-k). At ``T = 1`` this is the exact
  divergence between the two bucketed distributions (a lower bound of the full-vocabulary one, by
  the data-processing inequality). For ``T != 1`` the teacher's rest mass is taken as spread evenly
  over the ``V - k`` other tokens (the store has no more), then sharpened/softened like the rest.
* **full** (``Outputs``, the teacher run online): its logits over the whole vocabulary.

With ``p`` the teacher's and ``q`` the student's distribution at temperature ``T`` (per token), each
loss is ``alpha * T^2 * D(p, q) + (1 - alpha) * CE(q, next token)``, D averaged over real tokens:

* ``ForwardKL``: D = KL(p || q) = sum p log(p / q)  (Hinton et al., 2015, "Distilling the Knowledge in
  a Neural Network"; token-level as in Sanh et al. 2019 and torchtune's ForwardKLLoss)
* ``ReverseKL``: D = KL(q || p)  (Gu et al., 2024, "MiniLLM: Knowledge Distillation of Large Language
  Models", the token-level reverse KL of its objective; mode-seeking)
* ``GeneralizedJSD``: D = beta KL(p || m) + (1 - beta) KL(q || m), m = beta p + (1 - beta) q
  (Agarwal et al., 2024, "On-Policy Distillation of Language Models: Learning from Self-Generated
  Mistakes" (GKD), eq. for JSD(beta)). JSD(beta)/beta -> KL(p||q) as beta -> 0 and JSD(beta)/(1-beta) ->
  KL(q||p) as beta -> 1; as in GKD's reference code (TRL), beta = 0 and beta = 1 are those KLs.
* ``SkewKL``: D = KL(p || lam p + (1 - lam) q)  (Ko et al., 2024, "DistiLLM: Towards Streamlined
  Distillation for Large Language Models", the alpha-skew KL; lam = 0 is KL(p || q))
* ``TokenCrossEntropy``: CE only, no teacher (the baseline).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from distilkit.errors import ConfigError, check
from distilkit.losses.base import DistillLoss
from distilkit.losses.outputs import Needs, Outputs


@dataclass
class SparseTeacher:
    """The teacher per token as stored: top-k log-probs (T = 1, descending), their ids, log of the rest mass."""

    logprobs: torch.Tensor  # [batch, seq, k]
    indices: torch.Tensor  # [batch, seq, k]
    rest: torch.Tensor  # [batch, seq]


def sparse_teacher(logits: torch.Tensor, k: int) -> SparseTeacher:
    """The top-k form of full logits ``[..., vocab]``: exact top-k log-probs and the exact log of the remaining mass."""
    log_p = F.log_softmax(logits.float(), dim=-1)
    top, idx = log_p.topk(k, dim=-1)
    masked = log_p.scatter(-1, idx, float("-inf"))
    return SparseTeacher(top, idx, torch.logsumexp(masked, dim=-1))


def sampled_teacher(logits: torch.Tensor, k: int, generator: torch.Generator) -> SparseTeacher:
    """The sampled form of full logits ``[..., vocab]`` (random-sampling KD, Anshumann et al. 2025, "Sparse Logit
    Sampling"): ``k`` tokens drawn per position from the teacher's distribution ``p`` (T = 1, with replacement),
    stored as their empirical frequencies ``p_hat_i = count_i / k`` (descending; unused slots ``log 0``) and no
    rest mass. ``E[p_hat] = p``, so the gradient of ``KL(p_hat || q)`` over the full vocabulary,
    ``q - p_hat``, is an unbiased estimate of forward KL's ``q - p``; top-k's buckets leave the student's tail
    unshaped and are biased."""
    probs = F.softmax(logits.float(), dim=-1)
    flat = probs.reshape(-1, probs.shape[-1])
    draws = torch.multinomial(flat, k, replacement=True, generator=generator)
    counts = torch.zeros_like(flat).scatter_add_(-1, draws, torch.ones_like(draws, dtype=flat.dtype))
    top, idx = counts.topk(k, dim=-1)
    shape = (*logits.shape[:-1], k)
    logprobs = torch.log(top / k).reshape(shape)
    return SparseTeacher(logprobs, idx.reshape(shape), logits.new_full(logits.shape[:-1], float("-inf")))


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` ``[batch, seq]`` over positions where ``mask`` is 1."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1)


def token_ce(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy, mean over real tokens."""
    ce = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), reduction="none").view(labels.shape)
    return masked_mean(ce, mask)


def bucket_log_probs(student_logits: torch.Tensor, teacher: SparseTeacher | torch.Tensor, T: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log p_teacher, log q_student)`` on one support at temperature ``T``: the vocabulary for a full
    teacher (logits), the k + 1 buckets (top-k, rest) for a :class:`SparseTeacher`."""
    log_q = F.log_softmax(student_logits.float() / T, dim=-1)
    if isinstance(teacher, torch.Tensor):
        return F.log_softmax(teacher.float() / T, dim=-1), log_q
    idx = teacher.indices.long()
    q_top = log_q.gather(-1, idx)
    q_rest = torch.logsumexp(log_q.scatter(-1, idx, float("-inf")), dim=-1, keepdim=True)
    p = torch.cat([teacher.logprobs.float(), teacher.rest.float().unsqueeze(-1)], dim=-1)
    if T != 1.0:  # rest mass spread evenly over the V - k other tokens, then tempered like the top-k
        others = student_logits.shape[-1] - idx.shape[-1]
        spread = math.log(max(others, 1))
        p = p / T
        p[..., -1] = spread + (p[..., -1] * T - spread) / T
        p = p - torch.logsumexp(p, dim=-1, keepdim=True)
    return p, torch.cat([q_top, q_rest], dim=-1)


def kl(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """KL(a || b) over the last dimension, from log-probabilities; 0 log 0 = 0."""
    a = log_a.exp()
    return torch.where(a > 0, a * (log_a - log_b), torch.zeros_like(a)).sum(-1)


def forward_kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    return kl(log_p, log_q)


def reverse_kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    return kl(log_q, log_p)


def generalized_jsd(log_p: torch.Tensor, log_q: torch.Tensor, beta: float) -> torch.Tensor:
    """GKD's JSD(beta) = beta KL(p || m) + (1 - beta) KL(q || m), m = beta p + (1 - beta) q; beta 0/1: KL(p||q) / KL(q||p)."""
    if beta == 0:
        return kl(log_p, log_q)
    if beta == 1:
        return kl(log_q, log_p)
    log_m = torch.logsumexp(torch.stack([log_p + math.log(beta), log_q + math.log(1 - beta)]), dim=0)
    return beta * kl(log_p, log_m) + (1 - beta) * kl(log_q, log_m)


def skew_kl(log_p: torch.Tensor, log_q: torch.Tensor, lam: float) -> torch.Tensor:
    """DistiLLM's skew KL: KL(p || lam p + (1 - lam) q); lam = 0 is KL(p || q)."""
    if lam == 0:
        return kl(log_p, log_q)
    log_m = torch.logsumexp(torch.stack([log_p + math.log(lam), log_q + math.log1p(-lam)]), dim=0)
    return kl(log_p, log_m)


class TokenCrossEntropy(DistillLoss):
    """Next-token cross-entropy only: the student alone, the baseline of every KD loss."""

    tasks = ("causal_lm",)
    needs = Needs.NOTHING

    def forward(self, student: Outputs, teacher, labels: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        ce = token_ce(student.logits, labels, attention_mask)
        return {"loss": ce, "ce": ce}


class TokenDistillLoss(DistillLoss):
    """``alpha * T^2 * mean_tokens D(p_teacher^T, q_student^T) + (1 - alpha) * CE``; subclasses give D."""

    tasks = ("causal_lm",)
    needs = Needs.LOGITS
    name = "kd"

    def __init__(self, T: float = 1.0, alpha: float = 0.5):
        super().__init__()
        check(T > 0, "T", f"must be > 0, got {T}")
        check(0 <= alpha <= 1, "alpha", f"must be in [0, 1], got {alpha}")
        self.T, self.alpha = T, alpha

    def divergence(self, log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def bind(self, student_config, teacher_config) -> None:
        if student_config.vocab_size != teacher_config.vocab_size:
            raise ConfigError("_target_", f"student vocabulary {student_config.vocab_size} != teacher's {teacher_config.vocab_size}")

    def forward(self, student: Outputs, teacher, labels: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        teacher = teacher if isinstance(teacher, SparseTeacher) else teacher.logits
        log_p, log_q = bucket_log_probs(student.logits, teacher, self.T)
        d = masked_mean(self.divergence(log_p, log_q), attention_mask) * self.T**2
        ce = token_ce(student.logits, labels, attention_mask)
        return {"loss": self.alpha * d + (1 - self.alpha) * ce, self.name: d, "ce": ce}


class ForwardKL(TokenDistillLoss):
    name = "fkl"

    def divergence(self, log_p, log_q):
        return forward_kl(log_p, log_q)


class ReverseKL(TokenDistillLoss):
    name = "rkl"

    def divergence(self, log_p, log_q):
        return reverse_kl(log_p, log_q)


class GeneralizedJSD(TokenDistillLoss):
    name = "jsd"

    def __init__(self, beta: float = 0.5, T: float = 1.0, alpha: float = 0.5):
        super().__init__(T=T, alpha=alpha)
        check(0 <= beta <= 1, "beta", f"must be in [0, 1], got {beta}")
        self.beta = beta

    def divergence(self, log_p, log_q):
        return generalized_jsd(log_p, log_q, self.beta)


class SkewKL(TokenDistillLoss):
    name = "skew_kl"

    def __init__(self, lam: float = 0.1, T: float = 1.0, alpha: float = 0.5):
        super().__init__(T=T, alpha=alpha)
        check(0 <= lam < 1, "lam", f"must be in [0, 1), got {lam}")
        self.lam = lam

    def divergence(self, log_p, log_q):
        return skew_kl(log_p, log_q, self.lam)
