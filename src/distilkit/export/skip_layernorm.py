"""``SkipLayerNormalization`` written back as ``Sum`` + ``LayerNormalization`` (part of ``export.fuse=true``).

onnxruntime's transformer optimizer fuses each residual ``Add`` + ``LayerNormalization`` into one
``com.microsoft`` ``SkipLayerNormalization`` node. On the CPU provider (onnxruntime 1.32) that kernel was
measured slower than the two standard ops it replaces: with them, whole models run 1.10-1.11x (the MiniLM teacher)
to 1.23-1.30x (the int8 students) faster on the AVX-512 VNNI host (``bench/skip_layernorm.py``,
``bench/results/vnni/skip_layernorm.md``). So the fuse pass splits every such node into ``Sum(input, skip[, bias])`` -> ``LayerNormalization(gamma[, beta])``.
``Sum``, not ``Add``: the session's own optimizer (``ORT_ENABLE_ALL``) fuses ``Add`` + ``LayerNormalization``
into ``SkipLayerNormalization`` again when the model is loaded, and leaves ``Sum`` alone, so the file is fast
under default session options, wherever it is deployed. :func:`join_skip_layernorm` is the inverse (for the
benchmark's "as onnxruntime fuses it" side).
"""

from __future__ import annotations

import onnx
from onnx import helper

from distilkit.export.opsets import import_domains, opset_version

SKIP_LN = "SkipLayerNormalization"
DEFAULT_EPSILON = 1e-12  # the contrib op's default (onnxruntime/core/graph/contrib_ops/bert_defs.cc)


def _used(model: onnx.ModelProto) -> set[str]:
    """Every value name some node reads or the graph outputs."""
    used = {name for node in model.graph.node for name in node.input}
    return used | {o.name for o in model.graph.output}


def split_skip_layernorm(model: onnx.ModelProto) -> int:
    """Rewrite, in place, every ``SkipLayerNormalization`` whose mean / inverse-std outputs nobody reads (all of
    a BERT's) as ``Sum`` + ``LayerNormalization`` (same epsilon, last axis); its optional 4th output (input + skip
    + bias) becomes the ``Sum``'s output. Returns how many nodes were split (0 below opset 17, which has no
    ``LayerNormalization``)."""
    if opset_version(model) < 17:
        return 0
    used, nodes, split = _used(model), [], 0
    for node in list(model.graph.node):
        outputs = list(node.output) + [""] * (4 - len(node.output))
        if node.op_type != SKIP_LN or node.domain != "com.microsoft" or used & {o for o in outputs[1:3] if o}:
            nodes.append(node)
            continue
        inputs = list(node.input) + [""] * (5 - len(node.input))
        x, skip, gamma, beta, bias = inputs[:5]
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), DEFAULT_EPSILON)
        total = outputs[3] or f"{node.name or outputs[0]}/sum"
        nodes.append(helper.make_node("Sum", [x, skip] + ([bias] if bias else []), [total], name=f"{node.name}/Sum"))
        nodes.append(helper.make_node("LayerNormalization", [total, gamma] + ([beta] if beta else []), [outputs[0]],
                                      name=f"{node.name}/LayerNormalization", axis=-1, epsilon=eps))
        split += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return split


def join_skip_layernorm(model: onnx.ModelProto) -> int:
    """The inverse of :func:`split_skip_layernorm`, in place: every ``Sum`` of 2 or 3 inputs normalized by one
    last-axis ``LayerNormalization`` becomes one ``SkipLayerNormalization`` (as onnxruntime's optimizer writes it;
    where the sum is read elsewhere too, it is the node's 4th output).
    Returns how many were joined."""
    graph = list(model.graph.node)
    readers: dict[str, list[int]] = {}
    for i, node in enumerate(graph):
        for name in node.input:
            readers.setdefault(name, []).append(i)
    outputs = {o.name for o in model.graph.output}
    joined, drop, nodes = 0, set(), []
    for i, node in enumerate(graph):
        if i in drop:
            continue
        reads = readers.get(node.output[0], []) if node.op_type == "Sum" and len(node.input) in (2, 3) else []
        norms = [j for j in reads if graph[j].op_type == "LayerNormalization" and graph[j].input[0] == node.output[0]]
        ln = graph[norms[0]] if len(norms) == 1 else None
        if ln is None or next((a.i for a in ln.attribute if a.name == "axis"), -1) != -1 or any(ln.output[1:]):
            nodes.append(node)
            continue
        eps = next((a.f for a in ln.attribute if a.name == "epsilon"), 1e-5)
        beta = ln.input[2] if len(ln.input) > 2 else ""
        bias = node.input[2] if len(node.input) > 2 else ""
        inputs = [node.input[0], node.input[1], ln.input[1], beta] + ([bias] if bias else [])
        total = [node.output[0]] if len(reads) > 1 or node.output[0] in outputs else []  # the sum read elsewhere too: output 3
        nodes.append(helper.make_node(SKIP_LN, inputs, [ln.output[0], *(["", ""] + total if total else [])],
                                      name=f"{ln.name}/{SKIP_LN}", domain="com.microsoft", epsilon=eps))
        drop.add(norms[0])
        joined += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    if joined:
        import_domains(model, ["com.microsoft"])
    return joined
