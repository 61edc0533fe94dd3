"""export.fuse's SkipLayerNormalization split (distilkit.export.skip_layernorm): same outputs, and what the session keeps."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from distilkit.export.skip_layernorm import join_skip_layernorm, split_skip_layernorm

H = 24


def skip_ln_model(bias: bool, beta: bool = True, sum_output: bool = False, mean_output: bool = False, opset: int = 17) -> onnx.ModelProto:
    """x, s -> SkipLayerNormalization -> y (and, with ``sum_output``, x + s + bias read by a second node)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(1, 0.2, H).astype(np.float32), "gamma")]
    inputs = ["x", "s", "gamma"]
    if beta or bias:
        inits.append(numpy_helper.from_array(rng.normal(0, 0.2, H).astype(np.float32), "beta"))
        inputs.append("beta" if beta else "")
    if bias:
        inits.append(numpy_helper.from_array(rng.normal(0, 0.5, H).astype(np.float32), "bias"))
        inputs.append("bias")
    outputs = ["y", "mean" if mean_output else "", "", "sum" if sum_output else ""]
    while outputs[-1] == "":
        outputs.pop()
    nodes = [helper.make_node("SkipLayerNormalization", inputs, outputs, name="sln", domain="com.microsoft", epsilon=1e-6)]
    graph_out = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5, H])]
    if sum_output:
        nodes.append(helper.make_node("Mul", ["sum", "sum"], ["z"], name="square"))
        graph_out.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 5, H]))
    if mean_output:
        graph_out.append(helper.make_tensor_value_info("mean", TensorProto.FLOAT, [2, 5, 1]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 5, H]) for n in ("x", "s")], graph_out, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("com.microsoft", 1)])


def run(model: onnx.ModelProto, level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    feed = {n: rng.normal(0, 2, (2, 5, H)).astype(np.float32) for n in ("x", "s")}
    return session.run(None, feed)


def op_types(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


@pytest.mark.parametrize("bias,beta,sum_output", [(True, True, False), (False, True, False), (False, False, False), (True, True, True)])
def test_split_gives_the_same_outputs_with_standard_ops(bias, beta, sum_output):
    model = skip_ln_model(bias, beta, sum_output)
    expected = run(model)
    split = onnx.ModelProto()
    split.CopyFrom(model)
    assert split_skip_layernorm(split) == 1
    onnx.checker.check_model(split)
    assert op_types(split)[:2] == ["Sum", "LayerNormalization"] and "SkipLayerNormalization" not in op_types(split)
    assert len(split.graph.node[0].input) == (3 if bias else 2)
    for got, want in zip(run(split), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # and back: join writes the node onnxruntime's optimizer writes, same outputs
    assert join_skip_layernorm(split) == 1
    assert op_types(split)[0] == "SkipLayerNormalization"
    for got, want in zip(run(split), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_the_session_does_not_fuse_the_split_graph_again(tmp_path):
    split = skip_ln_model(bias=True)
    split_skip_layernorm(split)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(tmp_path / "session.onnx")
    ort.InferenceSession(split.SerializeToString(), options, providers=["CPUExecutionProvider"])
    assert op_types(onnx.load(options.optimized_model_filepath)) == ["Sum", "LayerNormalization"]


def test_nodes_whose_statistics_are_read_or_below_opset_17_stay():
    read = skip_ln_model(bias=True, mean_output=True)
    assert split_skip_layernorm(read) == 0 and op_types(read) == ["SkipLayerNormalization"]
    old = skip_ln_model(bias=True, opset=16)
    assert split_skip_layernorm(old) == 0 and op_types(old) == ["SkipLayerNormalization"]
