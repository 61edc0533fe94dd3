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
  kernel matched an exact simulation to 1e-6. ``reduce_range=True`` stores 7-bit codes (-64..64,
  ``QInt8``, zero point 0, onnxruntime's own ``reduce_range``): a pair of products is then at most
  2 x 255 x 64 = 32640 < 32767, so the faster uint8 x int8 kernel cannot saturate and stays exact;
  the price is one bit of weight precision, which QAT trains for (measured in
  ``bench/int8_modes.py``).

The word-embedding table (unless kept in fp32) gets the same codes, one scale per row (per token
vector): in ONNX a ``Gather`` of the int8 codes, ``Cast`` to float and ``Mul`` by the gathered row
scales (:func:`int8_embedding_nodes`; the int8 table replaces the fp32 one in the file), in torch
:class:`Int8Embedding`. Both dequantize exactly as the fake quantization does (``q * scale``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.ao.nn.quantized.dynamic as nnqd
from onnx import helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic
from torch import Tensor, nn

from distilkit.export.onnx import atomic_output
from distilkit.quantize.fake_quant import int8_codes
from distilkit.quantize.onnx_graph import ORT_QUANTIZE_OPTIONS, load_for_quantization, quantize_word_embedding, quiet_ort_logging
from distilkit.quantize.targets import replace_modules


def dynamic_int8_linear(linear: nn.Linear, reduce_range: bool = False) -> nnqd.Linear:
    """A torch dynamic-quantized copy of ``linear`` with the shared int8 (``reduce_range``: 7-bit) weight codes."""
    q, scale = int8_codes(linear.weight, reduce_range)
    dequantized = q * scale[:, None]  # re-quantizing grid points with the same scales gives back q exactly
    qweight = torch.quantize_per_channel(
        dequantized, scale.double(), torch.zeros_like(scale, dtype=torch.long), 0, torch.qint8
    )
    qlinear = nnqd.Linear(linear.in_features, linear.out_features, bias_=linear.bias is not None, dtype=torch.qint8)
    bias = None if linear.bias is None else linear.bias.detach().float()
    qlinear.set_weight_bias(qweight, bias)
    return qlinear


class Int8Embedding(nn.Module):
    """Embedding holding int8 codes and one scale per row; looked-up rows are dequantized."""

    def __init__(self, embedding: nn.Embedding):
        super().__init__()
        q, scale = int8_codes(embedding.weight)
        self.register_buffer("codes", q.to(torch.int8))  # [num_embeddings, embedding_dim]
        self.register_buffer("scale", scale)  # [num_embeddings]

    def dequantized_weight(self) -> Tensor:
        """The fp32 table the codes stand for."""
        return self.codes.float() * self.scale[:, None]

    def forward(self, ids: Tensor) -> Tensor:
        return self.codes[ids].float() * self.scale[ids].unsqueeze(-1)

    def extra_repr(self) -> str:
        return f"{self.codes.shape[0]}, {self.codes.shape[1]}"


def to_int8_torch(model: nn.Module, keep_fp32: Sequence[str], reduce_range: bool = False) -> nn.Module:
    """The torch int8 runtime model: dynamic quantization of every non-kept Linear (``reduce_range``: 7-bit
    weights), int8 word embeddings (always 8-bit: a lookup, no integer GEMM)."""
    return replace_modules(
        model, keep_fp32, lambda m: Int8Embedding(m) if isinstance(m, nn.Embedding) else dynamic_int8_linear(m, reduce_range)
    )


def int8_embedding_nodes(node: onnx.NodeProto, table: np.ndarray) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """``Gather`` of int8 codes, ``Cast`` to float, ``Mul`` by the gathered per-row scales (replacing ``node``)."""
    q, scale = int8_codes(torch.from_numpy(table))
    name, ids, out = node.input[0], node.input[1], node.output[0]
    codes = numpy_helper.from_array(q.to(torch.int8).numpy(), f"{name}_quantized")
    scales = numpy_helper.from_array(scale[:, None].numpy(), f"{name}_scale")
    nodes = [
        helper.make_node("Gather", [codes.name, ids], [f"{out}_codes"], name=f"{node.name}_codes", axis=0),
        helper.make_node("Cast", [f"{out}_codes"], [f"{out}_float"], name=f"{node.name}_cast",
                         to=onnx.TensorProto.FLOAT),
        helper.make_node("Gather", [scales.name, ids], [f"{out}_scale"], name=f"{node.name}_scale", axis=0),
        helper.make_node("Mul", [f"{out}_float", f"{out}_scale"], [out], name=f"{node.name}_dequantize"),
    ]
    return nodes, [codes, scales]


def quantize_onnx_int8(fp32_onnx: Path, out_path: Path, keep_fp32: Sequence[str], reduce_range: bool = False) -> Path:
    """onnxruntime dynamic 8-bit quantization (per-channel symmetric weights: ``QUInt8`` with zero point 128, or
    ``reduce_range``: 7-bit ``QInt8``) of the fp32 export; int8 word embeddings."""
    model, nodes = load_for_quantization(fp32_onnx, keep_fp32)
    quantize_word_embedding(model, keep_fp32, int8_embedding_nodes)
    with atomic_output(out_path) as tmp, quiet_ort_logging():
        quantize_dynamic(
            model,
            tmp,
            op_types_to_quantize=["MatMul"],
            nodes_to_quantize=nodes,
            per_channel=True,
            reduce_range=reduce_range,
            weight_type=QuantType.QInt8 if reduce_range else QuantType.QUInt8,
            extra_options=dict(ORT_QUANTIZE_OPTIONS),
        )
    return Path(out_path)
