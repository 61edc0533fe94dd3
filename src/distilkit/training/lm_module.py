"""The causal-LM LightningModule: steps and logs. Token logits, the teacher's form and the mask go to the loss.

A block of ``L`` tokens gives ``L - 1`` predictions: positions ``0..L-2`` predict tokens ``1..L-1``.
The loss receives the student's logits at those positions, the next tokens as ``labels``, the mask of
positions whose next token is real, and the teacher: its stored top-k form from the batch
(``teacher_logprobs``/``teacher_indices``/``teacher_rest``), or, where the task stores none for training
(``top_k: null``), the frozen teacher's full logits computed online.
"""

from __future__ import annotations

from typing import Callable, Mapping

import lightning as L
import torch
from torch import nn

from distilkit.errors import config_group
from distilkit.losses.base import DistillLoss
from distilkit.losses.causal_lm import SparseTeacher, token_ce
from distilkit.losses.outputs import Needs, Outputs


def shifted(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """``(labels, mask)`` ``[batch, L - 1]``: the next token of each position, and where it is real."""
    mask = batch["attention_mask"]
    return batch["input_ids"][:, 1:], mask[:, 1:] * mask[:, :-1]


class LMDistillModule(L.LightningModule):
    def __init__(
        self,
        student: nn.Module,
        loss: DistillLoss,
        optimizer: Callable,
        scheduler: Callable | None = None,
        teacher: nn.Module | None = None,
        compressors: Mapping[str, object] | None = None,
        log_prefix: str = "",
        online_teacher: bool = False,
    ):
        super().__init__()
        self.student = student
        self.loss = loss
        self.online = online_teacher and loss.needs != Needs.NOTHING
        self.teacher = teacher.eval().requires_grad_(False) if self.online else None
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.compressors = dict(compressors or {})
        self.prefix = log_prefix

    def setup(self, stage: str) -> None:
        if stage != "fit":
            return
        for group, compressor in self.compressors.items():
            with config_group(group):
                self.student = compressor.prepare(self.student)

    def on_fit_start(self) -> None:
        self.train()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def _logits(self, model: nn.Module, batch: dict) -> torch.Tensor:
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]

    def _teacher(self, batch: dict):
        if self.loss.needs == Needs.NOTHING:
            return None
        if self.online:
            with torch.no_grad():
                return Outputs(self._logits(self.teacher, batch))
        return SparseTeacher(batch["teacher_logprobs"], batch["teacher_indices"], batch["teacher_rest"])

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        fraction = self.global_step / max(1, self.trainer.estimated_stepping_batches)
        for compressor in self.compressors.values():
            compressor.on_train_progress(self.student, fraction)

    def training_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        labels, mask = shifted(batch)
        parts = self.loss(Outputs(self._logits(self.student, batch)), self._teacher(batch), labels, mask)
        self.log(f"{self.prefix}train/loss", parts["loss"], prog_bar=True)
        self.log_dict({f"{self.prefix}train/{k}": v for k, v in parts.items() if k != "loss"})
        return parts

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        labels, mask = shifted(batch)
        nll = token_ce(self._logits(self.student, batch), labels, mask)
        self.log(f"{self.prefix}val/nll", nll, prog_bar=True, batch_size=int(mask.sum()))

    def configure_optimizers(self):
        params = [p for m in (self.student, self.loss) for p in m.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer, total_steps=int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
