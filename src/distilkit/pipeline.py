"""The run, top to bottom: config -> teacher -> teacher logits -> student -> fit -> measure -> MLflow.

Every object comes from its config group through Hydra's ``instantiate`` (``_target_`` is the only
registry); this file wires them in order and computes nothing of its own.
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
from transformers import AutoModelForSequenceClassification

from distilkit.data.module import SPLITS, TextClassificationData
from distilkit.errors import ConfigError, check, config_group
from distilkit.fingerprint import FileHashes, library_versions
from distilkit.hashing import key_of
from distilkit.export.fuse import check_fuse, fuse_all, fused_path
from distilkit.export.onnx import export_onnx
from distilkit.losses import CrossEntropy, DistillLoss
from distilkit.measure import parity
from distilkit.measure.accuracy import fidelity_metrics
from distilkit.measure.report import (
    MeasureSpec,
    accuracy_metrics,
    agreement_metrics,
    onnx_predict,
    onnx_size_metrics,
    print_table,
    ratios,
    size_metrics,
)
from distilkit.seeding import seed_stage
from distilkit.tracking.naming import command_line, run_name
from distilkit.training.finite_loss import StopOnNonFiniteLoss
from distilkit.training.console_log import progress_callback, stage
from distilkit.models.custom import build_student, check_serves
from distilkit.measure.session import Timings
from distilkit.training.logit_store import LogitStore, predict_logits
from distilkit.training.module import DistillModule
from distilkit.training.teacher_cache import TeacherCache
from distilkit.training.distributed import apply_hardware, check_hardware

log = logging.getLogger(__name__)
GROUPS = ("data", "teacher", "student", "loss", "quantizer", "pruner", "vocab", "hardware")
# Trainer settings that don't change what a fine-tuned teacher is (max_epochs is the teacher's own).
NOT_IN_TEACHER_KEY = ("max_epochs", "enable_checkpointing", "enable_model_summary", "log_every_n_steps", "limit_val_batches")
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
        self.data: TextClassificationData = build_group(cfg, "data")
        self.teacher_spec = build_group(cfg, "teacher")
        self.student_spec = build_group(cfg, "student")
        self.loss = build_group(cfg, "loss")
        check(isinstance(self.loss, DistillLoss), "loss", f"{type(self.loss).__name__} must subclass distilkit.losses.DistillLoss")
        self.pruner = build_group(cfg, "pruner")
        self.quantizer = build_group(cfg, "quantizer")
        self.vocab = build_group(cfg, "vocab")
        check_fuse(cfg.export.fuse)
        with config_group("hardware"):
            self.measure_spec = MeasureSpec(**OmegaConf.to_container(cfg.hardware.measure))
        self.trainer_overrides = check_hardware(cfg.hardware)  # devices, nodes, launcher, bf16 (scale-out)
        self.tracker = instantiate(cfg.tracking)
        self.teacher_cache = TeacherCache(cfg.paths.cache_dir)
        self.logit_store = LogitStore(cfg.paths.cache_dir)
        self.file_hashes = FileHashes(Path(cfg.paths.cache_dir) / "file_hashes.json")

    def seed(self, stage: str) -> None:
        """Seed ``stage`` from (seed, stage): no stage's randomness depends on what ran or was skipped before."""
        seed_stage(self.cfg.seed, stage)

    # 1. preflight: the whole configuration checked before any MLflow run or cache entry exists ----
    def preflight(self) -> PreflightResult:
        """Read the data, the teacher's architecture (no weights), build the student, the loss and the
        compressors on the meta device: every bad value fails here, so bad input leaves no run behind."""
        with config_group("data"):
            self.seed("data")
            num_labels = self.data.num_classes  # reads files / generates the splits
        with config_group("teacher"):
            teacher_config = self.teacher_spec.config(num_labels)
        with torch.device("meta"):
            teacher = AutoModelForSequenceClassification.from_config(teacher_config)
            student = self.student(teacher, loss=copy.deepcopy(self.loss))
            for group in ("vocab", "pruner", "quantizer"):
                with config_group(group):
                    getattr(self, group).check(student)
        return PreflightResult(student_layers=getattr(student.config, "num_hidden_layers", None))

    def trainer(self, *callbacks, **overrides) -> L.Trainer:
        apply_hardware(self.cfg.hardware)
        overrides = {**self.trainer_overrides, **overrides}
        return instantiate(self.cfg.trainer, logger=self.tracker.lightning_logger(), callbacks=[progress_callback(), StopOnNonFiniteLoss(), *callbacks], **overrides)

    # 2. teacher ---------------------------------------------------------------------------------
    def teacher(self):
        """The teacher fine-tuned on the task (from the cache, or built, fine-tuned and cached); the data
        is tokenized with its tokenizer on the way."""
        spec, data = self.teacher_spec, self.data
        trainer = {k: v for k, v in OmegaConf.to_container(self.cfg.trainer, resolve=True).items() if k not in NOT_IN_TEACHER_KEY}
        optim = {
            group: {k: v for k, v in OmegaConf.to_container(self.cfg[group], resolve=True).items() if k not in keys}
            for group, keys in TEACHER_FINETUNE_SETS.items()
        }
        identity = {"teacher": spec.fingerprint(self.file_hashes), "versions": library_versions(), "data": data.fingerprint}
        key = key_of(identity, data.max_length, data.batching, self.cfg.seed, trainer, optim)
        with self.teacher_cache.exclusive(key):  # concurrent jobs: one fine-tunes, the others wait and load
            return self._teacher(key, identity)

    def _teacher(self, key: str, identity: dict):
        spec, data = self.teacher_spec, self.data
        cached = self.teacher_cache.load(key)
        if cached is not None:
            model, tokenizer, _ = cached
            log.info("teacher: cached fine-tuned model %s", self.teacher_cache.path(key))
        else:
            self.seed("teacher")
            with config_group("teacher"):
                model, tokenizer = spec.build(data.texts("train"), data.num_classes)
        data.tokenize(tokenizer)
        if cached is None and spec.needs_finetune():
            self.seed("teacher.finetune")
            self.finetune(model, spec.finetune)
            self.teacher_cache.save(key, model, tokenizer, identity)
        check(
            model.config.num_labels == data.num_classes,
            "teacher",
            f"teacher has {model.config.num_labels} labels but the data has {data.num_classes}",
        )
        return model.eval(), tokenizer, key

    def finetune(self, model, spec) -> None:
        module = DistillModule(
            model,
            CrossEntropy(),
            optimizer=instantiate(self.cfg.optimizer, lr=spec.lr, weight_decay=spec.weight_decay),
            scheduler=instantiate(self.cfg.scheduler, warmup_fraction=spec.warmup_fraction),
            log_prefix="teacher/",
        )
        self.trainer(max_epochs=spec.max_epochs).fit(module, datamodule=self.data)

    # 3. teacher logits ----------------------------------------------------------------------------
    def teacher_logits(self, teacher, teacher_key: str) -> dict[str, torch.Tensor]:
        """Teacher logits per split, from the store or computed once; keyed by teacher and split inputs."""
        out = {}
        for split in SPLITS:
            inputs = self.data.inputs(split)
            key = key_of(teacher_key, split, inputs["input_ids"], inputs["attention_mask"])
            shape = (len(inputs["input_ids"]), self.data.num_classes)
            out[split] = self.logit_store.get_or_compute(key, shape, lambda: predict_logits(teacher, inputs))
        return out

    # 4. student ---------------------------------------------------------------------------------
    def student(self, teacher, loss: DistillLoss | None = None):
        """The student built from the teacher, and the loss bound to both."""
        with config_group("student"):
            student = build_student(self.student_spec, teacher)
        check(
            student.config.num_labels == teacher.config.num_labels,
            "student",
            f"student has {student.config.num_labels} labels but the teacher has {teacher.config.num_labels}",
        )
        with config_group("loss"):
            loss = loss or self.loss
            check_serves(student, loss.needs)
            loss.bind(student.config, teacher.config)
        return student

    def fit(self, student, teacher):
        """Train the student; the pruner and quantizer ``prepare`` it in the module's ``setup("fit")``."""
        module = DistillModule(
            student,
            self.loss,
            optimizer=instantiate(self.cfg.optimizer),
            scheduler=instantiate(self.cfg.scheduler),
            teacher=teacher,
            compressors={"pruner": self.pruner, "quantizer": self.quantizer},
        )
        trainer = self.trainer(*(instantiate(c) for c in self.cfg.get("callbacks", {}).values()))
        trainer.fit(module, datamodule=self.data)
        return module.student.eval(), trainer.is_global_zero

    # 5. convert and export ------------------------------------------------------------------------
    def deploy(self, trained, out_dir: Path):
        """Pruning made permanent, quantization converted, fp32 ONNX exported, and the deployable ONNX
        (quantized where the quantizer allows, else the fp32 one)."""
        with config_group("pruner"):
            pruned = self.pruner.convert(trained)
        with config_group("quantizer"):
            converted = self.quantizer.convert(pruned)
            fp32_onnx = export_onnx(converted.float_model, out_dir / "student.onnx", self.data.max_length)
            deploy_onnx = self.quantizer.quantize_onnx(fp32_onnx, out_dir / f"student.{converted.precision}.onnx") or fp32_onnx
        fp32_onnx, deploy_onnx = fuse_all(self.cfg.export.fuse, fp32_onnx, deploy_onnx)  # export.fuse (distilkit.export.fuse)
        return converted, fp32_onnx, deploy_onnx

    def teacher_onnx(self, teacher, teacher_key: str) -> Path:
        path = Path(self.cfg.paths.cache_dir) / "teacher_onnx" / f"{teacher_key}-{self.data.max_length}.onnx"
        path = path if path.is_file() else export_onnx(teacher, path, self.data.max_length)
        return fused_path(path) if self.cfg.export.fuse and fused_path(path).is_file() else fuse_all(self.cfg.export.fuse, path)[0]

    # 6. evaluation and measurements ---------------------------------------------------------------
    def measure(self, teacher, teacher_key, teacher_logits, trained_logits, converted, fp32_onnx, deploy_onnx) -> dict[str, float]:
        splits = ("dev", "test")
        labels = {split: self.data.labels(split) for split in splits}
        t_logits = {split: teacher_logits[split] for split in splits}
        teacher_onnx = self.teacher_onnx(teacher, teacher_key)
        m = accuracy_metrics("teacher", t_logits, labels) | size_metrics("teacher", teacher) | onnx_size_metrics("teacher", teacher_onnx)
        # the student as trained (fp32 or fake-quant), measured as its float model and fp32 export
        student = converted.float_model
        m |= accuracy_metrics("student", trained_logits, labels) | size_metrics("student", student) | onnx_size_metrics("student", fp32_onnx)
        # the deployed student: converted torch model, and the deployable ONNX in onnxruntime
        onnx_logits = {split: onnx_predict(deploy_onnx, self.data.inputs(split)) for split in splits}
        m |= accuracy_metrics("deploy", onnx_logits, labels, prefix="onnx_") | onnx_size_metrics("deploy", deploy_onnx)
        if converted.torch_model is student:
            m |= {f"deploy/{split}_acc": m[f"student/{split}_acc"] for split in splits}
        else:
            torch_logits = {split: predict_logits(converted.torch_model, self.data.inputs(split)) for split in splits}
            m |= accuracy_metrics("deploy", torch_logits, labels)
        m["deploy/bits"] = {"fp32": 32, "int8": 8, "int4": 4}[converted.precision]
        m["deploy/onnx_acc_gap_dev_pt"] = 100 * abs(m["deploy/onnx_dev_acc"] - m["student/dev_acc"])  # informational
        # parity: the deployable ONNX vs the trained model (as the quantizer emulates it), same dev batches
        dev = self.data.inputs("dev")
        m |= parity.parity_metrics(parity.torch_logits(converted.reference, dev), parity.onnx_logits(deploy_onnx, dev), converted.parity_key)
        timings = self.time_models(teacher, teacher_onnx, converted, fp32_onnx, deploy_onnx)
        return m | timings.metrics() | agreement_metrics(trained_logits, t_logits, m) | ratios(m, timings)

    def time_models(self, teacher, teacher_onnx: Path, converted, fp32_onnx: Path, deploy_onnx: Path) -> Timings:
        """Latency of every role in every runtime, in ONE interleaved session (threads fixed): the ratios
        between roles come from the same stretch of time. Low-bit torch kernels are timed on the CPU."""
        vocab_size = min(teacher.config.vocab_size, getattr(converted.float_model.config, "vocab_size", teacher.config.vocab_size))  # random ids valid for both
        session = self.measure_spec.session(self.data.max_length, vocab_size, self.data.inputs("dev"))
        student = converted.float_model
        session.add_torch("teacher", teacher)
        session.add_onnx("teacher", teacher_onnx)
        session.add_torch("student", student)
        session.add_onnx("student", fp32_onnx)
        if converted.torch_model is not student:
            session.add_torch("deploy", converted.torch_model, device="cpu" if converted.precision != "fp32" else None)
        if deploy_onnx != fp32_onnx:
            session.add_onnx("deploy", deploy_onnx)
        timings = session.run()
        timings.alias("deploy", "student")  # where the deployed model is the student itself
        return timings

    # the whole run --------------------------------------------------------------------------------
    def __call__(self) -> dict[str, float]:
        checked = self.preflight()
        params = OmegaConf.to_container(self.cfg, resolve=True)
        name = self.tracker.run_name or run_name(self.choices, self.overrides, checked.student_layers)
        with self.tracker.run(params=params, tags=self.choices, name=name, description=self.command):
            with stage("teacher"):
                teacher, tokenizer, teacher_key = self.teacher()
            with stage("teacher logits"):
                teacher_logits = self.teacher_logits(teacher, teacher_key)
            self.seed("student")
            student = self.student(teacher)
            with config_group("vocab"):  # vocab=train: student, tokenizer and data re-tokenized (distilkit.prune.vocab)
                tokenizer, fit_teacher = self.vocab.apply(student, teacher, tokenizer, self.data)
            self.data.attach_teacher_logits(teacher_logits["train"])
            self.seed("student.fit")
            with stage("student fit"):
                trained, is_global_zero = self.fit(student, fit_teacher)
            if not is_global_zero:  # DDP: other ranks only train
                return {}
            self.seed("measure")
            trained_logits = {split: predict_logits(trained, self.data.inputs(split)) for split in ("dev", "test")}
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "student"
                with stage("deploy/export"):
                    converted, fp32_onnx, deploy_onnx = self.deploy(trained, out)
                with stage("measure"):
                    metrics = self.measure(teacher, teacher_key, teacher_logits, trained_logits, converted, fp32_onnx, deploy_onnx)
                metrics |= getattr(self.vocab, "report", {})  # kept tokens, embedding MB before/after
                metrics |= fidelity_metrics(trained_logits, teacher_logits, {s: self.data.labels(s) for s in trained_logits})
                self.tracker.log_metrics(metrics)
                self.tracker.set_tags(parity.parity_tags(metrics))
                converted.float_model.save_pretrained(out)
                tokenizer.save_pretrained(out)
                self.tracker.log_artifacts(out, "student")
                self.tracker.log_deployed(deploy_onnx, self.data.inputs("dev"), self.choices.get("data", "data"), self.data.fingerprint)
            print_table(metrics, self.measure_spec.batch_sizes)
        return metrics


def run(cfg: DictConfig, choices: dict[str, str], overrides: Sequence[str] = (), command: str | None = None) -> dict[str, float]:
    """One run of ``cfg``; ``choices`` (group -> option) become tags, ``overrides`` name the run."""
    return Run(cfg, choices, overrides, command)()
