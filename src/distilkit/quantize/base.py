"""The quantizer interface the pipeline and the LightningModule call.

Call order: ``prepare`` (before fit and before the optimizer is created), ``on_train_progress``
(at the start of every training batch), ``convert`` (after fit), then ``quantize_onnx`` on the
fp32 ONNX export of ``Converted.float_model``. The ONNX model ``quantize_onnx`` writes must compute
what ``Converted.reference`` computes in torch (same weights, same activation quantization).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from torch import nn



@dataclass
class Converted:
    """What a quantizer hands back after training.

    ``float_model``: the plain float model (fake quantization removed, trained weights), used for
    the fp32 ONNX export. ``torch_model``: what runs in torch after conversion (real low-bit CPU
    kernels where they exist; the float model for ``none``). ``precision``: ``"fp32"``, ``"int8"``
    or ``"int4"``. ``reference``: the torch model whose logits the deployable ONNX model must
    reproduce (the parity check, :mod:`distilkit.measure.parity`): the trained model itself, fake
    quantization included, for ``none`` and QAT; for post-training quantization, the trained float
    model with the deployment quantizer's fake quantization attached (PTQ trains without it).
    """

    float_model: nn.Module
    torch_model: nn.Module
    precision: str
    reference: nn.Module
    parity_key: str = ""  # the parity tolerance (distilkit.measure.parity.RTOL) to check against; "" = precision

    def __post_init__(self):
        self.parity_key = self.parity_key or self.precision


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

