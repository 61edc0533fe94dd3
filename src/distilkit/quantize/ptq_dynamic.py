"""``quantizer=ptq_dynamic``: post-training dynamic int8 quantization.

No training changes. After training, weights of every Linear not in ``keep_fp32`` are quantized
to int8 per output channel (symmetric) and activations are quantized to uint8 at run time from
each tensor's range (Jacob et al. 2018 arithmetic; "dynamic quantization" in torch and
onnxruntime). The word-embedding table (unless kept in fp32) is quantized to int8 per row. See
:mod:`distilkit.quantize.int8`. The parity reference (``Converted.reference``) is a copy of the
trained model with ``qat_int8``'s fake quantization attached: what the deployed ONNX model
should compute, so a deployment bug is told apart from the (untrained-for) quantization error.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from distilkit.errors import check_bool
from distilkit.quantize.base import Converted, Quantizer
from distilkit.quantize.int8 import quantize_onnx_int8, to_int8_torch
from distilkit.quantize.qat_int8 import QATInt8Quantizer
from distilkit.quantize.targets import check_keep_fp32, quantized_linears


class PTQDynamicQuantizer(Quantizer):
    """Post-training dynamic int8 quantization; ``keep_fp32`` lists module names/prefixes left in fp32."""

    def __init__(self, keep_fp32: Sequence[str] = ("classifier",), reduce_range: bool = False):
        self.keep_fp32 = check_keep_fp32(keep_fp32)
        self.reduce_range = check_bool(reduce_range, "reduce_range")

    def check(self, model: nn.Module) -> None:
        quantized_linears(model, self.keep_fp32)  # validates keep_fp32 against the model

    def prepare(self, model: nn.Module) -> nn.Module:
        self.check(model)
        return model

    def convert(self, model: nn.Module) -> Converted:
        reference = QATInt8Quantizer(self.keep_fp32, self.reduce_range).prepare(copy.deepcopy(model)).eval()
        return Converted(float_model=model, torch_model=to_int8_torch(model, self.keep_fp32, self.reduce_range), precision="int8",
                         reference=reference)

    def quantize_onnx(self, fp32_onnx: Path, out_path: Path) -> Path:
        return quantize_onnx_int8(fp32_onnx, out_path, self.keep_fp32, self.reduce_range)
