"""Cache keys follow content: file digests are remembered by size+mtime, a changed teacher is retrained."""

from __future__ import annotations

import os
import shutil

from transformers import BertForSequenceClassification

from distilkit.fingerprint import FileHashes, hub_commit, library_versions
from distilkit.pipeline import run
from distilkit.training.logit_store import LogitStore


def test_file_digest_is_remembered_by_size_and_mtime(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"a" * 100)
    hashes = FileHashes(tmp_path / "memo.json")
    first = hashes.digest(path)
    stat = path.stat()
    path.write_bytes(b"b" * 100)  # same size; put the old mtime back: the memo answers, unread
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert FileHashes(tmp_path / "memo.json").digest(path) == first  # read back from the memo file
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert FileHashes(tmp_path / "memo.json").digest(path) != first


def test_versions_and_offline_commit():
    assert set(library_versions()) == {"torch", "transformers"}
    assert hub_commit("nobody/no-such-model-anywhere") is None  # offline, not cached


def test_overwritten_local_teacher_is_retrained_and_its_logits_recomputed(compose_cfg, tiny_bert_dir, tmp_path, monkeypatch):
    teacher_dir = shutil.copytree(tiny_bert_dir, tmp_path / "my_teacher")
    overrides = ("teacher=minilm", f"teacher.name_or_path={teacher_dir}", "teacher.finetune.max_epochs=1", "trainer.fast_dev_run=true")
    run(compose_cfg(*overrides), {})
    computed, fits = [], []
    original = LogitStore.get_or_compute
    monkeypatch.setattr(LogitStore, "get_or_compute", lambda self, key, shape, compute: original(self, key, shape, lambda: computed.append(key) or compute()))
    from distilkit.pipeline import Run

    finetune = Run.finetune
    monkeypatch.setattr(Run, "finetune", lambda self, model, spec: fits.append(1) or finetune(self, model, spec))
    run(compose_cfg(*overrides), {})
    assert computed == [] and fits == []  # unchanged directory: everything from the cache
    model = BertForSequenceClassification.from_pretrained(teacher_dir)
    for p in model.parameters():
        p.data.mul_(0.5)
    model.save_pretrained(teacher_dir)  # same path, new weights
    run(compose_cfg(*overrides), {})
    assert fits == [1] and len(computed) == 3  # teacher fine-tuned again, logits of every split recomputed
    assert len(list((tmp_path / ".cache/distilkit/teachers").iterdir())) == 2
