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

The word-embedding table (unless kept in fp32) gets the same codes, in groups of ``group_size``
features of each row: in ONNX ``com.microsoft::GatherBlockQuantized`` (uint8 data with ``bits=4``,
two codes per byte, low nibble first, default zero point 8, one float scale per group;
:func:`int4_embedding_nodes`), in torch :class:`Int4Embedding` (dequantizes the looked-up rows).
Both compute ``(code - 8) * scale``, exactly the fake-quantized table.

``MatMulNBits`` and ``GatherBlockQuantized`` support block sizes 16 to 256 (powers of two);
``in_features`` (and the embedding width) must be a multiple of ``group_size`` so that training
and deployment use the same groups.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper
from torch import Tensor, nn

from distilkit.errors import ConfigError
from distilkit.export.onnx import atomic_output
from distilkit.quantize.fake_quant import int4_codes, int8_block_fake_quant
from distilkit.quantize.onnx_graph import (
    EmbeddingRewrite, load_for_quantization, quantize_word_embedding, quiet_ort_logging,
)
from distilkit.quantize.targets import replace_modules

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


def check_int4_shapes(modules: Mapping[str, nn.Linear | nn.Embedding], group_size: int) -> None:
    """``ConfigError("group_size")`` unless ``group_size`` divides every quantized Linear's ``in_features``
    and the quantized embedding's ``embedding_dim``."""
    for name, module in modules.items():
        width, label = ((module.embedding_dim, "embedding_dim") if isinstance(module, nn.Embedding)
                        else (module.in_features, "in_features"))
        if width % group_size:
            raise ConfigError(
                "group_size",
                f"{group_size} does not divide {label}={width} of {name}; "
                f"use a divisor from {GROUP_SIZES} or add {name} to keep_fp32",
            )


def pack_int4(q: Tensor) -> Tensor:
    """Codes ``-8..7`` ``[..., cols]`` as uint8 ``[..., cols / 2]``: ``q + 8``, two per byte, low nibble first."""
    codes = (q + 8).to(torch.uint8)
    return codes[..., 0::2] | (codes[..., 1::2] << 4)


def unpack_int4(packed: Tensor) -> Tensor:
    """The float codes ``-8..7`` of :func:`pack_int4` output (``[..., cols / 2]`` -> ``[..., cols]``)."""
    return torch.stack([packed & 0x0F, packed >> 4], dim=-1).flatten(-2).float() - 8


class Int4Linear(nn.Module):
    """Linear layer holding packed 4-bit weight codes and per-group scales.

    Its input is rounded to int8 in blocks of ``group_size`` features, as ``MatMulNBits`` with
    ``accuracy_level=4`` does and as ``qat_int4`` trains: the torch model computes what was trained
    (and what the ONNX file computes), which matters where it is the deployed model (causal LMs)."""

    def __init__(self, linear: nn.Linear, group_size: int):
        super().__init__()
        self.in_features, self.out_features, self.group_size = linear.in_features, linear.out_features, group_size
        q, scale = int4_codes(linear.weight, group_size)
        self.register_buffer("packed", pack_int4(q))  # [out, in / 2]
        self.register_buffer("scale", scale)  # [out, in / group_size]
        bias = None if linear.bias is None else linear.bias.detach().float().clone()
        self.register_buffer("bias", bias)

    def dequantized_weight(self) -> Tensor:
        """The fp32 ``[out, in]`` weight the codes stand for."""
        groups = unpack_int4(self.packed).reshape(self.out_features, -1, self.group_size)
        return (groups * self.scale[..., None]).reshape(self.out_features, self.in_features)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(int8_block_fake_quant(x.float(), self.group_size), self.dequantized_weight(), self.bias).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, group_size={self.group_size}"


class Int4Embedding(nn.Module):
    """Embedding holding packed 4-bit codes and per-group scales; looked-up rows are dequantized."""

    def __init__(self, embedding: nn.Embedding, group_size: int):
        super().__init__()
        self.group_size = group_size
        q, scale = int4_codes(embedding.weight, group_size)
        self.register_buffer("packed", pack_int4(q))  # [num_embeddings, embedding_dim / 2]
        self.register_buffer("scale", scale)  # [num_embeddings, embedding_dim / group_size]

    def _dequantize(self, packed: Tensor, scale: Tensor) -> Tensor:
        groups = unpack_int4(packed).unflatten(-1, (-1, self.group_size))
        return (groups * scale[..., None]).flatten(-2)

    def dequantized_weight(self) -> Tensor:
        """The fp32 table the codes stand for."""
        return self._dequantize(self.packed, self.scale)

    def forward(self, ids: Tensor) -> Tensor:
        return self._dequantize(self.packed[ids], self.scale[ids])

    def extra_repr(self) -> str:
        return f"{self.packed.shape[0]}, {2 * self.packed.shape[1]}, group_size={self.group_size}"


def to_int4_torch(model: nn.Module, keep_fp32: Sequence[str], group_size: int) -> nn.Module:
    """The torch int4 model: non-kept Linears as :class:`Int4Linear`, the word embedding as :class:`Int4Embedding`."""
    return replace_modules(
        model, keep_fp32,
        lambda m: Int4Embedding(m, group_size) if isinstance(m, nn.Embedding) else Int4Linear(m, group_size),
    )


def int4_embedding_nodes(group_size: int) -> EmbeddingRewrite:
    """The rewrite of the word-embedding ``Gather`` into ``GatherBlockQuantized`` (4-bit groups of ``group_size``)."""

    def rewrite(node: onnx.NodeProto, table: np.ndarray) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
        q, scale = int4_codes(torch.from_numpy(table), group_size)
        name = node.input[0]
        data = numpy_helper.from_array(pack_int4(q).numpy(), f"{name}_Q4")
        scales = numpy_helper.from_array(scale.numpy(), f"{name}_scales")
        gather = helper.make_node(
            "GatherBlockQuantized", [data.name, node.input[1], scales.name], [node.output[0]], name=f"{node.name}_Q4",
            domain="com.microsoft", bits=4, block_size=group_size, gather_axis=0, quantize_axis=1,
        )
        return [gather], [data, scales]

    return rewrite


def quantize_onnx_int4(fp32_onnx: Path, out_path: Path, keep_fp32: Sequence[str], group_size: int) -> Path:
    """onnxruntime ``MatMulNBits`` 4-bit quantization (int8 activations) of the fp32 export, int4 word embeddings."""
    model, nodes = load_for_quantization(fp32_onnx, keep_fp32)
    quantize_word_embedding(model, keep_fp32, int4_embedding_nodes(group_size))
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
