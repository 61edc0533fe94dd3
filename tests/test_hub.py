"""Hub loading by name or directory: the real from_pretrained path, tested offline."""

from __future__ import annotations

import shutil
import time

import pytest
import torch

from distilkit.errors import ConfigError
from distilkit.fingerprint import FileHashes
from distilkit.models.student import DistilStudent
from distilkit.models.teacher import PretrainedTeacher

from conftest import MINILM, needs_shared_minilm


def test_saved_directory_loads_like_a_hub_name(tiny_bert_dir):
    model, tokenizer = PretrainedTeacher(str(tiny_bert_dir)).build([], num_labels=3)
    assert model.config.num_labels == 3 and model.config.num_hidden_layers == 4
    enc = tokenizer(["the movie was good ."], return_tensors="pt")
    assert model(**enc).logits.shape == (1, 3)


def test_hub_name_offline_without_cache_fails_fast_with_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        PretrainedTeacher("bert-base-uncased").build([], num_labels=2)
    assert time.perf_counter() - start < 30  # no minute of retries
    message = str(err.value)
    assert err.value.key == "name_or_path" and "'bert-base-uncased'" in message and "\n" not in message
    for hint in ("connect once", "HF_HOME", "name_or_path=DIR"):
        assert hint in message


def test_missing_local_directory(tmp_path):
    with pytest.raises(ConfigError, match="not a model directory"):
        PretrainedTeacher(str(tmp_path / "nope")).build([], num_labels=2)


@needs_shared_minilm
def test_real_minilm_teacher_and_distil_student():
    teacher, tokenizer = PretrainedTeacher(str(MINILM)).build([], num_labels=2)
    assert teacher.config.num_hidden_layers == 6 and teacher.config.hidden_size == 384
    assert sum(p.numel() for p in teacher.bert.parameters()) == pytest.approx(22.7e6, rel=0.01)
    student = DistilStudent(layer_map=[0, 2, 4]).build(teacher)
    for s, t in enumerate([0, 2, 4]):
        assert torch.equal(student.bert.encoder.layer[s].output.dense.weight, teacher.bert.encoder.layer[t].output.dense.weight)
    enc = tokenizer(["a stirring , funny and finally transporting re-imagining"], return_tensors="pt")
    assert enc["input_ids"][0, 0].item() == tokenizer.cls_token_id
    assert student(**enc).logits.shape == (1, 2)


def test_directory_counts_by_content_not_by_path(tiny_bert_dir, monkeypatch, tmp_path):
    hashes = FileHashes(tmp_path / "file_hashes.json")
    monkeypatch.chdir(tiny_bert_dir.parent)
    relative = PretrainedTeacher(f"./{tiny_bert_dir.name}").fingerprint(hashes)
    assert relative == PretrainedTeacher(str(tiny_bert_dir)).fingerprint(hashes)
    copy = shutil.copytree(tiny_bert_dir, tmp_path / "elsewhere")
    assert PretrainedTeacher(str(copy)).fingerprint(hashes) == relative
    (copy / "config.json").write_text((copy / "config.json").read_text().replace('"hidden_act"', '"hidden_act" ', 1))
    assert PretrainedTeacher(str(copy)).fingerprint(hashes) != relative  # one byte of one file
    assert relative != PretrainedTeacher("bert-base-uncased").fingerprint(hashes)
