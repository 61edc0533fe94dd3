"""Weight averaging of the student (``averaging=ema``): validated, saved and deployed with the averaged weights.

Lightning's own ``EMAWeightAveraging`` copies the whole LightningModule (the frozen teacher too) in its
``setup``, which runs before the module's: before the pruner and quantizer have prepared the student, so
its copy would not match the model that trains. These callbacks average ``pl_module.student`` from
``on_fit_start``, once it is the prepared model."""

from __future__ import annotations

import lightning as L
import torch

from distilkit.errors import ConfigError


class NoAveraging(L.Callback):
    """``averaging=none``: the student is deployed with its last weights."""


class StudentEMA(L.Callback):
    """Exponential moving average of the student's floating-point parameters, updated after every optimizer
    step with ``decay`` (warmed up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so a short run
    is not dominated by its initial weights). Validation runs on the average; when training ends the
    average replaces the student's weights, so what is converted, exported and measured is the average.
    Buffers (pruning masks, running statistics) stay the student's. The average is part of the callback's
    checkpoint state, so ``resume=true`` continues it."""

    def __init__(self, decay: float = 0.99):
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 < decay < 1.0:
            raise ConfigError("decay", f"must be a number in (0, 1), e.g. 0.99 (about the last 100 steps), got {decay!r}")
        self.decay = float(decay)
        self.updates = 0
        self.shadow: list[torch.Tensor] | None = None
        self._loaded: dict | None = None

    def _params(self, pl_module) -> list[torch.Tensor]:
        return [p for p in pl_module.student.parameters() if p.is_floating_point()]

    def on_fit_start(self, trainer, pl_module) -> None:
        self._module = pl_module
        self.updates = 0
        self.shadow = [p.detach().clone() for p in self._params(pl_module)]
        self._resume(pl_module)

    def _resume(self, pl_module) -> None:
        """The checkpoint's average, once both it and the prepared student are there (strategies that restore
        after setup load it after ``on_fit_start``)."""
        if self._loaded is None or self.shadow is None:
            return
        saved, params = self._loaded["shadow"], self._params(pl_module)
        if len(saved) != len(params) or any(s.shape != p.shape for s, p in zip(saved, params)):
            raise RuntimeError("averaging=ema: the checkpoint's average does not fit this student; resume it with the config it was saved with")
        self.shadow = [s.to(p.device, p.dtype) for s, p in zip(saved, params)]
        self.updates = int(self._loaded["updates"])
        self._loaded = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.shadow is None or trainer.global_step <= self.updates:  # no optimizer step (accumulation)
            return
        self.updates = trainer.global_step
        weight = 1.0 - min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        with torch.no_grad():
            torch._foreach_lerp_(self.shadow, [p.detach() for p in self._params(pl_module)], weight)

    def _swap(self, pl_module) -> None:
        with torch.no_grad():
            for average, param in zip(self.shadow, self._params(pl_module)):
                current = param.detach().clone()
                param.copy_(average)
                average.copy_(current)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if self.shadow is not None and trainer.state.fn == "fit":
            self._swap(pl_module)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self.shadow is not None and trainer.state.fn == "fit":
            self._swap(pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.shadow is not None:
            with torch.no_grad():
                for average, param in zip(self.shadow, self._params(pl_module)):
                    param.copy_(average)

    def state_dict(self) -> dict:
        return {"updates": self.updates, "shadow": [s.detach().cpu() for s in self.shadow or []]}

    def load_state_dict(self, state_dict: dict) -> None:
        self._loaded = state_dict
        if self.shadow is not None:
            self._resume(self._module)
