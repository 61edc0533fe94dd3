"""The run, top to bottom: config -> teacher -> teacher logits -> student -> fit -> measure -> MLflow.

Every object comes from its config group through Hydra's ``instantiate`` (``_target_`` is the only
registry); this file wires them in order and computes nothing of its own.
"""

from __future__ import annotations

import logging
import tempfile
from functools import partial
from pathlib import Path

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import RichProgressBar
from omegaconf import DictConfig, MissingMandatoryValue, OmegaConf

from distilkit.data.module import SPLITS, TextClassificationData
from distilkit.errors import ConfigError, check, config_group
from distilkit.hashing import key_of
from distilkit.losses import CrossEntropy
from distilkit.measure.report import MeasureSpec, compare, measure_model, print_table
from distilkit.training.logit_store import LogitStore, predict_logits
from distilkit.training.module import DistillModule
from distilkit.training.schedule import linear_warmup
from distilkit.training.teacher_cache import TeacherCache

log = logging.getLogger(__name__)
GROUPS = ("data", "teacher", "student", "loss", "quantizer", "pruner", "hardware")
# Trainer settings that don't change what a fine-tuned teacher is (max_epochs is the teacher's own).
NOT_IN_TEACHER_KEY = ("max_epochs", "enable_checkpointing", "enable_model_summary", "log_every_n_steps", "limit_val_batches")


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
    def __init__(self, cfg: DictConfig, choices: dict[str, str]):
        self.cfg = cfg
        self.choices = choices
        # Build every spec first: bad numbers fail here, before any run or cache is touched.
        self.data: TextClassificationData = build_group(cfg, "data")
        self.teacher_spec = build_group(cfg, "teacher")
        self.student_spec = build_group(cfg, "student")
        self.loss = build_group(cfg, "loss")
        self.measure_spec = MeasureSpec(**OmegaConf.to_container(cfg.hardware.measure))
        self.tracker = instantiate(cfg.tracking)
        self.teacher_cache = TeacherCache(cfg.paths.cache_dir)
        self.logit_store = LogitStore(cfg.paths.cache_dir)

    def trainer(self, **overrides) -> L.Trainer:
        return instantiate(self.cfg.trainer, logger=self.tracker.lightning_logger(), callbacks=[RichProgressBar()], **overrides)

    # 2. teacher ---------------------------------------------------------------------------------
    def teacher(self):
        """The teacher fine-tuned on the task (from the cache, or built, fine-tuned and cached); the data
        is tokenized with its tokenizer on the way."""
        spec, data = self.teacher_spec, self.data
        trainer = {k: v for k, v in OmegaConf.to_container(self.cfg.trainer, resolve=True).items() if k not in NOT_IN_TEACHER_KEY}
        key = key_of(spec.fingerprint(), data.fingerprint, data.max_length, data.batch_size, self.cfg.seed, trainer)
        cached = self.teacher_cache.load(key)
        if cached is not None:
            model, tokenizer, _ = cached
            log.info("teacher: cached fine-tuned model %s", self.teacher_cache.path(key))
        else:
            with config_group("teacher"):
                model, tokenizer = spec.build(data.texts("train"), data.num_classes)
        data.tokenize(tokenizer)
        if cached is None and spec.needs_finetune():
            self.finetune(model, spec.finetune)
            self.teacher_cache.save(key, model, tokenizer, {"fingerprint": spec.fingerprint(), "data": data.fingerprint})
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
            optimizer=partial(torch.optim.AdamW, lr=spec.lr, weight_decay=spec.weight_decay),
            scheduler=partial(linear_warmup, warmup_fraction=spec.warmup_fraction),
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
    def student(self, teacher):
        with config_group("student"):
            student = self.student_spec.build(teacher)
        check(
            student.config.num_labels == teacher.config.num_labels,
            "student",
            f"student has {student.config.num_labels} labels but the teacher has {teacher.config.num_labels}",
        )
        with config_group("loss"):
            self.loss.bind(student.config, teacher.config)
        return student

    def fit(self, student, teacher):
        module = DistillModule(
            student,
            self.loss,
            optimizer=instantiate(self.cfg.optimizer),
            scheduler=instantiate(self.cfg.scheduler),
            teacher=teacher,
        )
        self.trainer().fit(module, datamodule=self.data)
        return module.student.eval()

    # 5-6. evaluation and measurements ---------------------------------------------------------------
    def measure(self, teacher, student, teacher_logits) -> dict[str, float]:
        spec, seq_len = self.measure_spec, self.data.max_length
        labels = {split: self.data.labels(split) for split in ("dev", "test")}
        t_logits = {split: teacher_logits[split] for split in labels}
        s_logits = {split: predict_logits(student, self.data.inputs(split)) for split in labels}
        metrics = measure_model("teacher", teacher, t_logits, labels, spec, seq_len)
        metrics |= measure_model("student", student, s_logits, labels, spec, seq_len)
        metrics |= compare(s_logits, t_logits, metrics, spec.batch_sizes)
        return metrics

    # the whole run --------------------------------------------------------------------------------
    def __call__(self) -> dict[str, float]:
        L.seed_everything(self.cfg.seed, verbose=False)
        params = OmegaConf.to_container(self.cfg, resolve=True)
        with self.tracker.run(params=params, tags=self.choices):
            with config_group("data"):
                self.data.splits  # reads files / generates: input errors surface here
            teacher, tokenizer, teacher_key = self.teacher()
            teacher_logits = self.teacher_logits(teacher, teacher_key)
            self.data.attach_teacher_logits(teacher_logits["train"])
            student = self.fit(self.student(teacher), teacher)
            metrics = self.measure(teacher, student, teacher_logits)
            self.tracker.log_metrics(metrics)
            with tempfile.TemporaryDirectory() as tmp:
                student.save_pretrained(Path(tmp) / "student")
                tokenizer.save_pretrained(Path(tmp) / "student")
                self.tracker.log_artifacts(Path(tmp) / "student", "student")
            print_table(metrics, self.measure_spec.batch_sizes)
        return metrics


def run(cfg: DictConfig, choices: dict[str, str]) -> dict[str, float]:
    return Run(cfg, choices)()
