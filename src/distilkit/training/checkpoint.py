"""Checkpoints of the student fit, and resuming a killed run from them (``resume=true``).

A run's checkpoints live in ``checkpoint.dir/<key>/``, ``key`` being the hash of the composed config
without ``resume``: the same command finds them again. Beside them ``run.json`` holds the MLflow run
id, so a resumed run continues in the same MLflow run. Lightning keeps the weights, optimizer,
scheduler and loop counters; :class:`ResumeState` adds what it does not keep: the random generators
and the order of the interrupted epoch (``distilkit.data.replay``), so a fit resumed mid-epoch trains
on exactly the batches, with exactly the dropout masks, of an uninterrupted fit. A run that ends
FINISHED deletes its folder. Checkpoints load with ``weights_only=True``.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf
from optuna.exceptions import TrialPruned

from distilkit.data.replay import EpochOrder, Replay
from distilkit.errors import ConfigError, check
from distilkit.hashing import key_of

log = logging.getLogger(__name__)
RUN_RECORD = "run.json"


class Checkpointing:
    """The ``checkpoint`` config node: every ``every_n_steps`` optimizer steps the student fit is saved
    under ``dir`` (null: never; ``resume`` then has nothing to resume from)."""

    def __init__(self, every_n_steps: int | None = 500, dir: str = "checkpoints"):
        check(every_n_steps is None or (isinstance(every_n_steps, int) and every_n_steps >= 1), "every_n_steps",
              f"a number of steps >= 1, or null for no checkpoints; got {every_n_steps!r}")
        self.every_n_steps = every_n_steps
        self.dir = Path(dir)

    def callback(self, run_dir: Path) -> ModelCheckpoint | None:
        """The newest checkpoint only (the previous one is removed after the new one is written)."""
        if self.every_n_steps is None:
            return None
        return StepCheckpoint(dirpath=run_dir, filename="{epoch}-{step}", every_n_train_steps=self.every_n_steps,
                              save_top_k=1, save_on_train_epoch_end=False, enable_version_counter=False)


class StepCheckpoint(ModelCheckpoint):
    """Lightning's every-N-steps checkpoint, except that one due on the last batch of an epoch is written
    at the end of that epoch (after its validation): Lightning 2.6 resumes a checkpoint taken on an
    epoch's last batch as if the next epoch were done too (it skips it; seen in tests/test_resume.py's
    development), while an end-of-epoch checkpoint resumes at the next epoch's first batch."""

    _deferred = False

    def _ModelCheckpoint__warn_if_dir_not_empty(self, dirpath) -> None:
        """Lightning warns when the folder is not empty; ours always holds ``run.json`` (a fresh run
        empties it first, a resumed run finds the checkpoint it resumes from): nothing to warn about."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.fit_loop.epoch_loop.batch_progress.current.processed >= trainer.num_training_batches:
            self._deferred = self._deferred or (trainer.global_step % self._every_n_train_steps == 0)
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        """A trial stopped by an Optuna pruner is never resumed: its checkpoints go (the sweeper retries failed trials afresh)."""
        if isinstance(exception, TrialPruned) and trainer.is_global_zero and self.dirpath:
            shutil.rmtree(self.dirpath, ignore_errors=True)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._deferred and not self._should_skip_saving_checkpoint(trainer):
            self._save_topk_checkpoint(trainer, self._monitor_candidates(trainer))
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        self._deferred = False
        super().on_train_epoch_end(trainer, pl_module)


@dataclass(frozen=True)
class ResumePoint:
    """Where this run's checkpoints go, and what it resumes from (``checkpoint`` None: a fresh start)."""

    run_dir: Path
    checkpoint: Path | None = None
    run_id: str | None = None

    def record(self, run_id: str | None) -> None:
        """A fresh run: stale checkpoints of an earlier run of this config removed, the MLflow run id written (rank 0)."""
        if self.checkpoint is None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        if run_id is None:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.run_dir / f".{RUN_RECORD}.{os.getpid()}"
        tmp.write_text(json.dumps({"run_id": run_id}))
        tmp.replace(self.run_dir / RUN_RECORD)

    def finished(self) -> None:
        """The run ended FINISHED: its checkpoints are not needed any more (rank 0)."""
        shutil.rmtree(self.run_dir, ignore_errors=True)


def run_key(cfg: DictConfig) -> str:
    """The hash of the composed config without ``resume``: the same command (plus ``resume=true``) gives the same key."""
    tree = OmegaConf.to_container(cfg, resolve=True)
    tree.pop("resume", None)
    return key_of(tree)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest ``*.ckpt`` (step checkpoints, and Lightning's ``hpc_ckpt_N.ckpt`` written on a SLURM requeue signal)."""
    found = [p for p in run_dir.glob("*.ckpt") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime_ns) if found else None


def resume_point(cfg: DictConfig, checkpointing: Checkpointing) -> ResumePoint:
    """Read ``resume`` (false, true, auto) and find what to resume from; ``resume=true`` with nothing to
    resume is a ConfigError (raised in the preflight: no MLflow run is created)."""
    resume = cfg.get("resume", False)
    check(isinstance(resume, bool) or resume == "auto", "resume",
          f"true (continue a killed run of this same config from its last checkpoint), false, or auto (resume if there is one); got {resume!r}")
    run_dir = checkpointing.dir / run_key(cfg)
    if resume is False:
        return ResumePoint(run_dir)
    checkpoint = latest_checkpoint(run_dir)
    record = run_dir / RUN_RECORD
    run_id = json.loads(record.read_text())["run_id"] if record.is_file() else None
    if checkpoint is None or run_id is None:
        if resume == "auto":
            return ResumePoint(run_dir)
        raise ConfigError("resume", f"no checkpoint of this config in {run_dir} (none written yet: checkpoint.every_n_steps="
                          f"{checkpointing.every_n_steps}; or the run finished); run the command without resume=true")
    return ResumePoint(run_dir, checkpoint, run_id)


def _rng_state() -> dict:
    state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(state[1].astype(np.int64)), "pos": int(state[2]), "has_gauss": int(state[3]),
                  "cached_gaussian": float(state[4])},
    }


def _set_rng_state(state: dict) -> None:
    """Every generator but torch's CPU one, which the training loader sets after replaying the epoch order."""
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))


class ResumeState(L.Callback):
    """What a checkpoint needs beyond Lightning's own state for an exact mid-epoch resume: the random
    generators at the checkpoint and the generator state the current epoch's order was drawn from, with
    the number of batches of that epoch already trained. ``order`` is the training loader's
    (``data.train_order``); without one (a DataModule whose loader is not replayable) the generators
    are restored but the interrupted epoch restarts from its first batch in a new order (a warning says so)."""

    def __init__(self, order: EpochOrder | None):
        self.order = order
        self.trainer: L.Trainer | None = None
        self.resumed_from_step: int | None = None
        self._loaded = False

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.trainer = trainer

    def state_dict(self) -> dict:
        done = self.trainer.fit_loop.epoch_loop.batch_progress.current.processed
        epoch_over = done >= self.trainer.num_training_batches  # an end-of-epoch checkpoint: the next epoch draws afresh
        epoch_rng = None if self.order is None or epoch_over else self.order.rng
        return {"rng": _rng_state(), "epoch_rng": epoch_rng, "epoch_batches_done": int(done)}

    def load_state_dict(self, state: dict) -> None:
        self._loaded = True
        _set_rng_state(state["rng"])
        if self.order is None or state["epoch_rng"] is None:
            if state["epoch_rng"] is not None or self.order is None:
                log.warning("resume: the training loader is not replayable; the interrupted epoch starts again from its first batch")
            torch.set_rng_state(state["rng"]["torch"])
            return
        self.order.replay = Replay(state["epoch_rng"], state["epoch_batches_done"], state["rng"]["torch"])

    def on_train_start(self, trainer, pl_module) -> None:
        if self._loaded:
            self.resumed_from_step = trainer.global_step
            log.info("student fit: resumed at step %d (epoch %d)", trainer.global_step, trainer.current_epoch)
