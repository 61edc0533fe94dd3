"""A run's name, description and end status: FINISHED, KILLED on SIGINT/SIGTERM, FAILED on a diverged loss."""

from __future__ import annotations

import os
import signal

import mlflow
import pytest
import torch

from distilkit.errors import TrainingDiverged
from distilkit.losses.kd import KDLoss
from distilkit.pipeline import Run, run
from distilkit.tracking.mlflow_run import DESCRIPTION_TAG, RunInterrupted
from distilkit.tracking.naming import run_name
from distilkit.training.module import DistillModule


def runs(root):
    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
    return mlflow.search_runs(search_all_experiments=True)


def test_run_name_says_what_differs_from_the_defaults():
    choices = {"data": "sst2", "teacher": "minilm", "student": "distil", "loss": "kd", "quantizer": "qat_int8", "pruner": "none"}
    overrides = ["data=sst2", "data.path=/x", "loss.T=4", "loss.alpha=0.5", "quantizer=qat_int8", "paths.root_dir=/y", "seed=1"]
    assert run_name(choices, overrides, 3) == "sst2: minilm→distil[3] kd T=4 a=0.5 +qat_int8 seed=1"
    assert run_name({**choices, "data": "synthetic"}, ["loss.T=2"], 3) != run_name({**choices, "data": "synthetic"}, ["loss.T=4"], 3)
    swept = ["data=sst2", "teacher.name_or_path=/m/all-MiniLM-L6-v2", "student.num_layers=3", "loss.T=3.709488999964027",
             "loss.alpha=0.8917730007820798", "quantizer=qat_int8"]
    assert run_name(choices, swept, 3) == "sst2: minilm→distil[3] kd T=3.709 a=0.8918 +qat_int8"  # sampler floats shortened
    assert run_name(choices, ["student.num_layers=2"], None) == "sst2: minilm→distil L=2 kd +qat_int8"  # no depth shown: keep L
    averaged = run_name({**choices, "averaging": "ema"}, ["averaging=ema", "averaging.decay=0.995"], 3)
    assert averaged == "sst2: minilm→distil[3] kd +qat_int8 +ema decay=0.995"


def test_run_has_its_name_and_command_line(compose_cfg, shared_cache_dir, tmp_path):
    overrides = ["loss.T=3", "trainer.fast_dev_run=true"]
    run(compose_cfg(*overrides, f"paths.cache_dir={shared_cache_dir}"), {"teacher": "scratch", "student": "distil", "loss": "kd"},
        overrides, "python -m train loss.T=3 trainer.fast_dev_run=true")
    row = runs(tmp_path).iloc[0]
    assert row["tags.mlflow.runName"] == "scratch→distil[1] kd T=3 trainer.fast_dev_run=true"  # tiny teacher: 2 layers
    assert row[f"tags.{DESCRIPTION_TAG}"] == "python -m train loss.T=3 trainer.fast_dev_run=true"
    assert row["status"] == "FINISHED"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_fit_ends_the_run_killed(sig, compose_cfg, shared_cache_dir, tmp_path, monkeypatch):
    def send(self, batch, batch_idx):
        if batch_idx == 1 and self.prefix == "":  # the student's fit, second batch
            os.kill(os.getpid(), sig)

    monkeypatch.setattr(DistillModule, "on_train_batch_start", send)
    with pytest.raises(RunInterrupted) as err:
        run(compose_cfg(f"paths.cache_dir={shared_cache_dir}", "trainer.limit_train_batches=3"), {})
    assert err.value.signum == sig
    assert list(runs(tmp_path)["status"]) == ["KILLED"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def test_sigterm_outside_fit_ends_the_run_killed(compose_cfg, shared_cache_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(Run, "deploy", lambda self, trained, out: os.kill(os.getpid(), signal.SIGTERM))
    with pytest.raises(RunInterrupted):
        run(compose_cfg(f"paths.cache_dir={shared_cache_dir}", "trainer.fast_dev_run=true"), {})
    assert list(runs(tmp_path)["status"]) == ["KILLED"]


def test_non_finite_loss_stops_naming_step_and_term(compose_cfg, shared_cache_dir, tmp_path, monkeypatch):
    forward = KDLoss.forward
    calls = []

    def poisoned(self, *args):
        parts = forward(self, *args)
        calls.append(1)
        if len(calls) == 3:  # the third training step
            parts["kd"] = parts["kd"] * torch.tensor(float("nan"))
            parts["loss"] = parts["loss"] + parts["kd"]
        return parts

    monkeypatch.setattr(KDLoss, "forward", poisoned)
    with pytest.raises(TrainingDiverged) as err:
        run(compose_cfg(f"paths.cache_dir={shared_cache_dir}", "trainer.limit_train_batches=4"), {})
    message = str(err.value)
    assert "epoch 0, batch 2" in message and "kd=nan" in message and "\n" not in message
    assert list(runs(tmp_path)["status"]) == ["FAILED"]
