"""``quantizer=qat_int4``: QAT for 4-bit group-wise weights with int8 activations.

Training: each Linear not in ``keep_fp32`` sees 4-bit weights quantized in groups of
``group_size`` input features (symmetric, one scale per group, the MLAS ``MatMulNBits`` scheme)
and inputs quantized to int8 in blocks of ``group_size`` features (symmetric, dynamic), which is
exactly what ``MatMulNBits`` with ``accuracy_level=4`` computes at run time; gradients are
straight-through. The word-embedding table (unless kept in fp32) is fake-quantized to 4 bits in
groups of ``group_size`` features of each row. Activation scales are dynamic, so there is no
observer to freeze. Group-wise scales follow the fine-grained weight quantization used for 4-bit
LLM weights (e.g. GPTQ, Frantar et al. 2023; AWQ, Lin et al. 2024). Conversion: onnxruntime ``MatMulNBits`` and, in
torch, packed 4-bit weights dequantized per forward, inputs rounded to int8 blocks as in training; the embedding becomes
``GatherBlockQuantized``; see :mod:`distilkit.quantize.int4`. ``prepare`` checks that
``group_size`` divides every quantized Linear's ``in_features`` and the embedding width.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import nn

from distilkit.quantize.base import Converted
from distilkit.quantize.fake_quant import BlockActivationFakeQuant, Int4WeightFakeQuant
from distilkit.quantize.int4 import check_group_size, check_int4_shapes, quantize_onnx_int4, to_int4_torch
from distilkit.quantize.qat import QATQuantizer, strip_fake_quant
from distilkit.quantize.targets import quantized_modules


class QATInt4Quantizer(QATQuantizer):
    """int4 weight / int8 activation QAT; ``group_size`` in {16, 32, 64, 128, 256}."""

    def __init__(self, keep_fp32: Sequence[str] = ("classifier",), group_size: int = 32):
        super().__init__(keep_fp32)
        self.group_size = check_group_size(group_size)

    def input_fake_quant(self) -> nn.Module:
        return BlockActivationFakeQuant(self.group_size)

    def weight_fake_quant(self) -> nn.Module:
        return Int4WeightFakeQuant(self.group_size)

    def check(self, model: nn.Module) -> None:
        """Preflight: ``group_size`` against the (pruned, meta-device) student's widths."""
        check_int4_shapes(quantized_modules(model, self.keep_fp32), self.group_size)

    def prepare(self, model: nn.Module) -> nn.Module:
        check_int4_shapes(quantized_modules(model, self.keep_fp32), self.group_size)
        return super().prepare(model)

    def convert(self, model: nn.Module) -> Converted:
        float_model = strip_fake_quant(model)
        torch_model = to_int4_torch(float_model, self.keep_fp32, self.group_size)
        return Converted(float_model, torch_model, precision="int4", reference=model)

    def quantize_onnx(self, fp32_onnx: Path, out_path: Path) -> Path:
        return quantize_onnx_int4(fp32_onnx, out_path, self.keep_fp32, self.group_size)
