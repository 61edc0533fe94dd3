"""Real int4 models: onnxruntime ``MatMulNBits`` and packed 4-bit weights in torch.

Weights are quantized group-wise (``group_size`` consecutive input features per output channel),
symmetric, with the codes of :func:`distilkit.quantize.fake_quant.int4_codes`.

* ONNX: ``onnxruntime.quantization.matmul_nbits_quantizer.MatMulNBitsQuantizer`` replaces each
  weight ``MatMul`` by ``com.microsoft::MatMulNBits`` (4-bit weights packed two per byte, one float
  scale per group, implicit zero point 8). ``accuracy_level=4`` makes the kernel quantize the
  activations to int8 per block at run time and use int8 dot products, which QAT emulates.
* torch: :class:`Int4Linear` stores the packed 4-bit codes and group scales and dequantizes them
  to fp32 for each forward pass (weight-only int4: real 4-bit storage, fp32 compute). torch's int4
  CPU kernel ``aten._weight_int4pack_mm_for_cpu`` gives the same outputs but ran 40-80x slower
  than this on an AVX2 CPU without AVX-512 (384x1536 layer, 64 and 2048 rows), so it is not used.

``MatMulNBits`` supports block sizes 16 to 256 (powers of two); ``in_features`` must be a multiple
of ``group_size`` so that training and deployment use the same groups.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import onnx
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distilkit.errors import ConfigError
from distilkit.export.onnx import atomic_output
from distilkit.quantize.fake_quant import int4_codes
from distilkit.quantize.onnx_graph import load_for_quantization, quiet_ort_logging
from distilkit.quantize.targets import replace_linears

with quiet_ort_logging():  # importing it calls logging.basicConfig(level=INFO)
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

GROUP_SIZES = (16, 32, 64, 128, 256)
ACCURACY_LEVEL_INT8 = 4  # MatMulNBits: int8 activations, int8 dot products


def check_group_size(group_size: int) -> int:
    """``ConfigError("group_size")`` unless it is one of :data:`GROUP_SIZES`."""
    if isinstance(group_size, bool) or group_size not in GROUP_SIZES:
        raise ConfigError(
            "group_size",
            f"must be one of {', '.join(map(str, GROUP_SIZES))} (the block sizes of onnxruntime MatMulNBits), "
            f"got {group_size!r}",
        )
    return int(group_size)


def check_int4_shapes(linears: Mapping[str, nn.Linear], group_size: int) -> None:
    """``ConfigError("group_size")`` if ``group_size`` does not divide a quantized Linear's ``in_features``."""
    for name, linear in linears.items():
        if linear.in_features % group_size:
            raise ConfigError(
                "group_size",
                f"{group_size} does not divide in_features={linear.in_features} of {name}; "
                f"use a divisor from {GROUP_SIZES} or add {name} to keep_fp32",
            )


class Int4Linear(nn.Module):
    """Linear layer holding packed 4-bit weight codes and per-group scales (weight-only int4)."""

    def __init__(self, linear: nn.Linear, group_size: int):
        super().__init__()
        self.in_features, self.out_features, self.group_size = linear.in_features, linear.out_features, group_size
        q, scale = int4_codes(linear.weight, group_size)
        codes = (q + 8).to(torch.uint8)
        self.register_buffer("packed", codes[:, 0::2] | (codes[:, 1::2] << 4))  # [out, in / 2]
        self.register_buffer("scale", scale)  # [out, in / group_size]
        bias = None if linear.bias is None else linear.bias.detach().float().clone()
        self.register_buffer("bias", bias)

    def dequantized_weight(self) -> Tensor:
        """The fp32 ``[out, in]`` weight the codes stand for."""
        codes = torch.stack([self.packed & 0x0F, self.packed >> 4], dim=-1).reshape(self.out_features, -1)
        groups = (codes.float() - 8).reshape(self.out_features, -1, self.group_size)
        return (groups * self.scale[..., None]).reshape(self.out_features, self.in_features)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x.float(), self.dequantized_weight(), self.bias).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, group_size={self.group_size}"


def to_int4_torch(model: nn.Module, keep_fp32: Sequence[str], group_size: int) -> nn.Module:
    """The torch int4 model (every non-kept Linear replaced by :class:`Int4Linear`)."""
    return replace_linears(model, keep_fp32, lambda linear: Int4Linear(linear, group_size))


def quantize_onnx_int4(fp32_onnx: Path, out_path: Path, keep_fp32: Sequence[str], group_size: int) -> Path:
    """onnxruntime ``MatMulNBits`` 4-bit quantization (int8 activations) of the fp32 export."""
    model, nodes = load_for_quantization(fp32_onnx, keep_fp32)
    selected = set(nodes)
    others = [node.name for node in model.graph.node if node.op_type == "MatMul" and node.name not in selected]
    with quiet_ort_logging():
        quantizer = MatMulNBitsQuantizer(
            model,
            bits=4,
            block_size=group_size,
            is_symmetric=True,
            accuracy_level=ACCURACY_LEVEL_INT8,
            nodes_to_exclude=others,  # its nodes_to_include only adds to op_types_to_quantize
            op_types_to_quantize=("MatMul",),
        )
        quantizer.process()
    with atomic_output(out_path) as tmp:
        onnx.save(quantizer.model.model, str(tmp))
    return Path(out_path)
