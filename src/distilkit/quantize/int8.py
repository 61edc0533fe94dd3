"""Real int8 models: torch dynamic-quantized Linear and onnxruntime ``MatMulInteger``.

Both runtimes quantize weights per output channel, symmetric, with the codes of
:func:`distilkit.quantize.fake_quant.int8_codes`, and quantize activations at run time from each
tensor's own range ("dynamic quantization").

* torch: ``torch.ao.nn.quantized.dynamic.Linear`` (fbgemm/x86 kernels; deprecated since torch 2.10
  in favour of torchao but working in 2.13). fbgemm quantizes activations to 7 bits
  (``reduce_range``) so that its int16 accumulation cannot saturate.
* ONNX: ``DynamicQuantizeLinear`` + ``MatMulInteger`` from ``onnxruntime.quantization.quantize_dynamic``
  with 8-bit activations. Weights are stored as ``QUInt8`` with zero point 128 (the same codes
  shifted by 128) rather than ``QInt8``: on x86 CPUs without AVX-512 VNNI, MLAS's uint8 x int8
  kernel adds pairs of products in saturating int16 (``vpmaddubsw``): on one 384x384 layer with
  N(0, 1) inputs its outputs were off by up to 18 % of their range, while the uint8 x uint8
  kernel matched an exact simulation to 1e-6.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.ao.nn.quantized.dynamic as nnqd
from onnxruntime.quantization import QuantType, quantize_dynamic
from torch import nn

from distilkit.export.onnx import atomic_output
from distilkit.quantize.fake_quant import int8_codes
from distilkit.quantize.onnx_graph import load_for_quantization, quiet_ort_logging
from distilkit.quantize.targets import replace_linears


def dynamic_int8_linear(linear: nn.Linear) -> nnqd.Linear:
    """A torch dynamic-quantized copy of ``linear`` with the shared int8 weight codes."""
    q, scale = int8_codes(linear.weight)
    dequantized = q * scale[:, None]  # re-quantizing grid points with the same scales gives back q exactly
    qweight = torch.quantize_per_channel(
        dequantized, scale.double(), torch.zeros_like(scale, dtype=torch.long), 0, torch.qint8
    )
    qlinear = nnqd.Linear(linear.in_features, linear.out_features, bias_=linear.bias is not None, dtype=torch.qint8)
    bias = None if linear.bias is None else linear.bias.detach().float()
    qlinear.set_weight_bias(qweight, bias)
    return qlinear


def to_int8_torch(model: nn.Module, keep_fp32: Sequence[str]) -> nn.Module:
    """The torch int8 runtime model (dynamic quantization of every non-kept Linear)."""
    return replace_linears(model, keep_fp32, dynamic_int8_linear)


def quantize_onnx_int8(fp32_onnx: Path, out_path: Path, keep_fp32: Sequence[str]) -> Path:
    """onnxruntime dynamic 8-bit quantization (per-channel symmetric weights) of the fp32 export."""
    model, nodes = load_for_quantization(fp32_onnx, keep_fp32)
    with atomic_output(out_path) as tmp, quiet_ort_logging():
        quantize_dynamic(
            model,
            tmp,
            op_types_to_quantize=["MatMul"],
            nodes_to_quantize=nodes,
            per_channel=True,
            reduce_range=False,
            weight_type=QuantType.QUInt8,
            extra_options={"MatMulConstBOnly": True, "WeightSymmetric": True},
        )
    return Path(out_path)
