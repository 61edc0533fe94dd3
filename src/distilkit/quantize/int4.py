"""Real int4 models: onnxruntime ``MatMulNBits`` and packed 4-bit weights in torch.

Weights are quantized group-wise (``group_size`` consecutive input features per output channel),
symmetric, with the codes of :func:`distilkit.quantize.fake_quant.int4_codes`.

* ONNX: ``onnxruntime.quantization.matmul_nbits_quantizer.MatMulNBitsQuantizer`` replaces each
  weight ``MatMul`` by ``com.microsoft::MatMulNBits`` (4-bit weights packed two per byte, one float
  scale per group, implicit zero point 8). ``accuracy_level=4`` makes the kernel quantize the
  activations to int8 per block at run time and use int8 dot products, which QAT emulates.
* torch: :class:`Int4Linear` stores the packed 4-bit codes and group scales in ``MatMulNBits``' own
  layout and, on CPU, runs that same onnxruntime kernel on them (one single-node session per layer,
  built on first use), so the torch model that decodes causal LMs computes what the ONNX file and
  ``qat_int4`` compute, at int4 speed (``bench/lm_kernels.py``). Elsewhere (GPU tensors, other
  dtypes, autograd) it dequantizes the codes and rounds its input the same way in torch. torch's int4
  CPU kernel ``aten._weight_int4pack_mm_for_cpu`` was tried instead: 40-80x slower than dequantizing
  in fp32 on this AVX2 CPU without AVX-512, about 2x the fp32 matmul in bf16 (and bf16 activations
  are not what ``qat_int4`` trains), so it is not used.

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
import onnxruntime as ort
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper
from torch import Tensor, nn

from distilkit.errors import ConfigError
from distilkit.export.onnx import atomic_output, ort_session
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


def matmul_nbits_session(packed: Tensor, scale: Tensor, bias: Tensor | None, group_size: int,
                         threads: int) -> ort.InferenceSession:
    """A one-node onnxruntime session ``Y = MatMulNBits(X)`` over packed codes ``[out, in / 2]`` and group scales
    ``[out, in / group_size]`` (4 bits, zero point 8, ``accuracy_level=4``), the node ``quantize_onnx_int4`` writes.

    ``threads`` intra-op threads that sleep between calls (no spinning: one model holds a session per layer)."""
    out_features, in_features = packed.shape[0], 2 * packed.shape[1]
    blocks = in_features // group_size
    inits = [numpy_helper.from_array(packed.numpy().reshape(out_features, blocks, group_size // 2), "B"),
             numpy_helper.from_array(scale.numpy().reshape(-1), "scales")]
    inputs = ["X", "B", "scales"]
    if bias is not None:  # inputs 3 and 4 (zero points, g_idx) left out
        inits.append(numpy_helper.from_array(bias.numpy(), "bias"))
        inputs += ["", "", "bias"]
    node = helper.make_node("MatMulNBits", inputs, ["Y"], domain="com.microsoft", K=in_features, N=out_features,
                            bits=4, block_size=group_size, accuracy_level=ACCURACY_LEVEL_INT8)
    graph = helper.make_graph([node], "int4_linear", [helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)])
    return ort_session(model.SerializeToString(), threads)


class Int4Linear(nn.Module):
    """Linear layer holding packed 4-bit weight codes and per-group scales.

    Its input is rounded to int8 in blocks of ``group_size`` features, as ``MatMulNBits`` with
    ``accuracy_level=4`` does and as ``qat_int4`` trains: the torch model computes what was trained
    (and what the ONNX file computes), which matters where it is the deployed model (causal LMs).
    fp32 CPU inputs without autograd run onnxruntime's ``MatMulNBits`` kernel itself (one session per
    torch thread count, not saved or pickled); any other input the same arithmetic in torch."""

    def __init__(self, linear: nn.Linear, group_size: int):
        super().__init__()
        self.in_features, self.out_features, self.group_size = linear.in_features, linear.out_features, group_size
        q, scale = int4_codes(linear.weight, group_size)
        self.register_buffer("packed", pack_int4(q))  # [out, in / 2]
        self.register_buffer("scale", scale)  # [out, in / group_size]
        bias = None if linear.bias is None else linear.bias.detach().float().clone()
        self.register_buffer("bias", bias)
        self._sessions: dict[int, ort.InferenceSession] = {}

    def dequantized_weight(self) -> Tensor:
        """The fp32 ``[out, in]`` weight the codes stand for."""
        groups = unpack_int4(self.packed).reshape(self.out_features, -1, self.group_size)
        return (groups * self.scale[..., None]).reshape(self.out_features, self.in_features)

    def kernel(self) -> ort.InferenceSession:
        """The ``MatMulNBits`` session for the current ``torch.get_num_threads()`` (built on first use)."""
        threads = torch.get_num_threads()
        if threads not in self._sessions:
            self._sessions[threads] = matmul_nbits_session(self.packed, self.scale, self.bias, self.group_size, threads)
        return self._sessions[threads]

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type == "cpu" and x.dtype == torch.float32 and not (torch.is_grad_enabled() and x.requires_grad):
            return torch.from_numpy(self.kernel().run(None, {"X": x.detach().contiguous().numpy()})[0])
        return F.linear(int8_block_fake_quant(x.float(), self.group_size), self.dequantized_weight(), self.bias).to(x.dtype)

    def _apply(self, fn, recurse=True):  # .to(), .float(), ...: sessions hold copies of the old buffers
        self._sessions = {}
        return super()._apply(fn, recurse)

    def _load_from_state_dict(self, *args, **kwargs):  # load_state_dict: the same
        self._sessions = {}
        return super()._load_from_state_dict(*args, **kwargs)

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "_sessions": {}}

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
