"""Console output without a terminal: one log line per epoch and per stage; the rich bar on a terminal."""

from __future__ import annotations

import io
import logging
import re

import lightning as L
import pytest
from lightning.pytorch.callbacks import RichProgressBar
from transformers import BertConfig, BertForSequenceClassification

from distilkit.data import SyntheticData
from distilkit.losses import CrossEntropy
from distilkit.models.tokenizer import train_wordpiece
from distilkit.training import console_log
from distilkit.training.console_log import EpochLines, progress_callback, stage
from distilkit.training.module import DistillModule


class _Stdout(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_is_lines_without_a_terminal_and_the_rich_bar_with_one(monkeypatch):
    monkeypatch.setattr(console_log.sys, "stdout", _Stdout(tty=False))
    assert isinstance(progress_callback(), EpochLines)
    monkeypatch.setattr(console_log.sys, "stdout", _Stdout(tty=True))
    assert isinstance(progress_callback(), RichProgressBar)


def test_one_line_per_epoch_with_loss_val_metric_and_elapsed(caplog):
    import torch

    data = SyntheticData(num_train=48, num_dev=16, num_test=16, max_length=16, batch_size=16)
    data.tokenize(train_wordpiece(data.texts("train"), 120))
    torch.manual_seed(0)
    model = BertForSequenceClassification(
        BertConfig(vocab_size=120, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, num_labels=2)
    )
    module = DistillModule(model, CrossEntropy(), optimizer=lambda p: torch.optim.SGD(p, lr=0.1), log_prefix="teacher/")
    trainer = L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_model_summary=False, callbacks=[EpochLines()])
    with caplog.at_level(logging.INFO, logger="distilkit"):
        trainer.fit(module, datamodule=data)
    lines = [r.getMessage() for r in caplog.records if r.name == "distilkit"]
    assert len(lines) == 2, lines
    for epoch, line in enumerate(lines, start=1):
        assert re.fullmatch(rf"epoch {epoch}/2  teacher/train/loss \d+\.\d{{4}}  teacher/val/acc [01]\.\d{{4}}  elapsed \d+ s", line), line


def test_stage_logs_start_and_duration_and_failure(caplog):
    with caplog.at_level(logging.INFO, logger="distilkit"):
        with stage("teacher logits"):
            pass
        with pytest.raises(KeyError), stage("measure"):
            raise KeyError("x")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "teacher logits: started" and re.fullmatch(r"teacher logits: done in \d+\.\d s", lines[1])
    assert lines[2] == "measure: started" and re.fullmatch(r"measure: failed after \d+\.\d s", lines[3])
