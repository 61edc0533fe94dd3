"""Knowledge distillation (Hinton, Vinyals & Dean, 2015, "Distilling the Knowledge in a Neural Network").

    loss = alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T)) + (1 - alpha) * CE(z_s, y)

The T^2 factor keeps the soft term's gradient scale independent of T. Config: ``loss=kd loss.T=4 loss.alpha=0.5``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distilkit.errors import check
from distilkit.losses.base import DistillLoss
from distilkit.losses.outputs import Needs, Outputs


def kd_term(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float) -> torch.Tensor:
    """``T^2 * KL(p_teacher^T || p_student^T)``, averaged over the batch."""
    log_p_student = F.log_softmax(student_logits / T, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits / T, dim=-1)
    return F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean") * T * T


def check_T_alpha(T: float, alpha: float) -> None:
    check(T > 0, "T", f"must be > 0, got {T}")
    check(0 <= alpha <= 1, "alpha", f"must be in [0, 1], got {alpha}")


class KDLoss(DistillLoss):
    needs = Needs.LOGITS

    def __init__(self, T: float = 4.0, alpha: float = 0.5):
        super().__init__()
        check_T_alpha(T, alpha)
        self.T, self.alpha = T, alpha

    def forward(self, student: Outputs, teacher: Outputs, labels: torch.Tensor, attention_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        kd = kd_term(student.logits, teacher.logits, self.T)
        ce = F.cross_entropy(student.logits, labels)
        return {"loss": self.alpha * kd + (1 - self.alpha) * ce, "kd": kd, "ce": ce}
