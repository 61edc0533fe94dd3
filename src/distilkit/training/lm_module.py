"""The causal-LM LightningModule: steps and logs. Token logits, the teacher's form and the mask go to the loss.

A block of ``L`` tokens gives ``L - 1`` predictions: positions ``0..L-2`` predict tokens ``1..L-1``.
The loss receives the student's logits at those positions, the next tokens as ``labels``, the mask of
positions whose next token is real, and the teacher: its stored top-k form from the batch
(``teacher_logprobs``/``teacher_indices``/``teacher_rest``), or, where the task stores none for training
(``top_k: null``), the frozen teacher's full logits computed online.
"""

from __future__ import annotations

import torch
from torch import nn

from distilkit.losses.causal_lm import SparseTeacher, token_ce
from distilkit.losses.outputs import Needs, Outputs
from distilkit.training.module import StudentModule


def shifted(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """``(labels, mask)`` ``[batch, L - 1]``: the next token of each position, and where it is real."""
    mask = batch["attention_mask"]
    return batch["input_ids"][:, 1:], mask[:, 1:] * mask[:, :-1]


class LMDistillModule(StudentModule):
    """Causal LM: the teacher's stored top-k arrives in the batch; with ``online_teacher`` (no top-k
    store) the full-vocabulary teacher runs in the step."""

    def _logits(self, model: nn.Module, batch: dict) -> torch.Tensor:
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]

    def _teacher(self, batch: dict):
        if self.loss.needs == Needs.NOTHING:
            return None
        if self.online:
            with torch.no_grad():
                return Outputs(self._logits(self.teacher, batch))
        return SparseTeacher(batch["teacher_logprobs"], batch["teacher_indices"], batch["teacher_rest"])

    def training_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        labels, mask = shifted(batch)
        return self.log_loss(self.loss(Outputs(self._logits(self.student, batch)), self._teacher(batch), labels, mask))

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        labels, mask = shifted(batch)
        nll = token_ce(self._logits(self.student, batch), labels, mask)
        self.log(f"{self.prefix}val/nll", nll, prog_bar=True, batch_size=int(mask.sum()))
