"""Sequence-level KD (Kim & Rush 2016) on the tiny teacher: the student trains on the teacher's stored continuations."""

from __future__ import annotations

import pytest
import torch

import distilkit.tasks.causal_lm as causal_lm
from distilkit.errors import ConfigError
from distilkit.pipeline import Run
from distilkit.training.sequence_kd import SequenceStore, prompts_from
from test_lm_compress import FAST

SEQ = [*FAST, "loss=lm_ce",
       "task.sequence_kd.prompts=6", "task.sequence_kd.prompt_tokens=4", "task.sequence_kd.new_tokens=6"]


def test_student_trains_on_stored_teacher_continuations_generated_once(compose_cfg, monkeypatch, shared_cache_dir):
    generated, fitted = [], []
    original = causal_lm.teacher_continuations
    monkeypatch.setattr(causal_lm, "teacher_continuations", lambda *a, **k: generated.append(1) or original(*a, **k))
    original_fit = Run.fit
    monkeypatch.setattr(Run, "fit", lambda self, student, teacher: fitted.append(self.data.inputs("train")) or original_fit(self, student, teacher))
    first = Run(compose_cfg(*SEQ, f"paths.cache_dir={shared_cache_dir}"), {})
    metrics = first()
    assert generated == [1] and metrics["measure/sequence_kd_prompts"] == 6 and metrics["measure/train_blocks"] == 6
    trained_on = fitted[0]["input_ids"][:, :10]
    assert trained_on.shape == (6, 10) and (fitted[0]["attention_mask"].sum(1) == 10).all()  # 4 prompt + 6 new tokens per block
    # the blocks are corpus prompts continued greedily by the teacher: regenerate one and compare
    teacher = first.teacher()[0]
    prompts = prompts_from(_corpus_blocks(first), 6, 4)
    assert torch.equal(trained_on[:, :4], prompts)
    again = teacher.generate(input_ids=prompts[2:3], attention_mask=torch.ones(1, 4, dtype=torch.long), do_sample=False,
                             max_new_tokens=6, min_new_tokens=6, pad_token_id=0)
    assert torch.equal(again[0], trained_on[2])
    (entry,) = SequenceStore(first.cfg.paths.cache_dir).root.glob("*.pt")
    stored = torch.load(entry, weights_only=True)
    assert torch.equal(stored["input_ids"], trained_on) and len(stored["texts"]) == 6 and all(stored["texts"])
    # a second run with another loss: the continuations come from the store, no generation; same training blocks
    second = Run(compose_cfg(*SEQ, "loss=lm_fkl", f"paths.cache_dir={shared_cache_dir}"), {})
    second()
    assert generated == [1] and torch.equal(fitted[1]["input_ids"][:, :10], trained_on)


def _corpus_blocks(run):
    """The corpus's training blocks, as the run tokenized them before sequence KD replaced them."""
    fresh = Run(run.cfg, {})
    fresh.data.tokenize(run.teacher()[1])
    return fresh.data.encoded["train"]["input_ids"]


def test_prompt_plus_continuation_longer_than_a_block_is_one_line(compose_cfg):
    with pytest.raises(ConfigError, match=r"^task.sequence_kd.new_tokens: prompt_tokens \+ new_tokens = 70 is more than a block"):
        Run(compose_cfg(*SEQ, "task.sequence_kd.new_tokens=66", "data.max_length=64"), {}).preflight()


def test_prompts_are_evenly_spaced_windows_of_the_token_stream():
    blocks = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
    assert prompts_from(blocks, 3, 3).tolist() == [[1, 2, 3], [5, 6, 7], [8, 9, 10]]  # offsets 0, round(3.5), 7
