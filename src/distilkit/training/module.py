"""The LightningModule: steps and logs. Models, loss, optimizer factory and compressors come in built."""

from __future__ import annotations

from typing import Callable, Mapping

import lightning as L
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from distilkit.errors import config_group
from distilkit.losses.attention import use_attention_kernel
from distilkit.losses.base import DistillLoss
from distilkit.losses.outputs import Needs, Outputs

ONLINE = (Needs.HIDDEN, Needs.HIDDEN_AND_ATTENTIONS)


class StudentModule(L.LightningModule):
    """What every task's module shares: the student and its loss, the optimizer and scheduler factories,
    the compressors (``{"pruner": ..., "quantizer": ...}``, applied in that order: ``prepare`` in
    ``setup("fit")``, ``on_train_progress`` before every batch; ``convert`` is the pipeline's, after fit;
    their config errors reported under their group's key) and a frozen teacher (``None`` when the loss
    doesn't run it) that stays in eval mode. Subclasses say what a step feeds the loss and what they validate."""

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
        self.online = self.runs_teacher_online(loss, online_teacher)  # else the teacher isn't kept
        self.teacher = teacher.eval().requires_grad_(False) if teacher is not None and self.online else None
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.compressors = dict(compressors or {})
        self.prefix = log_prefix
        self.teacher_config = getattr(teacher, "config", None)  # the loss is bound again once the pruner has changed widths

    @staticmethod
    def runs_teacher_online(loss: DistillLoss, online_teacher: bool) -> bool:
        """Whether the training step runs the teacher (``online_teacher``: its stored outputs are switched off)."""
        return online_teacher and loss.needs != Needs.NOTHING

    def setup(self, stage: str) -> None:
        if stage != "fit":
            return
        for group, compressor in self.compressors.items():
            with config_group(group):
                self.student = compressor.prepare(self.student)
        if self.teacher_config is not None and hasattr(self.student, "config"):
            with config_group("loss"):  # pruner=width changes hidden_size: the loss's learned parts follow (before the optimizer exists)
                self.loss.bind(self.student.config, self.teacher_config)

    def on_fit_start(self) -> None:
        self.train()  # from_pretrained returns eval mode; Lightning keeps modes as it finds them

    def train(self, mode: bool = True):
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # the teacher never trains: no dropout
        return self

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        fraction = self.global_step / max(1, self.trainer.estimated_stepping_batches)
        for compressor in self.compressors.values():
            compressor.on_train_progress(self.student, fraction)

    def log_loss(self, parts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Log the loss and each of its terms; return them ("loss" is what Lightning optimizes; callbacks see every term)."""
        self.log(f"{self.prefix}train/loss", parts["loss"], prog_bar=True)
        self.log_dict({f"{self.prefix}train/{k}": v for k, v in parts.items() if k != "loss"})
        return parts

    def configure_optimizers(self):
        params = [p for m in (self.student, self.loss) for p in m.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer, total_steps=int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class DistillModule(StudentModule):
    """Sequence classification. Teacher logits arrive in the batch (``teacher_logits``) from the soft-label
    store; a loss that needs hidden states or attentions, or any teacher-using loss with
    ``online_teacher`` (the store switched off: ``task.store_logits=false``), gets the frozen teacher run online."""

    def __init__(self, student: nn.Module, *args, **kwargs):
        super().__init__(student, *args, **kwargs)
        self.val_acc = MulticlassAccuracy(num_classes=student.config.num_labels, average="micro")
        self._restore_attention = None

    @staticmethod
    def runs_teacher_online(loss: DistillLoss, online_teacher: bool) -> bool:
        """Hidden-state and attention losses always run the teacher; the others when the store is off."""
        return loss.needs in ONLINE or StudentModule.runs_teacher_online(loss, online_teacher)

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.loss.needs == Needs.HIDDEN_AND_ATTENTIONS:  # attention maps before dropout (losses/attention.py)
            self._restore_attention = use_attention_kernel(self.student, self.teacher)
        super().setup(stage)

    def on_fit_end(self) -> None:
        if self._restore_attention is not None:
            self._restore_attention()

    def _run(self, model: nn.Module, batch: dict) -> Outputs:
        deep = self.loss.needs in ONLINE
        out = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            output_hidden_states=deep,
            output_attentions=self.loss.needs == Needs.HIDDEN_AND_ATTENTIONS,
        )
        return Outputs.of(out)

    def _teacher(self, batch: dict) -> Outputs | None:
        if self.loss.needs == Needs.NOTHING:
            return None
        if self.loss.needs == Needs.LOGITS and not self.online:
            return Outputs(batch["teacher_logits"])
        with torch.no_grad():
            return self._run(self.teacher, batch)

    def training_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        return self.log_loss(self.loss(self._run(self.student, batch), self._teacher(batch), batch["labels"], batch["attention_mask"]))

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        logits = self.student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        self.val_acc(logits, batch["labels"])
        self.log(f"{self.prefix}val/acc", self.val_acc, prog_bar=True)
