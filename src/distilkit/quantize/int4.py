"""Real int4 models: torch ``_weight_int4pack_mm_for_cpu`` and onnxruntime ``MatMulNBits``.

Weights are quantized group-wise (``group_size`` consecutive input features per output channel),
symmetric, with the codes of :func:`distilkit.quantize.fake_quant.int4_codes`.

* ONNX: ``onnxruntime.quantization.matmul_nbits_quantizer.MatMulNBitsQuantizer`` replaces each
  weight ``MatMul`` by ``com.microsoft::MatMulNBits`` (4-bit weights packed two per byte, one float
  scale per group, no zero point: implicit 8). ``accuracy_level=4`` makes the kernel quantize the
  activations to int8 per block at run time and use int8 dot products, matching QAT's int8
  activations.
* torch: :class:`Int4Linear` calls ``torch.ops.aten._weight_int4pack_mm_for_cpu`` (the CPU int4
  kernel behind torchao's int4 weight-only layout), weight-only: activations stay fp32.

Shape limits of the torch kernel (checked by :func:`check_int4_shapes`): ``group_size`` in
{32, 64, 128, 256}, ``in_features % group_size == 0`` and ``out_features % 16 == 0``.
``MatMulNBits`` accepts every power-of-two block size >= 16 and pads K, so the torch limits are
the binding ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import onnx
import torch
from torch import Tensor, nn

from distilkit.errors import ConfigError
from distilkit.export.onnx import atomic_output
from distilkit.quantize.fake_quant import int4_codes
from distilkit.quantize.int8 import replace_linears
from distilkit.quantize.onnx_graph import load_for_quantization, quiet_ort_logging, weight_matmuls

with quiet_ort_logging():  # importing it calls logging.basicConfig(level=INFO)
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

GROUP_SIZES = (32, 64, 128, 256)
OUT_FEATURES_MULTIPLE = 16
ACCURACY_LEVEL_INT8 = 4  # MatMulNBits: int8 activations, int8 dot products


def check_group_size(group_size: int) -> int:
    """``ConfigError("group_size")`` unless it is one of :data:`GROUP_SIZES`."""
    if isinstance(group_size, bool) or group_size not in GROUP_SIZES:
        raise ConfigError(
            "group_size",
            f"must be one of {', '.join(map(str, GROUP_SIZES))} (the group sizes of the CPU int4 kernels), "
            f"got {group_size!r}",
        )
    return int(group_size)


def check_int4_shapes(linears: Mapping[str, nn.Linear], group_size: int) -> None:
    """``ConfigError`` naming the key to change if a Linear cannot run on the int4 kernels."""
    for name, linear in linears.items():
        if linear.in_features % group_size:
            raise ConfigError(
                "group_size",
                f"{group_size} does not divide in_features={linear.in_features} of {name}; "
                f"use a divisor from {GROUP_SIZES} or add {name} to keep_fp32",
            )
        if linear.out_features % OUT_FEATURES_MULTIPLE:
            raise ConfigError(
                "keep_fp32",
                f"{name} has out_features={linear.out_features}, but the CPU int4 kernel needs a multiple of "
                f"{OUT_FEATURES_MULTIPLE}; add {name} to keep_fp32",
            )


class Int4Linear(nn.Module):
    """Linear layer with packed int4 weights, run by ``torch.ops.aten._weight_int4pack_mm_for_cpu``."""

    def __init__(self, linear: nn.Linear, group_size: int):
        super().__init__()
        self.in_features, self.out_features, self.group_size = linear.in_features, linear.out_features, group_size
        q, scale = int4_codes(linear.weight, group_size)
        unsigned = (q + 8).to(torch.int32).contiguous()
        self.register_buffer("packed", torch.ops.aten._convert_weight_to_int4pack_for_cpu(unsigned, 1))
        # kernel layout [groups, out, 2]: (scale, offset); dequantized w = (q_unsigned - 8) * scale + offset
        scales_and_zeros = torch.stack([scale, torch.zeros_like(scale)], dim=-1).transpose(0, 1).contiguous()
        self.register_buffer("scales_and_zeros", scales_and_zeros)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().float().clone(), requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(-1, self.in_features).float().contiguous()
        out = torch.ops.aten._weight_int4pack_mm_for_cpu(flat, self.packed, self.group_size, self.scales_and_zeros)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, group_size={self.group_size}"


def to_int4_torch(model: nn.Module, keep_fp32: Sequence[str], group_size: int) -> nn.Module:
    """The torch int4 runtime model (every non-kept Linear replaced by :class:`Int4Linear`)."""
    return replace_linears(model, keep_fp32, lambda linear: Int4Linear(linear, group_size))


def quantize_onnx_int4(fp32_onnx: Path, out_path: Path, keep_fp32: Sequence[str], group_size: int) -> Path:
    """onnxruntime ``MatMulNBits`` 4-bit quantization of the fp32 export."""
    model = load_for_quantization(fp32_onnx)
    nodes = weight_matmuls(model, keep_fp32)
    with quiet_ort_logging():
        quantizer = MatMulNBitsQuantizer(
            model,
            bits=4,
            block_size=group_size,
            is_symmetric=True,
            accuracy_level=ACCURACY_LEVEL_INT8,
            nodes_to_include=nodes,
            op_types_to_quantize=("MatMul",),
        )
        quantizer.process()
    with atomic_output(out_path) as tmp:
        onnx.save(quantizer.model.model, str(tmp))
    return Path(out_path)
