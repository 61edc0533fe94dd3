"""Intermediate-layer distillation in the style of TinyBERT (Jiao et al., 2020) and MiniLM (Wang et al., 2020).

    loss = hidden_weight * sum_m MSE(W_m h_s[m], h_t[g(m)])          (TinyBERT hidden + embedding loss)
         + attn_weight   * sum_m KL(A_t[g(m)] || A_s[m])             (MiniLM attention-distribution loss)
         + alpha * T^2 * KL(p_t^T || p_s^T) + (1 - alpha) * CE        (the ``kd`` loss; alpha=0: plain CE)

Both layer terms see real tokens only: the MSE is the mean over real (non-padding) tokens and hidden
features, the KL the mean over heads and real query tokens (padding keys already have probability 0),
so padding a batch further does not change the loss. ``A`` is the attention distribution *before*
attention dropout: while this loss trains, both models run the kernel of
:mod:`distilkit.losses.attention`, which applies dropout where eager attention does (the student
stays regularized) but returns the softmax before it (after dropout, about ``p`` of the entries are
0 and the KL's log would blow up on them).

``g`` is the layer mapping: student layer m (1-based, 0 = embeddings -> 0) to teacher layer
``layer_map[m-1]`` (1-based); by default uniform, ``g(m) = m * L_t / L_s``. ``W_m`` is a learned
projection, used only when the widths differ (identity otherwise). When head counts differ the
attention maps are averaged over heads before the KL.
Config: ``loss=intermediate loss.layer_map=[2,4,6] loss.alpha=0.5``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from distilkit.errors import ConfigError, check
from distilkit.losses.base import DistillLoss
from distilkit.losses.kd import check_T_alpha, kd_term
from distilkit.losses.outputs import Needs, Outputs


def uniform_layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """Teacher layer (1-based) for each student layer: ``m * L_t / L_s``, so the last maps to the last."""
    return [round(m * teacher_layers / student_layers) for m in range(1, student_layers + 1)]


def masked_mse(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over real tokens and features; hidden states [batch, seq, width], mask [batch, seq]."""
    per_token = (student_hidden - teacher_hidden).pow(2).mean(-1)  # [batch, seq]
    mask = attention_mask.to(per_token.dtype)
    return (per_token * mask).sum() / mask.sum()


def attention_kl(teacher_attn: torch.Tensor, student_attn: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """KL(A_t || A_s) over keys, mean over heads and real query tokens; maps [batch, heads, seq, seq]."""
    if teacher_attn.shape[1] != student_attn.shape[1]:
        teacher_attn, student_attn = teacher_attn.mean(1, keepdim=True), student_attn.mean(1, keepdim=True)
    kl = torch.xlogy(teacher_attn, teacher_attn) - teacher_attn * student_attn.clamp_min(1e-12).log()
    kl = kl.sum(-1).mean(1)  # [batch, seq]: per query token
    mask = attention_mask.to(kl.dtype)
    return (kl * mask).sum() / mask.sum()


class IntermediateLoss(DistillLoss):
    needs = Needs.HIDDEN_AND_ATTENTIONS

    def __init__(
        self,
        hidden_weight: float = 1.0,
        attn_weight: float = 1.0,
        T: float = 1.0,
        alpha: float = 0.5,
        layer_map: list[int] | None = None,
    ):
        super().__init__()
        check_T_alpha(T, alpha)
        for key, value in (("hidden_weight", hidden_weight), ("attn_weight", attn_weight)):
            check(value >= 0, key, f"must be >= 0, got {value}")
        self.hidden_weight, self.attn_weight, self.T, self.alpha = hidden_weight, attn_weight, T, alpha
        self.layer_map = list(layer_map) if layer_map is not None else None
        self.projections = nn.ModuleList()  # one per mapped hidden state (embeddings first), or empty

    def bind(self, student_config, teacher_config) -> None:
        ls, lt = student_config.num_hidden_layers, teacher_config.num_hidden_layers
        if self.layer_map is None:
            self.layer_map = uniform_layer_map(ls, lt)
        if len(self.layer_map) != ls:
            raise ConfigError("layer_map", f"needs one teacher layer per student layer ({ls}), got {len(self.layer_map)}")
        bad = [t for t in self.layer_map if not 1 <= t <= lt]
        if bad:
            raise ConfigError("layer_map", f"teacher layers {bad} out of range: allowed 1..{lt} (1-based)")
        ds, dt = student_config.hidden_size, teacher_config.hidden_size
        shape = [(ds, dt)] * (ls + 1) if ds != dt else []
        if [(p.in_features, p.out_features) for p in self.projections] != shape:  # bound again after pruning: rebuilt only if widths changed
            self.projections = nn.ModuleList(nn.Linear(i, o) for i, o in shape)

    def forward(self, student: Outputs, teacher: Outputs, labels: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        pairs = [(0, 0), *((m, t) for m, t in enumerate(self.layer_map, start=1))]  # (student, teacher) hidden-state index
        hidden = sum(
            masked_mse(self._project(i, student.hidden_states[s]), teacher.hidden_states[t], attention_mask)
            for i, (s, t) in enumerate(pairs)
        )
        attn = sum(
            attention_kl(teacher.attentions[t - 1], student.attentions[s - 1], attention_mask) for s, t in pairs[1:]
        )
        kd = kd_term(student.logits, teacher.logits, self.T)
        ce = F.cross_entropy(student.logits, labels)
        total = self.hidden_weight * hidden + self.attn_weight * attn + self.alpha * kd + (1 - self.alpha) * ce
        return {"loss": total, "hidden": hidden, "attn": attn, "kd": kd, "ce": ce}

    def _project(self, i: int, h: torch.Tensor) -> torch.Tensor:
        return self.projections[i](h) if len(self.projections) else h
