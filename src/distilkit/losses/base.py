"""The base every loss shares: what it needs of the teacher and a hook to see both model configs."""

from __future__ import annotations

from torch import nn

from distilkit.losses.outputs import Needs


class DistillLoss(nn.Module):
    needs = Needs.LOGITS

    def bind(self, student_config, teacher_config) -> None:
        """Called once both models exist, before training: check shapes, build learned parts."""
