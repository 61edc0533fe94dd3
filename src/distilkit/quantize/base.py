"""The quantizer interface the pipeline and the LightningModule call.

Call order: ``prepare`` (before fit and before the optimizer is created), ``on_train_progress``
(at the start of every training batch), ``convert`` (after fit), then ``quantize_onnx`` on the
fp32 ONNX export of ``Converted.float_model``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from distilkit.errors import ConfigError


@dataclass
class Converted:
    """What a quantizer hands back after training.

    ``float_model``: the plain float model (fake quantization removed, trained weights), used for
    the fp32 ONNX export. ``torch_model``: what runs in torch after conversion (real low-bit CPU
    kernels where they exist; the float model for ``none``). ``precision``: ``"fp32"``, ``"int8"``
    or ``"int4"``.
    """

    float_model: nn.Module
    torch_model: nn.Module
    precision: str


class Quantizer(ABC):
    """Base class of the ``quantizer`` config group."""

    def check(self, model: nn.Module) -> None:
        """Validate the options against ``model`` before anything runs (it may live on the meta device:
        module names and shapes only, no values)."""

    @abstractmethod
    def prepare(self, model: nn.Module) -> nn.Module:
        """Make ``model`` ready for training (QAT inserts fake quantization); validate names."""

    def on_train_progress(self, model: nn.Module, fraction: float) -> None:
        """Called at every training batch start; ``fraction`` of training done, in [0, 1]."""

    @abstractmethod
    def convert(self, model: nn.Module) -> Converted:
        """Turn the trained model into its deployable form."""

    @abstractmethod
    def quantize_onnx(self, fp32_onnx: Path, out_path: Path) -> Path | None:
        """Write a quantized ONNX model made from the fp32 export; ``None`` if there is none."""


def check_unit_interval(key: str, value: float) -> float:
    """``value`` as a float, or ``ConfigError(key)`` unless it is a number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ConfigError(key, f"must be a number in [0, 1], got {value!r}")
    return float(value)
