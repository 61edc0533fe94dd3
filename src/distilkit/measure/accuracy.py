"""Accuracy and teacher agreement from logits."""

from __future__ import annotations

import torch


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(-1) == labels).float().mean().item()


def agreement(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> float:
    """Fraction of examples where student and teacher predict the same class."""
    return (student_logits.argmax(-1) == teacher_logits.argmax(-1)).float().mean().item()


def fidelity_metrics(
    student_logits: dict[str, torch.Tensor], teacher_logits: dict[str, torch.Tensor], labels: dict[str, torch.Tensor]
) -> dict[str, float]:
    """Per split: the student's mean negative log-likelihood of the labels and mean KL(p_teacher || p_student).

    Continuous where accuracy is a count: two runs that train the same student give equal values,
    two that don't almost never do.
    """
    out = {}
    for split, logits in student_logits.items():
        log_p = torch.log_softmax(logits.double(), -1)
        log_q = torch.log_softmax(teacher_logits[split].double(), -1)
        out[f"student/{split}_nll"] = torch.nn.functional.nll_loss(log_p, labels[split]).item()
        out[f"student/{split}_kl_to_teacher"] = (log_q.exp() * (log_q - log_p)).sum(-1).mean().item()
    return out
