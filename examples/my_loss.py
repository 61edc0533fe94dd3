"""A loss of your own for distilkit: logit matching (Ba & Caruana, 2014, "Do Deep Nets Really Need to be Deep?").

    loss = alpha * mean_{batch, classes} (z_s - z_t)^2 + (1 - alpha) * CE(z_s, y)

Regressing the teacher's logits instead of its temperature-softened probabilities; it needs only the
teacher's logits, so they come from distilkit's soft-label store (no teacher forward pass).
The contract (``needs``, ``bind``, ``forward`` -> ``{"loss": ..., parts}``) is in ``distilkit/losses/base.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distilkit.errors import check
from distilkit.losses import DistillLoss, Needs, Outputs


class LogitMSE(DistillLoss):
    needs = Needs.LOGITS

    def __init__(self, alpha: float = 0.5):
        super().__init__()
        check(0 <= alpha <= 1, "alpha", f"must be in [0, 1], got {alpha}")  # reported as loss.alpha
        self.alpha = alpha

    def forward(self, student: Outputs, teacher: Outputs, labels: torch.Tensor, attention_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        mse = F.mse_loss(student.logits, teacher.logits)
        ce = F.cross_entropy(student.logits, labels)
        return {"loss": self.alpha * mse + (1 - self.alpha) * ce, "logit_mse": mse, "ce": ce}
