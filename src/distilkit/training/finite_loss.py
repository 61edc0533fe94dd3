"""Stop at the first NaN or infinite training loss, naming the step and the loss term."""

from __future__ import annotations

import math

import lightning as L
import torch

from distilkit.errors import TrainingDiverged


def check_finite(parts: dict[str, torch.Tensor], step: str, prefix: str = "") -> None:
    """``TrainingDiverged`` unless every value of ``parts`` (``loss`` and its terms) is finite."""
    bad = {name: float(value.detach()) for name, value in parts.items() if not math.isfinite(float(value.detach()))}
    if not bad:
        return
    terms = [name for name in bad if name != "loss"] or ["loss"]
    values = ", ".join(f"{name}={bad[name]}" for name in terms)
    raise TrainingDiverged(
        f"{prefix}train/loss is not finite at {step} ({values}); "
        "lower optimizer.lr, check the data, or use trainer.precision=32-true"
    )


class StopOnNonFiniteLoss(L.Callback):
    """After each training batch, checks the step's loss parts (the dict ``training_step`` returns)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if outputs is not None:
            step = f"epoch {trainer.current_epoch}, batch {batch_idx} (global step {trainer.global_step})"
            check_finite(outputs, step, getattr(pl_module, "prefix", ""))
