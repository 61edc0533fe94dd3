"""The run, top to bottom: config -> teacher -> teacher outputs -> student -> fit -> measure -> MLflow.

Every object comes from its config group through Hydra's ``instantiate`` (``_target_`` is the only
registry); this file wires them in order and computes nothing of its own. What differs between
tasks (sequence classification, causal LM: model class, stored teacher outputs, what the loss
receives, metrics) is the ``task`` object's (:mod:`distilkit.tasks`); the stages here are one.
"""

from __future__ import annotations

import copy
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, MissingMandatoryValue, OmegaConf

from distilkit.errors import ConfigError, check, config_group, is_int
from distilkit.fingerprint import FileHashes, library_versions
from distilkit.hashing import key_of
from distilkit.export.fuse import check_fuse, fuse_all
from distilkit.losses import DistillLoss
from distilkit.measure.budget import Budget, OverBudget
from distilkit.measure.report import MeasureSpec
from distilkit.seeding import seed_stage
from distilkit.tasks import Task
from distilkit.tracking.naming import command_line, run_name
from distilkit.training.finite_loss import StopOnNonFiniteLoss
from distilkit.training.console_log import progress_callback, stage
from distilkit.models.custom import build_student, check_serves
from distilkit.training.logit_store import LogitStore
from distilkit.training.teacher_cache import TeacherCache
from distilkit.training.distributed import apply_hardware, check_hardware
from distilkit.training.checkpoint import Checkpointing, ResumeState, resume_point
from distilkit.training.averaging import NoAveraging
from distilkit.training.compile import CompileStudent

log = logging.getLogger(__name__)
GROUPS = ("task", "data", "augment", "teacher", "student", "loss", "quantizer", "pruner", "vocab", "averaging", "hardware")
# Trainer settings that don't change what a fine-tuned teacher is (max_epochs is the teacher's own).
NOT_IN_TEACHER_KEY = ("max_epochs", "enable_checkpointing", "enable_model_summary", "log_every_n_steps", "limit_val_batches")
# Trainer keys added after teachers were cached: left out of the key at these values, so a key stays what it was.
TEACHER_KEY_OMITTED_AT = {"num_nodes": 1}
# The teacher's optimizer and schedule are the config's, with these set by teacher.finetune.
TEACHER_FINETUNE_SETS = {"optimizer": ("lr", "weight_decay"), "scheduler": ("warmup_fraction",)}


@dataclass(frozen=True)
class PreflightResult:
    """What the preflight learned that the run's name needs."""

    student_layers: int | None  # None for a student without layers (a plain nn.Module)


def build_group(cfg: DictConfig, group: str, **kwargs):
    """``instantiate(cfg[group])`` with config errors reported under the group's key."""
    with config_group(group):
        try:
            return instantiate(cfg[group], **kwargs)
        except InstantiationException as err:  # Hydra wraps constructor errors; ours are the user's
            if isinstance(err.__cause__, ConfigError):
                raise err.__cause__ from None
            raise
        except MissingMandatoryValue as err:
            raise ConfigError(str(err.full_key).removeprefix(f"{group}."), "is required (it is ??? in the config)") from None


class Run:
    def __init__(self, cfg: DictConfig, choices: dict[str, str], overrides: Sequence[str] = (), command: str | None = None):
        self.cfg = cfg
        self.choices = choices
        self.overrides = list(overrides)
        self.command = command or command_line(self.overrides)
        # Build every spec first: bad numbers fail here, before any run or cache is touched.
        self.task: Task = build_group(cfg, "task")
        check(isinstance(self.task, Task), "task", f"{type(self.task).__name__} must subclass distilkit.tasks.Task")
        self.data = build_group(cfg, "data")
        self.teacher_spec = build_group(cfg, "teacher")
        self.student_spec = build_group(cfg, "student")
        self.loss = build_group(cfg, "loss")
        check(isinstance(self.loss, DistillLoss), "loss", f"{type(self.loss).__name__} must subclass distilkit.losses.DistillLoss")
        self.task.check_serves({"data": self.data, "teacher": self.teacher_spec, "student": self.student_spec, "loss": self.loss})
        self.pruner = build_group(cfg, "pruner")
        self.quantizer = build_group(cfg, "quantizer")
        self.vocab = build_group(cfg, "vocab")
        self.augment = build_group(cfg, "augment")
        with config_group("augment"):
            self.augment.check(self.task, self.data)
        if "averaging" in cfg:
            build_group(cfg, "averaging")  # a bad averaging.decay fails here, before any run; fit builds its own
        check_fuse(cfg.export.fuse)
        teacher_seed = cfg.get("teacher_seed")
        check(teacher_seed is None or is_int(teacher_seed), "teacher_seed",
              f"must be an integer or null (null: the run's seed), got {teacher_seed!r}")
        self.teacher_seed: int = cfg.seed if teacher_seed is None else teacher_seed
        self.budget = build_group(cfg, "budget") if "budget" in cfg else Budget()
        with config_group("hardware"):
            self.measure_spec = MeasureSpec(**OmegaConf.to_container(cfg.hardware.measure))
        self.trainer_overrides = check_hardware(cfg.hardware)  # devices, nodes, launcher, bf16 (scale-out)
        self.tracker = instantiate(cfg.tracking)
        self.checkpointing = build_group(cfg, "checkpoint") if "checkpoint" in cfg else Checkpointing(every_n_steps=None)
        self.resume = resume_point(cfg, self.checkpointing)  # resume=true with nothing to resume: ConfigError here, before any run
        self.resumed_from_step: int | None = None
        self.teacher_cache = TeacherCache(cfg.paths.cache_dir)
        self.logit_store = LogitStore(cfg.paths.cache_dir)
        self.file_hashes = FileHashes(Path(cfg.paths.cache_dir) / "file_hashes.json")

    def fresh(self, group: str):
        """A new object of ``group`` (a pruner or quantizer for a throw-away copy: no state shared with the run's)."""
        return build_group(self.cfg, group)

    def seed(self, stage: str) -> None:
        """Seed ``stage`` from (seed, stage): no stage's randomness depends on what ran or was skipped before.
        The teacher's stages draw from ``teacher_seed`` (the run's seed unless pinned)."""
        seed_stage(self.teacher_seed if stage.split(".")[0] == "teacher" else self.cfg.seed, stage)

    # 1. preflight: the whole configuration checked before any MLflow run or cache entry exists ----
    def preflight(self) -> PreflightResult:
        """Read the data, the teacher's architecture (no weights), build the student, the loss and the
        compressors on the meta device: every bad value fails here, so bad input leaves no run behind."""
        self.seed("data")
        teacher_config = self.task.teacher_config(self)
        with torch.device("meta"):
            teacher = self.task.model_class.from_config(teacher_config)
            student = self.student(teacher, loss=copy.deepcopy(self.loss))
            self.task.check_compressors(self, student)
        return PreflightResult(student_layers=getattr(student.config, "num_hidden_layers", None))

    def trainer(self, *callbacks, **overrides) -> L.Trainer:
        apply_hardware(self.cfg.hardware)
        overrides = {**self.trainer_overrides, **overrides}
        return instantiate(self.cfg.trainer, logger=self.tracker.lightning_logger(), callbacks=[progress_callback(), StopOnNonFiniteLoss(), *callbacks], **overrides)

    # 2. teacher ---------------------------------------------------------------------------------
    def teacher(self):
        """The teacher trained on the task (from the cache, or built, trained and cached); the data
        is tokenized with its tokenizer on the way."""
        key, identity = self.teacher_key()
        with self.teacher_cache.exclusive(key):  # concurrent jobs: one fine-tunes, the others wait and load
            return self._teacher(key, identity)

    def teacher_key(self) -> tuple[str, dict]:
        """The teacher cache key: what the fine-tuned teacher depends on (model, data, teacher seed, trainer, optimizer)."""
        spec, data = self.teacher_spec, self.data
        trainer = {
            k: v
            for k, v in OmegaConf.to_container(self.cfg.trainer, resolve=True).items()
            if k not in NOT_IN_TEACHER_KEY and not (k in TEACHER_KEY_OMITTED_AT and v == TEACHER_KEY_OMITTED_AT[k])
        }
        optim = {
            group: {k: v for k, v in OmegaConf.to_container(self.cfg[group], resolve=True).items() if k not in keys}
            for group, keys in TEACHER_FINETUNE_SETS.items()
        }
        identity = {"teacher": spec.fingerprint(self.file_hashes), "versions": library_versions(), "data": data.fingerprint}
        return key_of(identity, data.max_length, data.batching, self.teacher_seed, trainer, optim), identity

    def _teacher(self, key: str, identity: dict):
        spec, data = self.teacher_spec, self.data
        cached = self.teacher_cache.load(key, self.task.model_class)
        if cached is not None:
            model, tokenizer, _ = cached
            log.info("teacher: cached fine-tuned model %s", self.teacher_cache.path(key))
        else:
            self.seed("teacher")
            with config_group("teacher"):
                model, tokenizer = self.task.build_teacher(spec, data)
        data.tokenize(tokenizer)
        if cached is None and spec.needs_finetune():
            self.seed("teacher.finetune")
            self.finetune(model, spec.finetune)
            self.teacher_cache.save(key, model, tokenizer, identity)
        elif cached is None and getattr(spec, "cache_loaded", False):  # slow to load (e.g. dequantized GGUF): keep it
            self.teacher_cache.save(key, model, tokenizer, identity)
        self.task.check_teacher(model, data)
        return model.eval(), tokenizer, key

    def finetune(self, model, spec) -> None:
        module = self.task.module(
            model,
            self.task.finetune_loss(),
            optimizer=instantiate(self.cfg.optimizer, lr=spec.lr, weight_decay=spec.weight_decay),
            scheduler=instantiate(self.cfg.scheduler, warmup_fraction=spec.warmup_fraction),
            log_prefix="teacher/",
        )
        self.trainer(max_epochs=spec.max_epochs).fit(module, datamodule=self.data)

    # 3. teacher outputs (logits, or the causal LM's top-k) ------------------------------------------
    def teacher_outputs(self, teacher, teacher_key: str) -> dict:
        """The teacher's outputs per split, from the store or computed once; keyed by teacher and split inputs."""
        return self.task.teacher_outputs(self, teacher, teacher_key)

    # 4. student ---------------------------------------------------------------------------------
    def student(self, teacher, loss: DistillLoss | None = None):
        """The student built from the teacher, and the loss bound to both."""
        with config_group("student"):
            student = build_student(self.student_spec, teacher)
        self.task.check_student(student, teacher)
        with config_group("loss"):
            loss = loss or self.loss
            check_serves(student, loss.needs)
            loss.bind(student.config, teacher.config)
        return student

    def fit(self, student, teacher):
        """Train the student; the pruner and quantizer ``prepare`` it in the module's ``setup("fit")``."""
        module = self.task.module(
            student,
            self.loss,
            optimizer=instantiate(self.cfg.optimizer),
            scheduler=instantiate(self.cfg.scheduler),
            teacher=teacher,
            compressors={"pruner": self.pruner, "quantizer": self.quantizer},
        )
        resume = ResumeState(getattr(self.data, "train_order", None))  # RNG and epoch order for an exact resume
        averaging = self.fresh("averaging") if "averaging" in self.cfg else NoAveraging()  # averaging=ema: the student deployed is the average
        callbacks = [*(instantiate(c) for c in self.cfg.get("callbacks", {}).values()), averaging, resume]
        checkpoint = self.checkpointing.callback(self.resume.run_dir)
        callbacks += [checkpoint] if checkpoint is not None else []
        if self.cfg.hardware.get("compile"):
            callbacks.append(CompileStudent())
        # default_root_dir: where Lightning writes its SLURM requeue checkpoint (hpc_ckpt_N.ckpt), found on resume
        trainer = self.trainer(*callbacks, default_root_dir=str(self.resume.run_dir), enable_checkpointing=checkpoint is not None)
        trainer.fit(module, datamodule=self.data, ckpt_path=self.resume.checkpoint, weights_only=True)
        self.resumed_from_step = resume.resumed_from_step
        return module.student.eval(), trainer.is_global_zero

    # 5. convert and export ------------------------------------------------------------------------
    def deploy(self, trained, out_dir: Path, pruner=None, quantizer=None):
        """Pruning made permanent, quantization converted, fp32 ONNX exported, and the deployable ONNX
        (quantized where the quantizer allows, else the fp32 one); no files where the task exports none.
        ``pruner``/``quantizer``: those that prepared ``trained`` (default: the run's)."""
        pruner, quantizer = pruner or self.pruner, quantizer or self.quantizer
        with config_group("pruner"):
            pruned = pruner.convert(trained)
        with config_group("quantizer"):
            converted = quantizer.convert(pruned)
            fp32_onnx = self.task.export(converted.float_model, out_dir / "student.onnx", self.data, fuse=self.cfg.export.fuse)
            if fp32_onnx is None:
                return converted, None, None
            deploy_onnx = quantizer.quantize_onnx(fp32_onnx, out_dir / f"student.{converted.precision}.onnx") or fp32_onnx
        fp32_onnx, deploy_onnx = fuse_all(self.cfg.export.fuse, fp32_onnx, deploy_onnx)  # export.fuse (distilkit.export.fuse)
        return converted, fp32_onnx, deploy_onnx

    # the whole run --------------------------------------------------------------------------------
    def __call__(self) -> dict[str, float]:
        checked = self.preflight()
        params = OmegaConf.to_container(self.cfg, resolve=True)
        params.pop("resume", None)  # a resumed run logs its params again into the same run: they must not differ
        overrides = [o for o in self.overrides if o.lstrip("+~").partition("=")[0] != "resume"]
        name = self.tracker.run_name or run_name(self.choices, overrides, checked.student_layers)
        with self.tracker.run(params=params, tags=self.choices, name=name, description=self.command, run_id=self.resume.run_id):
            if self.tracker.enabled:  # rank 0: the MLflow run id beside the checkpoints (resume=true finds the run)
                self.resume.record(self.tracker.run_id)
            with stage("teacher"):
                teacher, tokenizer, teacher_key = self.teacher()
            with config_group("augment"):  # more training text, labelled by the teacher (distilkit.data.augment)
                self.augment.apply(self.data, teacher, tokenizer)
            with stage("teacher outputs"):
                teacher_outputs = self.teacher_outputs(teacher, teacher_key)
            self.seed("student")
            student = self.student(teacher)
            with config_group("vocab"):  # vocab=train: student, tokenizer and data re-tokenized (distilkit.prune.vocab)
                tokenizer, fit_teacher = self.vocab.apply(student, teacher, tokenizer, self.data)
            self.task.attach(self.data, teacher_outputs)
            precheck = {}
            if self.budget.active:  # an untrained copy over the budget is not trained (distilkit.measure.budget)
                with stage("budget precheck"), config_group("budget"):
                    try:
                        precheck = self.budget.check_untrained(self, student)
                    except OverBudget as err:  # the run ends KILLED, its measured figures and the reason logged
                        self.tracker.log_metrics(err.metrics)
                        self.tracker.set_tags({"budget": "over before training"})
                        raise
            with config_group("pruner"):  # pruner.importance=activation: scores on training rows (distilkit.prune.activation)
                self.pruner.calibrate(student, self.data)
            self.seed("student.fit")
            with stage("student fit"):
                trained, is_global_zero = self.fit(student, fit_teacher)
            if self.resumed_from_step is not None:
                self.tracker.set_tags({"resumed_from_step": str(self.resumed_from_step)})
            if not is_global_zero:  # DDP: other ranks only train
                return {}
            self.seed("measure")
            predicted = self.task.predict(self, trained)
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "student"
                with stage("deploy/export"):
                    converted, fp32_onnx, deploy_onnx = self.deploy(trained, out)
                with stage("measure"):
                    metrics = self.task.measure(self, teacher, teacher_key, teacher_outputs, predicted, converted, fp32_onnx, deploy_onnx)
                metrics |= getattr(self.vocab, "report", {})  # kept tokens, embedding MB before/after
                metrics |= getattr(self.augment, "report", {})  # training rows own / added
                metrics |= precheck  # the untrained copy's latency/size beside the trained model's
                self.tracker.log_metrics(metrics)
                self.tracker.set_tags(self.task.tags(metrics))
                converted.float_model.save_pretrained(out)
                tokenizer.save_pretrained(out)
                self.tracker.log_artifacts(out, "student")
                self.tracker.log_student(converted.float_model, self.data.inputs("dev"), tokenizer.pad_token_id)
                if deploy_onnx is not None:  # a task that exports no ONNX logs no deployable model
                    self.tracker.log_deployed(deploy_onnx, self.data.inputs("dev"), self.choices.get("data", "data"), self.data.fingerprint)
            self.task.print_table(metrics, self)
        self.resume.finished()  # FINISHED: the checkpoints are not needed any more
        return metrics


def run(cfg: DictConfig, choices: dict[str, str], overrides: Sequence[str] = (), command: str | None = None) -> dict[str, float]:
    """One run of ``cfg``; ``choices`` (group -> option) become tags, ``overrides`` name the run."""
    return Run(cfg, choices, overrides, command)()
