"""``quantizer=qat_int8``: quantization-aware training for int8 (Jacob et al. 2018), trained as deployed.

Training: each Linear not in ``keep_fp32`` sees int8 fake-quantized weights (per output channel,
symmetric) and inputs fake-quantized to uint8 *dynamically*, per tensor and per batch, with
exactly the scale, zero point and rounding of onnxruntime's ``DynamicQuantizeLinear``
(:func:`distilkit.quantize.fake_quant.dynamic_uint8_fake_quant`); gradients are straight-through.
The word-embedding table (unless kept in fp32) is fake-quantized per row (one scale per token
vector). Conversion: the same per-channel weight codes run in onnxruntime ``MatMulInteger``
(uint8 weights with zero point 128, or with ``reduce_range=true`` 7-bit int8 weights, which run
onnxruntime's faster uint8 x int8 kernel without saturating; see :mod:`distilkit.quantize.int8`) after
``DynamicQuantizeLinear`` of the input, and in torch dynamic-quantized Linear layers; the embedding
codes in an int8 table looked up and dequantized per row. So the deployed ONNX model computes what
the fake-quantized model computed in training, up to float summation order (checked by the run's
parity metrics, :mod:`distilkit.measure.parity`). Activation ranges are not learned: there is no
observer and nothing to freeze. (The torch int8 model is a second runtime whose fbgemm kernels
quantize activations to 7 bits; it is measured, not what QAT emulates.)

Why dynamic and not static QDQ (learned, frozen activation scales): measured in
``bench/int8_modes.py`` on the 3-layer MiniLM student on an AVX2 CPU without VNNI, onnxruntime's
static QDQ kernels (``QLinearMatMul``, which also requantizes every Linear output to uint8) did not
reproduce their own Q/DQ simulation (logit differences as large as the quantization error itself),
while the dynamic uint8 x uint8 path is exact; see the results file for latencies.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import nn

from distilkit.errors import check_bool
from distilkit.quantize.base import Converted
from distilkit.quantize.fake_quant import DynamicActivationFakeQuant, Int8WeightFakeQuant
from distilkit.quantize.int8 import quantize_onnx_int8, to_int8_torch
from distilkit.quantize.qat import QATQuantizer, strip_fake_quant


class QATInt8Quantizer(QATQuantizer):
    """int8 QAT: per-channel int8 weights, dynamic per-tensor uint8 activations (what onnxruntime runs)."""

    def __init__(self, keep_fp32: Sequence[str] = ("classifier",), reduce_range: bool = False):
        super().__init__(keep_fp32)
        self.reduce_range = check_bool(reduce_range, "reduce_range")

    def input_fake_quant(self) -> nn.Module:
        return DynamicActivationFakeQuant()

    def weight_fake_quant(self) -> nn.Module:
        return Int8WeightFakeQuant(self.reduce_range)

    def embedding_fake_quant(self) -> nn.Module:
        return Int8WeightFakeQuant()  # a lookup table, not a GEMM operand: always 8-bit

    def convert(self, model: nn.Module) -> Converted:
        float_model = strip_fake_quant(model)
        return Converted(float_model, to_int8_torch(float_model, self.keep_fp32, self.reduce_range), precision="int8", reference=model)

    def quantize_onnx(self, fp32_onnx: Path, out_path: Path) -> Path:
        return quantize_onnx_int8(fp32_onnx, out_path, self.keep_fp32, self.reduce_range)
