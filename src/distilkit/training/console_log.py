"""What a run writes to the console while it works.

On a terminal: Lightning's rich progress bar. Without one (``nohup``, SLURM, CI, ``python -m train > log.txt``)
a progress bar writes nothing useful, so :class:`EpochLines` takes its place and logs one line per
epoch (mean training loss, validation metrics, elapsed time). :func:`stage` logs one line when a stage of
the run starts and one when it ends, with its duration, in both cases. Lines go through :mod:`logging`
(logger ``distilkit``), so Hydra's job logging puts them on the console and in ``train.log``.
"""

from __future__ import annotations

import logging
import sys
import time
from contextlib import contextmanager
from typing import Iterator, Mapping

import torch
from lightning.pytorch.callbacks import Callback, RichProgressBar
from lightning.pytorch.callbacks.progress import ProgressBar

log = logging.getLogger("distilkit")


class EpochLines(ProgressBar):
    """The progress "bar" of a console that is no terminal: one log line at the end of every training epoch,
    e.g. ``epoch 2/3  teacher/train/loss 0.3121  teacher/val/acc 0.8761  elapsed 412 s``.

    The loss is the mean over the epoch's batches; the validation metrics are those logged by the module
    (their names contain ``val/``). A ``ProgressBar`` so that Lightning adds no tqdm bar of its own.
    """

    def __init__(self):
        super().__init__()
        self._enabled = True
        self._start = 0.0
        self._loss_sum = 0.0
        self._batches = 0

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._loss_sum, self._batches = 0.0, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor):
            self._loss_sum += float(loss.detach())
            self._batches += 1

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self._enabled or not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        loss_name = next((k for k in metrics if k.endswith("train/loss")), "train/loss")
        parts = [f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"]
        if self._batches:
            parts.append(f"{loss_name} {self._loss_sum / self._batches:.4f}")
        parts += [f"{k} {float(v):.4f}" for k, v in sorted(metrics.items()) if "val/" in k]
        parts.append(f"elapsed {time.perf_counter() - self._start:.0f} s")
        log.info("  ".join(parts))


def interactive() -> bool:
    """Whether standard output is a terminal (where a live progress bar can be drawn)."""
    return sys.stdout.isatty()


def progress_callback() -> Callback:
    """The rich progress bar on a terminal, one line per epoch otherwise."""
    return RichProgressBar() if interactive() else EpochLines()


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Log ``name: started`` and ``name: done in N s`` (or ``name: failed after N s``) around a stage of a run."""
    log.info("%s: started", name)
    start = time.perf_counter()
    try:
        yield
    except BaseException:
        log.info("%s: failed after %.1f s", name, time.perf_counter() - start)
        raise
    log.info("%s: done in %.1f s", name, time.perf_counter() - start)
