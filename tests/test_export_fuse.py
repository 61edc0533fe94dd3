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


def ops(path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_fused_fp32_keeps_parity(tmp_path):
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                                     intermediate_size=64, max_position_embeddings=64, num_labels=2)).eval()
    fp32 = export_onnx(model, tmp_path / "student.onnx", seq_len=12)
    fused_fp32, again = fuse_all(True, fp32, fp32)  # the fused int8 graph: tests/test_vocab.py's pipeline run
    assert fused_fp32 == again == fused_path(fp32)
    assert "SkipLayerNormalization" not in ops(fp32)
    assert {"SkipLayerNormalization", "BiasGelu"} <= ops(fused_fp32)
    ids = torch.randint(1, 100, (96, 12), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[::3, 8:] = 0
    dev = {"input_ids": ids, "attention_mask": mask}
    m = parity.parity_metrics(parity.torch_logits(model, dev), parity.onnx_logits(fused_fp32, dev), "fp32")
    assert m[parity.PASS] == 1.0
    assert fuse_all(False, fp32) == (fp32,)


def test_fuse_must_be_a_bool():
    with pytest.raises(ConfigError, match="export.fuse"):
        check_fuse("yes")
