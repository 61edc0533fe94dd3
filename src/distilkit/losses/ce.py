"""Cross-entropy on the hard labels: the student alone, the baseline every KD result is compared with."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distilkit.losses.base import DistillLoss
from distilkit.losses.outputs import Needs, Outputs


class CrossEntropy(DistillLoss):
    needs = Needs.NOTHING

    def forward(self, student: Outputs, teacher: Outputs | None, labels: torch.Tensor, attention_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        ce = F.cross_entropy(student.logits, labels)
        return {"loss": ce, "ce": ce}
