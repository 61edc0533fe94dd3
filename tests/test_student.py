"""Student construction: DistilBERT layer copies and scratch configs."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from distilkit.errors import ConfigError
from distilkit.models.student import DistilStudent, ScratchStudent, default_layer_map


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=6, num_attention_heads=2, intermediate_size=32, num_labels=3)
    return BertForSequenceClassification(config).eval()


def _params(module):
    return dict(module.named_parameters())


@pytest.mark.parametrize("student,expected_map", [(DistilStudent(), [0, 2, 4]), (DistilStudent(num_layers=2), [0, 3]), (DistilStudent(layer_map=[5, 1]), [5, 1])])
def test_distil_copies_layers_and_embeddings(teacher, student, expected_map):
    model = student.build(teacher)
    assert model.config.num_hidden_layers == len(expected_map)
    for i, t in enumerate(expected_map):
        s_params, t_params = _params(model.bert.encoder.layer[i]), _params(teacher.bert.encoder.layer[t])
        assert s_params.keys() == t_params.keys()
        for name in s_params:
            assert torch.equal(s_params[name], t_params[name]), (i, t, name)
    for part in ("embeddings", "pooler"):
        for (n1, p1), (n2, p2) in zip(getattr(model.bert, part).named_parameters(), getattr(teacher.bert, part).named_parameters()):
            assert n1 == n2 and torch.equal(p1, p2)
    assert torch.equal(model.classifier.weight, teacher.classifier.weight)
    # copies, not shared storage
    assert model.bert.embeddings.word_embeddings.weight.data_ptr() != teacher.bert.embeddings.word_embeddings.weight.data_ptr()


def test_full_layer_map_reproduces_teacher(teacher):
    model = DistilStudent(layer_map=list(range(6))).build(teacher).eval()
    ids = torch.randint(0, 50, (2, 7))
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, teacher(input_ids=ids).logits)


def test_default_layer_map():
    assert default_layer_map(12, 6) == [0, 2, 4, 6, 8, 10]
    assert default_layer_map(6, 3) == [0, 2, 4]


def test_num_layers_above_teacher(teacher):
    with pytest.raises(ConfigError) as err:
        DistilStudent(num_layers=7).build(teacher)
    assert err.value.key == "num_layers" and "1..6" in err.value.message


def test_layer_map_out_of_range(teacher):
    with pytest.raises(ConfigError) as err:
        DistilStudent(layer_map=[0, 6]).build(teacher)
    assert err.value.key == "layer_map" and "[6]" in err.value.message


def test_scratch_student_shape(teacher):
    model = ScratchStudent(num_layers=1, hidden_size=8, num_attention_heads=2, intermediate_size=16).build(teacher)
    assert (model.config.num_hidden_layers, model.config.hidden_size, model.config.vocab_size, model.config.num_labels) == (1, 8, 50, 3)
    with pytest.raises(ConfigError, match="hidden_size"):
        ScratchStudent(hidden_size=10, num_attention_heads=3)
