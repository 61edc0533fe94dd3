"""export.fuse: onnxruntime's transformer fusions on fp32 and int8 exports; parity still holds."""

from __future__ import annotations

import onnx
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from distilkit.errors import ConfigError
from distilkit.export.fuse import check_fuse, fuse_all, fused_path
from distilkit.export.onnx import export_onnx
from distilkit.measure import parity
from distilkit.prune import HeadPruner
from distilkit.quantize import PTQDynamicQuantizer, PTQStaticQuantizer, QATInt4Quantizer, QATInt8Quantizer


def ops(path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def tiny_bert(**kw) -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  max_position_embeddings=64, num_labels=2)
    return BertForSequenceClassification(BertConfig(**(config | kw))).eval()


def session_ops(path) -> list[str]:
    """The op types of ``path``'s graph after the session's own optimizations (``ORT_ENABLE_ALL``, as deployed)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(path) + ".session.onnx"
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]


def assert_residual_norms_split(path, layers: int) -> None:
    """The offline pass fused each layer's two residual Add + LayerNorm (4 per 2 layers: onnxruntime 1.30 left them
    unfused beside MultiHeadAttention) and split them into Sum + LayerNormalization, which the session keeps."""
    graph = onnx.load(str(path)).graph
    producer = {o: n.op_type for n in graph.node for o in n.output}
    norms = [n for n in graph.node if n.op_type == "LayerNormalization"]
    assert len(norms) == 2 * layers + 1  # + the embeddings' LayerNorm
    assert sorted(producer.get(n.input[0]) for n in norms).count("Sum") == 2 * layers
    deployed = session_ops(path)
    assert "SkipLayerNormalization" not in deployed and deployed.count("LayerNormalization") == 2 * layers + 1


def padded_batch() -> dict[str, torch.Tensor]:
    ids = torch.randint(1, 100, (96, 12), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[::3, 8:] = 0
    mask[1::7, 3:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def test_fused_fp32_keeps_parity(tmp_path):
    model = tiny_bert()
    fp32 = export_onnx(model, tmp_path / "student.onnx", seq_len=12)
    fused_fp32, again = fuse_all(True, fp32, fp32)  # the fused int8 graph: tests/test_vocab.py's pipeline run
    assert fused_fp32 == again == fused_path(fp32)
    assert "SkipLayerNormalization" not in ops(fp32)
    assert "BiasGelu" in ops(fused_fp32)
    assert_residual_norms_split(fused_fp32, layers=2)
    dev = padded_batch()
    m = parity.parity_metrics(parity.torch_logits(model, dev), parity.onnx_logits(fused_fp32, dev), "fp32")
    assert m[parity.PASS] == 1.0
    assert fuse_all(False, fp32) == (fp32,)


@pytest.mark.parametrize("pruned", [0.0, 0.5])  # pruner=heads 50 %: layers with their own head counts
def test_fused_attention_is_one_node_per_layer_and_keeps_parity(tmp_path, pruned):
    model = tiny_bert(hidden_size=48, num_attention_heads=6)
    if pruned:
        model = HeadPruner(pruned).prepare(model).eval()
    heads = [layer.attention.self.num_attention_heads for layer in model.bert.encoder.layer]
    assert sum(heads) == round(12 * (1 - pruned))
    before = model.config._attn_implementation
    fp32 = export_onnx(model, tmp_path / "student.onnx", seq_len=12, fuse_attention=True)
    graph = onnx.load(str(fp32)).graph
    fused = [n for n in graph.node if n.op_type == "MultiHeadAttention"]
    assert len(fused) == 2 and {n.domain for n in fused} == {"com.microsoft"}
    assert [next(a.i for a in n.attribute if a.name == "num_heads") for n in fused] == heads
    assert not {"Softmax", "Where", "IsNaN"} & ops(fp32)  # no scores chain, no [batch, 1, seq, seq] mask: the key padding mask only
    assert model.config._attn_implementation == before  # only the export saw the fused attention
    fused_fp32 = fuse_all(True, fp32)[0]  # the offline fusions still apply on top
    assert "MultiHeadAttention" in ops(fused_fp32)
    assert_residual_norms_split(fused_fp32, layers=2)
    dev = padded_batch()
    for path in (fp32, fused_fp32):
        m = parity.parity_metrics(parity.torch_logits(model, dev), parity.onnx_logits(path, dev), "fp32")
        assert m[parity.PASS] == 1.0 and m["deploy/parity_max_abs_logit_diff"] < 1e-4, m


QUANTIZERS = [PTQDynamicQuantizer(), QATInt8Quantizer(reduce_range=True), QATInt4Quantizer(group_size=16), PTQStaticQuantizer(calibration_batches=1)]


@pytest.mark.parametrize("quantizer", QUANTIZERS, ids=lambda q: type(q).__name__)
def test_every_quantizer_deploys_the_fused_attention_export(quantizer, tmp_path):
    model = quantizer.prepare(tiny_bert())
    dev = padded_batch()
    model.train()(**{k: v[:8] for k, v in dev.items()})  # ptq_static records its calibration batch in training
    converted = quantizer.convert(model.eval())
    fp32 = export_onnx(converted.float_model, tmp_path / "student.onnx", seq_len=12, fuse_attention=True)
    deployed = fuse_all(True, quantizer.quantize_onnx(fp32, tmp_path / "student.q.onnx"))[0]
    assert "MultiHeadAttention" in ops(deployed)
    assert ops(deployed) & {"MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMulNBits", "QuantizeLinear"}
    if isinstance(quantizer, PTQStaticQuantizer):
        return  # its parity fails on onnxruntime's static kernels, fused or not (README; bench/int8_modes.py)
    m = parity.parity_metrics(parity.torch_logits(converted.reference, dev), parity.onnx_logits(deployed, dev), converted.parity_key)
    assert m[parity.PASS] == 1.0, m


def test_fuse_must_be_a_bool():
    with pytest.raises(ConfigError, match="export.fuse"):
        check_fuse("yes")


def test_fused_attention_function_equals_sdpa_and_falls_back_where_the_op_does_not_fit():
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from transformers.masking_utils import bidirectional_mask_function

    from distilkit.export.attention import attention, padding_mask

    module = torch.nn.Module().eval()
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 5, 8, generator=g) for _ in range(3))
    mask = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    mask[1, :, :, 3:] = False  # the second row's last two tokens are padding
    calls = []
    original = torch.ops.distilkit.mha
    try:
        torch.ops.distilkit.mha = lambda *a: calls.append(a) or original(*a)
        fused, _ = attention(module, q, k, v, mask, scaling=0.3)
        assert len(calls) == 1
        expected, _ = sdpa_attention_forward(module, q, k, v, mask, scaling=0.3)
        torch.testing.assert_close(fused, expected)
        padding = padding_mask(2, 5, 5, mask_function=bidirectional_mask_function, attention_mask=mask[:, 0, 0].long())
        assert padding.shape == (2, 1, 1, 5)  # a bidirectional model's mask: the keys only, MultiHeadAttention's key_padding_mask
        torch.testing.assert_close(attention(module, q, k, v, padding, scaling=0.3)[0], expected)
        assert calls[-1][3].shape == (2, 5) and calls[-1][4] is None
        module.num_key_value_groups = 2  # grouped-query attention: 2 key/value heads for 4 query heads
        grouped, _ = attention(module, q, k[:, :2], v[:, :2], mask, scaling=0.3)
        assert len(calls) == 2  # not the fused op: MultiHeadAttention needs one key/value head per query head
        torch.testing.assert_close(grouped, sdpa_attention_forward(module, q, k[:, :2], v[:, :2], mask, scaling=0.3)[0])
    finally:
        torch.ops.distilkit.mha = original
