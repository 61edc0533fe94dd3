"""Preparing an fp32 ONNX export for onnxruntime's quantizers.

:func:`load_for_quantization` loads the export and picks the nodes to quantize:

* ``graph.value_info`` is cleared: the dynamo exporter records intermediate shapes that
  onnxruntime's quantization tools fail to reconcile with their own shape inference.
* A ``MatMul`` or ``Gemm`` node with a constant 2-D weight is a Linear layer; the exporter's
  ``pkg.torch.onnx.name_scopes`` node metadata names its module, and the ``keep_fp32`` rule of
  :mod:`distilkit.quantize.targets` decides whether it is quantized. Attention-score MatMuls (no
  constant operand) are never quantized.
* Selected ``Gemm`` nodes (the exporter emits them for Linear layers on 2-D inputs, i.e. the
  pooler, and the classifier unless kept) become ``MatMul`` + ``Add``: onnxruntime quantizes
  ``MatMul`` only (``MatMulInteger`` for int8, ``MatMulNBits`` for int4), and this way every
  quantized Linear is quantized in ONNX exactly as in torch.

:func:`quantize_word_embedding` then replaces the word-embedding lookup (the ``Gather`` of a constant
table by the ``input_ids`` graph input) by a quantizer-specific lookup of low-bit codes, and drops
the fp32 table, unless ``keep_fp32`` keeps its module (onnxruntime's quantizers would quantize
embedding tables per tensor at best).
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from distilkit.errors import ConfigError
from distilkit.export.onnx import INPUT_NAMES
from distilkit.export.opsets import import_domains
from distilkit.quantize.targets import is_kept

NAME_SCOPES = "pkg.torch.onnx.name_scopes"
# onnxruntime quantizer options of both int8 paths (int8.quantize_onnx_int8, ptq_static): symmetric weights, only MatMuls
# with a constant weight, and float for tensors its shape inference cannot type (the outputs of com.microsoft nodes
# such as export.fuse's MultiHeadAttention)
ORT_QUANTIZE_OPTIONS = {"MatMulConstBOnly": True, "WeightSymmetric": True, "DefaultTensorType": onnx.TensorProto.FLOAT}
EmbeddingRewrite = Callable[[onnx.NodeProto, np.ndarray], tuple[list[onnx.NodeProto], list[onnx.TensorProto]]]


@contextmanager
def quiet_ort_logging() -> Iterator[None]:
    """Contain onnxruntime.quantization's logging side effects.

    It logs through the root logger (which installs a root handler when there is none), and importing
    ``matmul_nbits_quantizer`` calls ``logging.basicConfig(level=INFO)``. Inside this block root
    records below ERROR are dropped; afterwards the root logger's level and handlers are restored.
    """
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers


def _scopes(node: onnx.NodeProto) -> list[str] | None:
    for prop in node.metadata_props:
        if prop.key == NAME_SCOPES:
            return ast.literal_eval(prop.value)
    return None


def _kept(node: onnx.NodeProto, keep_fp32: Sequence[str]) -> bool:
    """Whether ``keep_fp32`` keeps the module ``node`` comes from (by its name scopes)."""
    scopes = _scopes(node)
    if scopes is None and keep_fp32:
        raise ValueError(
            f"ONNX node {node.name!r} has no {NAME_SCOPES} metadata, so keep_fp32 cannot be applied; "
            "export with distilkit.export.onnx.export_onnx"
        )
    return any(is_kept(scope, keep_fp32) for scope in scopes or [])


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    used = {name for node in graph.node for name in node.input}
    initializers = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(initializers)


def _gemm_as_matmul(node: onnx.NodeProto, weight: onnx.TensorProto) -> tuple[list[onnx.NodeProto], onnx.TensorProto] | None:
    """``Y = A @ B' + C`` as ``MatMul`` (+ ``Add``) with a new weight initializer; ``None`` if not that form."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0 or attrs.get("transA", 0):
        return None
    array = numpy_helper.to_array(weight)
    matrix = numpy_helper.from_array((array.T if attrs.get("transB", 0) else array).copy(), f"{weight.name}_matmul")
    has_bias = len(node.input) > 2 and bool(node.input[2])
    product = f"{node.output[0]}_matmul" if has_bias else node.output[0]
    matmul = helper.make_node("MatMul", [node.input[0], matrix.name], [product], name=f"{node.name}_matmul")
    matmul.metadata_props.extend(node.metadata_props)
    nodes = [matmul]
    if has_bias:
        nodes.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=f"{node.name}_bias"))
    return nodes, matrix


def load_for_quantization(path: Path, keep_fp32: Sequence[str]) -> tuple[onnx.ModelProto, list[str]]:
    """The fp32 export made ready for onnxruntime quantization, and the ``MatMul`` nodes to quantize."""
    model = onnx.load(str(path))
    graph = model.graph
    del graph.value_info[:]
    weights = {init.name: init for init in graph.initializer if len(init.dims) == 2}
    nodes, selected = [], []
    for node in graph.node:
        if node.op_type not in ("MatMul", "Gemm") or node.input[1] not in weights:
            nodes.append(node)
            continue
        if _kept(node, keep_fp32):
            nodes.append(node)
            continue
        if node.op_type == "MatMul":
            nodes.append(node)
            selected.append(node.name)
            continue
        rewritten = _gemm_as_matmul(node, weights[node.input[1]])
        if rewritten is None:
            nodes.append(node)  # a Gemm that is not a plain Linear stays fp32
            continue
        new_nodes, matrix = rewritten
        nodes.extend(new_nodes)
        graph.initializer.append(matrix)
        selected.append(new_nodes[0].name)
    del graph.node[:]
    graph.node.extend(nodes)
    _drop_unused_initializers(graph)
    if not selected:
        raise ConfigError("keep_fp32", f"{list(keep_fp32)!r} leaves no weight MatMul of the ONNX model to quantize")
    return model, selected


def quantize_word_embedding(model: onnx.ModelProto, keep_fp32: Sequence[str], rewrite: EmbeddingRewrite) -> bool:
    """Replace the word-embedding lookup by ``rewrite(node, table)`` unless ``keep_fp32`` keeps it; whether it did.

    ``rewrite`` gets the ``Gather`` node and the fp32 table and returns the nodes that compute the
    node's output from the new initializers it also returns; they get the node's name scopes.
    The fp32 table is dropped unless another node uses it; new domains' opsets are imported
    (version 1). ``ValueError`` unless the graph has exactly one such lookup.
    """
    graph = model.graph
    tables = {init.name: init for init in graph.initializer if len(init.dims) == 2}
    lookups = [i for i, node in enumerate(graph.node)
               if node.op_type == "Gather" and node.input[0] in tables and node.input[1] == INPUT_NAMES[0]]
    if len(lookups) != 1:
        raise ValueError(f"expected one Gather of a constant table by {INPUT_NAMES[0]!r} (the word embeddings), "
                         f"found {len(lookups)}")
    index = lookups[0]
    node = graph.node[index]
    if _kept(node, keep_fp32):
        return False
    table = numpy_helper.to_array(tables[node.input[0]]).copy()  # writable, for torch.from_numpy
    new_nodes, initializers = rewrite(node, table)
    for new in new_nodes:
        new.metadata_props.extend(p for p in node.metadata_props if p.key == NAME_SCOPES)
    nodes = list(graph.node)
    nodes[index:index + 1] = new_nodes
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(initializers)
    _drop_unused_initializers(graph)
    import_domains(model, (new.domain for new in new_nodes))
    return True
