"""Fault tolerance: a run killed with SIGKILL after a checkpoint, started again with ``resume=true``,
continues in the same MLflow run from that step (mid-epoch) and ends with the metrics of an
uninterrupted run; ``resume=true`` with nothing to resume is one ConfigError and no run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import mlflow
import pytest

from conftest import ROOT, tiny_overrides
from distilkit.errors import ConfigError
from distilkit.pipeline import run
from distilkit.training.logit_store import LogitStore
from distilkit.training.module import DistillModule

# 3 epochs of 4 batches (64 rows, batch 16) = 12 steps; a checkpoint every 5 steps: the one at step 5 is
# taken after the first batch of epoch 1, so the resume replays epoch 1's order and skips one batch.
STEPS, CKPT_EVERY = 12, 5
RESUMABLE = ["trainer.max_epochs=3", f"checkpoint.every_n_steps={CKPT_EVERY}"]
TIMED = ("latency", "throughput", "_ms", "speedup", "samples", "time_s", "threads")  # timings differ run to run


class StallOnce(L.Callback):
    """Test helper: after the first checkpoint is on disk, write ``marker`` and hang (the test then SIGKILLs
    the process); does nothing once ``marker`` exists, so the resumed run goes on."""

    def __init__(self, after_step: int, marker: str):
        self.after_step, self.marker = after_step, Path(marker)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step > self.after_step and not self.marker.exists():
            self.marker.write_text(str(trainer.global_step))
            time.sleep(600)


def mlflow_runs(root: Path):
    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
    return mlflow.search_runs(search_all_experiments=True)


def final_metrics(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not any(t in k for t in TIMED)}


def test_killed_run_resumes_in_the_same_run_with_the_same_metrics(compose_cfg, tmp_path, monkeypatch):
    cache, root, marker = tmp_path / "cache", tmp_path / "killed", tmp_path / "stalled"
    overrides = [*RESUMABLE, f"paths.cache_dir={cache}", "+callbacks.stall._target_=test_resume.StallOnce",
                 f"+callbacks.stall.after_step={CKPT_EVERY}", f"+callbacks.stall.marker={marker}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "train", *tiny_overrides(root, *overrides)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while not marker.exists():  # the first checkpoint is written, the fit hangs right after it
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 180 s"
            time.sleep(0.2)
        checkpoints = list((root / "checkpoints").glob("*/*.ckpt"))
        assert [p.name for p in checkpoints] == [f"epoch=1-step={CKPT_EVERY}.ckpt"]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed = mlflow_runs(root)
    assert list(killed["status"]) == ["RUNNING"]  # SIGKILL: nothing could mark it

    # resume in this process: no teacher fine-tune, no teacher forward pass, only the 7 remaining steps
    computed, fits, steps = [], [], []
    original_get, original_step = LogitStore.get_or_compute, DistillModule.training_step
    monkeypatch.setattr(LogitStore, "get_or_compute", lambda self, key, shape, compute: original_get(self, key, shape, lambda: computed.append(key) or compute()))
    monkeypatch.setattr("distilkit.pipeline.Run.finetune", lambda self, model, spec: fits.append(1))
    monkeypatch.setattr(DistillModule, "training_step", lambda self, batch, i: steps.append(i) or original_step(self, batch, i))
    resumed = run(compose_cfg(f"paths.root_dir={root}", *overrides, "resume=true"), {})
    assert computed == [] and fits == []
    assert len(steps) == STEPS - CKPT_EVERY  # not restarted from scratch
    monkeypatch.undo()

    runs = mlflow_runs(root)
    assert list(runs["run_id"]) == list(killed["run_id"])  # one run: the killed one, continued (none added)
    assert list(runs["status"]) == ["FINISHED"]
    assert runs["tags.resumed_from_step"][0] == str(CKPT_EVERY)
    assert not (root / "checkpoints").exists() or not any((root / "checkpoints").iterdir())  # a finished run drops them

    # the uninterrupted run: same store (a new sqlite store costs seconds of migrations), its own experiment
    reference = run(compose_cfg(f"paths.root_dir={root}", *RESUMABLE, f"paths.cache_dir={cache}", "tracking.experiment_name=reference"), {})
    # equal to float rounding: the killed/resumed process runs with one thread, the reference in this pytest worker,
    # whose thread settings earlier tests may change (seen in full suites: test NLL 3e-11 apart, the test KL to the
    # teacher, 1.07e-5, 7e-14 apart). A wrong resume (other weights) differs by far more.
    assert final_metrics(resumed) == pytest.approx(final_metrics(reference), rel=1e-9, abs=1e-12)
    assert "student/dev_nll" in final_metrics(resumed) and "student/size_mb" in final_metrics(resumed)
    logged = runs.filter(like="metrics.student/dev_nll").iloc[0, 0]
    assert logged == pytest.approx(reference["student/dev_nll"], rel=1e-9)


def test_resume_without_checkpoint_is_one_config_error_and_no_run(compose_cfg, tmp_path):
    with pytest.raises(ConfigError) as err:
        run(compose_cfg("resume=true"), {})
    assert err.value.key == "resume" and "no checkpoint" in str(err.value)
    assert not (tmp_path / "mlflow.db").exists() or mlflow_runs(tmp_path).empty
    with pytest.raises(ConfigError, match="^resume: true .*auto"):
        run(compose_cfg("resume=maybe"), {})


def test_a_pruned_trial_drops_its_checkpoints_a_failed_run_keeps_them(tmp_path):
    from types import SimpleNamespace

    from optuna.exceptions import TrialPruned

    from distilkit.training.checkpoint import Checkpointing

    (tmp_path / "run.json").write_text("{}")
    callback, trainer = Checkpointing(every_n_steps=3).callback(tmp_path), SimpleNamespace(is_global_zero=True)
    callback.on_exception(trainer, None, RuntimeError("diverged"))
    assert (tmp_path / "run.json").exists()  # FAILED: kept, resumable
    callback.on_exception(trainer, None, TrialPruned())
    assert not tmp_path.exists()  # pruned by Optuna: never resumed
