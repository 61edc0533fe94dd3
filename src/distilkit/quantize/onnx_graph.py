"""Preparing an fp32 ONNX export for onnxruntime's quantizers.

* ``graph.value_info`` is cleared: the dynamo exporter records intermediate shapes that
  onnxruntime's quantization tools fail to reconcile with their own shape inference.
* ``Gemm`` nodes with a constant weight (the exporter emits them for Linear layers on 2-D inputs:
  pooler and classifier) become ``MatMul`` (+ ``Add`` for the bias): onnxruntime quantizes
  ``MatMul`` only (``MatMulInteger`` for int8, ``MatMulNBits`` for int4), and this way every
  quantized Linear is quantized in ONNX exactly as in torch.
* :func:`weight_matmuls` picks the ``MatMul`` nodes with a constant weight whose module (from the
  exporter's ``pkg.torch.onnx.name_scopes`` node metadata) is not kept in fp32; attention-score
  MatMuls (no constant operand) are never quantized.
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import onnx
from onnx import helper, numpy_helper

from distilkit.errors import ConfigError
from distilkit.quantize.targets import is_kept

NAME_SCOPES = "pkg.torch.onnx.name_scopes"


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


def load_for_quantization(path: Path) -> onnx.ModelProto:
    """Load the fp32 export, clear ``value_info`` and rewrite constant-weight ``Gemm`` to ``MatMul``."""
    model = onnx.load(str(path))
    del model.graph.value_info[:]
    _gemm_to_matmul(model.graph)
    return model


def _gemm_to_matmul(graph: onnx.GraphProto) -> None:
    initializers = {init.name: init for init in graph.initializer}
    nodes = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 and not attrs.get("transA", 0)
        if node.op_type != "Gemm" or not plain or node.input[1] not in initializers:
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(initializers[node.input[1]])
        if attrs.get("transB", 0):
            weight = weight.T
        weight_name = f"{node.input[1]}_matmul"
        graph.initializer.append(numpy_helper.from_array(weight.copy(), weight_name))
        has_bias = len(node.input) > 2 and node.input[2]
        matmul_out = f"{node.output[0]}_matmul" if has_bias else node.output[0]
        matmul = helper.make_node("MatMul", [node.input[0], weight_name], [matmul_out], name=f"{node.name}_matmul")
        matmul.metadata_props.extend(node.metadata_props)
        nodes.append(matmul)
        if has_bias:
            nodes.append(helper.make_node("Add", [matmul_out, node.input[2]], [node.output[0]], name=f"{node.name}_bias"))
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _scopes(node: onnx.NodeProto) -> list[str] | None:
    for prop in node.metadata_props:
        if prop.key == NAME_SCOPES:
            return ast.literal_eval(prop.value)
    return None


def weight_matmuls(model: onnx.ModelProto, keep_fp32: Sequence[str]) -> list[str]:
    """Names of the ``MatMul`` nodes with a constant 2-D weight that are not kept in fp32."""
    weights = {init.name for init in model.graph.initializer if len(init.dims) == 2}
    names = []
    for node in model.graph.node:
        if node.op_type != "MatMul" or node.input[1] not in weights:
            continue
        scopes = _scopes(node)
        if scopes is None and keep_fp32:
            raise ValueError(
                f"ONNX node {node.name!r} has no {NAME_SCOPES} metadata, so keep_fp32 cannot be applied; "
                "export with distilkit.export.onnx.export_onnx"
            )
        if not any(is_kept(scope, keep_fp32) for scope in scopes or []):
            names.append(node.name)
    if not names:
        raise ConfigError("keep_fp32", f"{list(keep_fp32)!r} leaves no weight MatMul of the ONNX model to quantize")
    return names
