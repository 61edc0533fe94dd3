"""``quantizer=qat_int8``: quantization-aware training for int8 (Jacob et al. 2018).

Training: each Linear not in ``keep_fp32`` sees int8 fake-quantized weights (per output channel,
symmetric) and uint8 fake-quantized inputs (EMA min/max observer, frozen once ``freeze_at`` of
training is done), with straight-through gradients; the word-embedding table (unless kept in
fp32) is fake-quantized per row (one scale per token vector). Conversion: the same per-channel
weight codes run in torch dynamic-quantized Linear layers and in onnxruntime ``MatMulInteger``
(:mod:`distilkit.quantize.int8`), the embedding codes in an int8 table looked up and dequantized
per row; the fake-quantized weights seen in training equal the deployed weights exactly.
Deployed activations are quantized dynamically, per tensor and per batch: the learned ranges
model 8-bit activation noise during training and are not exported.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import nn

from distilkit.quantize.base import Converted, check_unit_interval
from distilkit.quantize.fake_quant import ActivationFakeQuant, Int8WeightFakeQuant
from distilkit.quantize.int8 import quantize_onnx_int8, to_int8_torch
from distilkit.quantize.qat import QATQuantizer, strip_fake_quant


class QATInt8Quantizer(QATQuantizer):
    """int8 QAT; ``freeze_at``: fraction of training after which activation ranges stop updating."""

    def __init__(self, keep_fp32: Sequence[str] = ("classifier",), freeze_at: float = 0.8):
        super().__init__(keep_fp32)
        self.freeze_at = check_unit_interval("freeze_at", freeze_at)

    def input_fake_quant(self) -> nn.Module:
        return ActivationFakeQuant()

    def weight_fake_quant(self) -> nn.Module:
        return Int8WeightFakeQuant()

    def on_train_progress(self, model: nn.Module, fraction: float) -> None:
        observing = fraction < self.freeze_at
        for module in model.modules():
            if isinstance(module, ActivationFakeQuant):
                module.observing = observing

    def convert(self, model: nn.Module) -> Converted:
        float_model = strip_fake_quant(model)
        return Converted(float_model, to_int8_torch(float_model, self.keep_fp32), precision="int8")

    def quantize_onnx(self, fp32_onnx: Path, out_path: Path) -> Path:
        return quantize_onnx_int8(fp32_onnx, out_path, self.keep_fp32)
