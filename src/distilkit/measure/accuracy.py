"""Accuracy and teacher agreement from logits."""

from __future__ import annotations

import torch


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(-1) == labels).float().mean().item()


def agreement(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> float:
    """Fraction of examples where student and teacher predict the same class."""
    return (student_logits.argmax(-1) == teacher_logits.argmax(-1)).float().mean().item()
