"""DistilBERT's triple loss (Sanh et al., 2019), for a classification task.

    loss = kd_weight * KD_T + ce_weight * CE + cos_weight * (1 - cos(h_s, h_t))

``h`` is the last hidden state of each non-padding token; the cosine term aligns the directions of
student and teacher hidden states, so both must have the same width (use ``loss=intermediate`` when
they don't). Config: ``loss=distilbert loss.T=2 loss.cos_weight=1``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distilkit.errors import ConfigError, check
from distilkit.losses.kd import kd_term
from distilkit.losses.base import DistillLoss
from distilkit.losses.outputs import Needs, Outputs


def cosine_term(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens of ``1 - cos(h_s, h_t)``; hidden states [batch, seq, width], mask [batch, seq]."""
    keep = attention_mask.bool()  # [batch, seq]
    cos = F.cosine_similarity(student_hidden[keep], teacher_hidden[keep], dim=-1)  # [tokens]
    return (1 - cos).mean()


class DistilBertLoss(DistillLoss):
    def __init__(self, T: float = 2.0, kd_weight: float = 5.0, ce_weight: float = 2.0, cos_weight: float = 1.0):
        super().__init__()
        check(T > 0, "T", f"must be > 0, got {T}")
        for key, value in (("kd_weight", kd_weight), ("ce_weight", ce_weight), ("cos_weight", cos_weight)):
            check(value >= 0, key, f"must be >= 0, got {value}")
        self.T, self.kd_weight, self.ce_weight, self.cos_weight = T, kd_weight, ce_weight, cos_weight
        self.needs = Needs.HIDDEN if cos_weight > 0 else Needs.LOGITS

    def bind(self, student_config, teacher_config) -> None:
        if self.cos_weight > 0 and student_config.hidden_size != teacher_config.hidden_size:
            raise ConfigError(
                "cos_weight",
                f"the cosine term needs equal widths, student {student_config.hidden_size} vs teacher "
                f"{teacher_config.hidden_size}: set loss.cos_weight=0 or use loss=intermediate",
            )

    def forward(self, student: Outputs, teacher: Outputs, labels: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        kd = kd_term(student.logits, teacher.logits, self.T)
        ce = F.cross_entropy(student.logits, labels)
        parts = {"kd": kd, "ce": ce}
        total = self.kd_weight * kd + self.ce_weight * ce
        if self.cos_weight > 0:
            parts["cos"] = cosine_term(student.hidden_states[-1], teacher.hidden_states[-1], attention_mask)
            total = total + self.cos_weight * parts["cos"]
        return {"loss": total, **parts}
