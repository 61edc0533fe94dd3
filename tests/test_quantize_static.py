"""quantizer=ptq_static: calibration on training batches only, QDQ graph with calibrated scales, parity
measured against the float model with the int8_static tolerance."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from transformers import BertConfig, BertForSequenceClassification

from distilkit.errors import ConfigError
from distilkit.export.onnx import export_onnx
from distilkit.measure import parity
from distilkit.quantize import PTQStaticQuantizer


def test_ptq_static_calibrates_on_training_batches_and_deploys_qdq(tmp_path):
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                                     intermediate_size=64, max_position_embeddings=64, num_labels=2))
    quantizer = PTQStaticQuantizer(calibration_batches=3)
    quantizer.prepare(model)
    gen = torch.Generator().manual_seed(2)
    model.train()
    for _ in range(5):  # "training" forwards: only the first 3 are kept
        ids = torch.randint(1, 100, (8, 12), generator=gen)
        model(input_ids=ids, attention_mask=torch.ones_like(ids))
    model.eval()
    model(input_ids=ids[:1], attention_mask=torch.ones_like(ids[:1]))  # an eval call is not calibration data
    assert len(quantizer.calibration) == 3 and all(b["input_ids"].shape == (8, 12) for b in quantizer.calibration)
    converted = quantizer.convert(model)
    assert not model._forward_pre_hooks and converted.parity_key == "int8_static" and converted.precision == "int8"
    fp32 = export_onnx(model, tmp_path / "student.onnx", seq_len=12)
    int8 = quantizer.quantize_onnx(fp32, tmp_path / "student.int8.onnx")
    graph = onnx.load(str(int8)).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("QuantizeLinear") >= 8 and "DequantizeLinear" in ops
    # activation scales are fixed numbers from calibration (not computed at run time)
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    scales = [inits[n.input[1]] for n in graph.node if n.op_type == "QuantizeLinear" and n.input[1] in inits]
    assert scales and all(np.all(s > 0) for s in scales)
    ids = torch.randint(1, 100, (64, 12), generator=gen)
    dev = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    m = parity.parity_metrics(parity.torch_logits(converted.reference, dev), parity.onnx_logits(int8, dev), converted.parity_key)
    assert m[parity.PASS] == 1.0 and 0 < m[parity.MAX_ABS]  # real int8 error, within the static tolerance
    assert m[parity.TOLERANCE] == pytest.approx(parity.RTOL["int8_static"] * float(converted.reference(**dev).logits.abs().max()), rel=1e-5)


def test_ptq_static_needs_calibration(tmp_path):
    with pytest.raises(ConfigError, match="calibration_batches"):
        PTQStaticQuantizer(calibration_batches=0)
    with pytest.raises(ConfigError, match="calibration_batches"):
        PTQStaticQuantizer().quantize_onnx(tmp_path / "none.onnx", tmp_path / "out.onnx")
