"""The pruner interface the pipeline and the LightningModule call.

Call order: ``calibrate`` (before fit, with the data), ``prepare`` (before fit and before the optimizer is created), ``on_train_progress``
(at the start of every training batch), ``convert`` (after fit).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import nn

from distilkit.errors import ConfigError


class Pruner(ABC):
    """Base class of the ``pruner`` config group."""

    def check(self, model: nn.Module) -> None:
        """Validate the options against ``model`` before anything runs (it may live on the meta device:
        module names and shapes only, no values)."""

    def shaped(self, model: nn.Module) -> nn.Module:
        """A shape-only (meta-device) stand-in for what ``prepare`` will make of ``model``, so the
        preflight can check the quantizer against the widths that will really be quantized
        (default: pruning that keeps every shape, e.g. masks)."""
        return model

    def calibrate(self, model: nn.Module, data) -> None:
        """Called by the pipeline before fit with the student and the data module (its training inputs are the same
        on every rank), for importance scores measured on data (default: none needed)."""

    @abstractmethod
    def prepare(self, model: nn.Module) -> nn.Module:
        """Set up pruning before training (masks, or structured removal)."""

    def on_train_progress(self, model: nn.Module, fraction: float) -> None:
        """Called at every training batch start; ``fraction`` of training done, in [0, 1]."""

    def convert(self, model: nn.Module) -> nn.Module:
        """Make pruning permanent after training (default: nothing to do)."""
        return model


def check_fraction(key: str, value: float) -> float:
    """``value`` as a float, or ``ConfigError(key)`` unless it is a number in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ConfigError(key, f"must be a number in [0, 1), got {value!r}")
    return float(value)
