"""fp32 ONNX export: graph interface, agreement with torch, atomic writes."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from distilkit.export.onnx import atomic_output, export_onnx, ort_logits, ort_session


def tiny_bert(seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, num_labels=3)
    return BertForSequenceClassification(config).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = tiny_bert().train()
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "sub" / "model.onnx", seq_len=16)
    assert model.training  # exported in eval mode, mode restored
    return model.eval(), path


def test_graph_interface(exported):
    _, path = exported
    graph = onnx.load(str(path)).graph
    inputs = {i.name: i.type.tensor_type for i in graph.input}
    assert list(inputs) == ["input_ids", "attention_mask"]
    for tensor_type in inputs.values():
        assert tensor_type.elem_type == onnx.TensorProto.INT64
        assert all(d.dim_param and not d.dim_value for d in tensor_type.shape.dim)  # batch and seq symbolic
    assert [o.name for o in graph.output] == ["logits"]
    assert not list(path.parent.glob(".*tmp"))


@pytest.mark.parametrize("batch, seq", [(1, 1), (1, 16), (3, 7), (4, 64)])
def test_onnx_matches_torch(exported, batch, seq):
    model, path = exported
    generator = torch.Generator().manual_seed(batch * 100 + seq)
    ids = torch.randint(0, 100, (batch, seq), generator=generator)
    mask = torch.ones_like(ids)
    mask[0, seq // 2 + 1:] = 0  # padding in the first row
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask).logits.numpy()
    got = ort_logits(ort_session(path, threads=1), ids, mask)
    assert got.shape == (batch, 3)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_export_rejects_seq_len_beyond_positions(tmp_path):
    with pytest.raises(ValueError, match="seq_len"):
        export_onnx(tiny_bert(), tmp_path / "m.onnx", seq_len=65)


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.onnx"
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("export failed")
    assert list(tmp_path.iterdir()) == []
    with atomic_output(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole" and list(tmp_path.iterdir()) == [target]


def test_ort_session_threads(exported):
    _, path = exported
    session = ort_session(path, threads=1)
    assert session.get_session_options().intra_op_num_threads == 1
    assert session.get_providers() == ["CPUExecutionProvider"]
