"""The contract of a task object (``task`` config group), and which tasks a config object serves.

A data source, teacher, student or loss says which tasks it serves with a class attribute
``tasks`` (a tuple of task names); without one it serves ``classification`` (every object written
before tasks existed, and your own losses and students unless they say otherwise).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from distilkit.errors import ConfigError, config_group

DEFAULT_TASKS = ("classification",)
CHECKED_GROUPS = ("data", "teacher", "student", "loss")


def serves(obj, task: str) -> bool:
    """Whether ``obj`` (a built config-group object) serves ``task``."""
    return task in getattr(obj, "tasks", DEFAULT_TASKS)


class Task(ABC):
    """What a task owns. ``run`` is the :class:`distilkit.pipeline.Run` (config, data, specs, stores)."""

    name: str = ""
    model_class = None  # the Auto* class that builds teacher and student of this task from a config
    finetune_loss = None  # the loss a teacher is trained with when the task trains it

    def check_serves(self, objects: dict[str, object]) -> None:
        """``ConfigError`` naming the group whose object was written for another task."""
        for group in CHECKED_GROUPS:
            obj = objects[group]
            if not serves(obj, self.name):
                other = ", ".join(getattr(obj, "tasks", DEFAULT_TASKS))
                raise ConfigError(
                    group, f"{type(obj).__name__} serves task={other}, not task={self.name}: pick a {group} option made for "
                    f"{self.name} ({self.options_hint(group)}) or set task={other}",
                )

    def options_hint(self, group: str) -> str:
        return "see README"

    @abstractmethod
    def teacher_config(self, run):
        """Read the data and the teacher's architecture (no weights); check them together."""

    @abstractmethod
    def build_teacher(self, spec, data):
        """``(model, tokenizer)`` from the teacher spec."""

    def check_teacher(self, model, data) -> None:
        """After the teacher is loaded: what only the loaded model can tell."""

    def check_student(self, student, teacher) -> None:
        """After the student is built from the teacher."""

    def check_compressors(self, run, student) -> None:
        """The vocabulary pruner, pruner and quantizer checked against the (meta-device) student."""
        for group in ("vocab", "pruner"):
            with config_group(group):
                getattr(run, group).check(student)
        with config_group("pruner"):
            shaped = run.pruner.shaped(student)  # the widths the quantizer will really see
        with config_group("quantizer"):
            run.quantizer.check(shaped)

    @abstractmethod
    def module(self, student, loss, optimizer, scheduler=None, teacher=None, compressors=None, log_prefix: str = ""):
        """The LightningModule that trains ``student`` with ``loss`` on this task's batches."""

    @abstractmethod
    def teacher_outputs(self, run, teacher, teacher_key: str) -> dict:
        """The teacher's stored outputs per split (computed once, kept in a store keyed by content)."""

    @abstractmethod
    def attach(self, data, outputs: dict) -> None:
        """Give the training split its teacher outputs (they ride along in every training batch)."""

    def export(self, model, path: Path, data, fuse: bool = False) -> Path | None:
        """The deployable file of ``model`` (ONNX), or None where the task exports none; ``fuse``: ``export.fuse``
        (attention written fused at export, :mod:`distilkit.export.attention`)."""
        return None

    @abstractmethod
    def predict(self, run, trained) -> dict:
        """The trained student's outputs on dev/test, taken right after fit (before conversion)."""

    @abstractmethod
    def measure(self, run, teacher, teacher_key, outputs, predicted, converted, fp32_onnx, deploy_onnx) -> dict[str, float]:
        """Every metric of the run."""

    def tags(self, metrics: dict[str, float]) -> dict[str, str]:
        return {}

    @abstractmethod
    def print_table(self, metrics: dict[str, float], run) -> None:
        """The table printed at the end of a run."""
