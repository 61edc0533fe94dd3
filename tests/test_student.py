"""Student construction: DistilBERT layer copies, scratch configs, and students of your own (models/custom.py)."""

from __future__ import annotations

import json
from functools import partial

import pytest
import torch
from safetensors.torch import load_model
from torch import nn
from transformers import BertConfig, BertForSequenceClassification

from distilkit.errors import ConfigError
from distilkit.losses import Needs
from distilkit.models.custom import LogitsStudent, build_student, check_serves
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


def test_dropout_sets_every_dropout_of_the_student(teacher):
    teacher.config.classifier_dropout = 0.3
    try:
        kept = DistilStudent(num_layers=2).build(teacher)
        zero = DistilStudent(num_layers=2, dropout=0.0).build(teacher)
    finally:
        teacher.config.classifier_dropout = None
    assert (kept.config.hidden_dropout_prob, kept.config.attention_probs_dropout_prob, kept.config.classifier_dropout) == (0.1, 0.1, 0.3)
    assert (zero.config.hidden_dropout_prob, zero.config.attention_probs_dropout_prob, zero.config.classifier_dropout) == (0.0, 0.0, 0.0)
    assert {m.p for m in kept.modules() if isinstance(m, nn.Dropout)} == {0.1, 0.3}
    assert {m.p for m in zero.modules() if isinstance(m, nn.Dropout)} == {0.0}
    zero.train()  # no dropout: training-mode forward is deterministic and equals eval mode
    ids = torch.randint(0, 50, (2, 7))
    with torch.no_grad():
        assert torch.equal(zero(input_ids=ids).logits, zero(input_ids=ids).logits)
        assert torch.allclose(zero(input_ids=ids).logits, zero.eval()(input_ids=ids).logits)
    assert teacher.config.hidden_dropout_prob == 0.1  # the teacher's own config is untouched
    for bad in (1.0, -0.1, "high", True):
        with pytest.raises(ConfigError) as err:
            DistilStudent(dropout=bad)
        assert err.value.key == "dropout" and "[0, 1)" in err.value.message


def test_scratch_student_shape(teacher):
    model = ScratchStudent(num_layers=1, hidden_size=8, num_attention_heads=2, intermediate_size=16).build(teacher)
    assert (model.config.num_hidden_layers, model.config.hidden_size, model.config.vocab_size, model.config.num_labels) == (1, 8, 50, 3)
    with pytest.raises(ConfigError, match="hidden_size"):
        ScratchStudent(hidden_size=10, num_attention_heads=3)


# --- your own student: build_student, LogitsStudent ----------------------------------------------

class BagOfEmbeddings(nn.Module):
    """A plain module: mean of the real tokens' embeddings, then a linear layer."""

    def __init__(self, vocab_size: int, num_labels: int, width: int = 4, out: int | None = None):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, width)
        self.classifier = nn.Linear(width, out or num_labels)

    def forward(self, input_ids, attention_mask):
        mask = attention_mask[..., None].float()
        return self.classifier((self.embedding(input_ids) * mask).sum(1) / mask.sum(1))


def test_factory_student_is_called_with_teacher_vocab_and_labels_and_wrapped(teacher, tmp_path):
    student = build_student(partial(BagOfEmbeddings, width=6), teacher)
    assert isinstance(student, LogitsStudent) and isinstance(student.model, BagOfEmbeddings)
    assert student.model.embedding.weight.shape == (50, 6) and student.model.classifier.out_features == 3
    config = student.config
    assert (config.num_labels, config.vocab_size, config.max_position_embeddings) == (3, 50, teacher.config.max_position_embeddings)
    ids = torch.randint(0, 50, (2, 5))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1] * 5])
    torch.testing.assert_close(student(input_ids=ids, attention_mask=mask).logits, student.model(ids, mask))
    with pytest.raises(ValueError, match="logits only"):
        student(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    student.save_pretrained(tmp_path)
    fresh = BagOfEmbeddings(50, 3, width=6)
    load_model(fresh, tmp_path / "model.safetensors")  # the module's own names: no wrapper prefix
    torch.testing.assert_close(fresh(ids, mask), student.model(ids, mask))
    assert json.loads((tmp_path / "config.json").read_text())["distilkit_model"].endswith("BagOfEmbeddings")


def test_spec_returning_a_hf_model_is_used_as_is(teacher):
    model = DistilStudent(num_layers=1).build(teacher)
    spec = type("Spec", (), {"build": lambda self, t: model})()
    assert build_student(spec, teacher) is model


@pytest.mark.parametrize("spec, says", [
    (partial(BagOfEmbeddings, out=5), "num_labels=3"),  # wrong number of logits
    (BagOfEmbeddings(50, 3), "_partial_: true"),  # built without the teacher's sizes
    (42, "neither"),
])
def test_bad_student_target(spec, says, teacher):
    with pytest.raises(ConfigError) as err:
        build_student(spec, teacher)
    assert err.value.key == "_target_" and says in err.value.message


def test_logits_only_student_rejects_losses_needing_hidden_states(teacher):
    student = build_student(partial(BagOfEmbeddings), teacher)
    for needs in (Needs.NOTHING, Needs.LOGITS):
        check_serves(student, needs)
    for needs in (Needs.HIDDEN, Needs.HIDDEN_AND_ATTENTIONS):
        with pytest.raises(ConfigError) as err:
            check_serves(student, needs)
        assert err.value.key == "loss" and "logits only" in err.value.message
    check_serves(teacher, Needs.HIDDEN_AND_ATTENTIONS)  # a Hugging Face student serves them
