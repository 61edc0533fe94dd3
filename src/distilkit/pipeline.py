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
from distilkit.export.onnx import export_onnx
from distilkit.losses import CrossEntropy
from distilkit.measure import parity
from distilkit.measure.report import (
    MeasureSpec,
    accuracy_metrics,
    agreement_metrics,
    onnx_metrics,
    onnx_predict,
    print_table,
    ratios,
    size_metrics,
    torch_metrics,
)
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
        self.pruner = build_group(cfg, "pruner")
        self.quantizer = build_group(cfg, "quantizer")
        with config_group("hardware"):
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
        """Train the student; the pruner and quantizer ``prepare`` it in the module's ``setup("fit")``."""
        module = DistillModule(
            student,
            self.loss,
            optimizer=instantiate(self.cfg.optimizer),
            scheduler=instantiate(self.cfg.scheduler),
            teacher=teacher,
            compressors={"pruner": self.pruner, "quantizer": self.quantizer},
        )
        trainer = self.trainer()
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
        return converted, fp32_onnx, deploy_onnx

    def teacher_onnx(self, teacher, teacher_key: str) -> Path:
        path = Path(self.cfg.paths.cache_dir) / "teacher_onnx" / f"{teacher_key}-{self.data.max_length}.onnx"
        return path if path.is_file() else export_onnx(teacher, path, self.data.max_length)

    # 6. evaluation and measurements ---------------------------------------------------------------
    def measure(self, teacher, teacher_key, teacher_logits, trained_logits, converted, fp32_onnx, deploy_onnx) -> dict[str, float]:
        spec, seq_len, vocab = self.measure_spec, self.data.max_length, teacher.config.vocab_size
        splits = ("dev", "test")
        labels = {split: self.data.labels(split) for split in splits}
        t_logits = {split: teacher_logits[split] for split in splits}
        m = accuracy_metrics("teacher", t_logits, labels) | size_metrics("teacher", teacher)
        m |= torch_metrics("teacher", teacher, spec, seq_len)
        m |= onnx_metrics("teacher", self.teacher_onnx(teacher, teacher_key), vocab, spec, seq_len)
        # the student as trained (fp32 or fake-quant), measured as its float model and fp32 export
        student = converted.float_model
        m |= accuracy_metrics("student", trained_logits, labels) | size_metrics("student", student)
        student_runtime = torch_metrics("student", student, spec, seq_len) | onnx_metrics("student", fp32_onnx, vocab, spec, seq_len)
        m |= student_runtime
        # the deployed student: converted torch model, and the deployable ONNX in onnxruntime
        same = {k.replace("student/", "deploy/", 1): v for k, v in student_runtime.items()}
        onnx_logits = {split: onnx_predict(deploy_onnx, self.data.inputs(split)) for split in splits}
        m |= accuracy_metrics("deploy", onnx_logits, labels, prefix="onnx_")
        if converted.torch_model is student:
            m |= {k: v for k, v in same.items() if "ort_" not in k and "onnx" not in k}
            m |= {f"deploy/{split}_acc": m[f"student/{split}_acc"] for split in splits}
        else:
            torch_logits = {split: predict_logits(converted.torch_model, self.data.inputs(split)) for split in splits}
            m |= accuracy_metrics("deploy", torch_logits, labels) | torch_metrics("deploy", converted.torch_model, spec, seq_len)
        if deploy_onnx == fp32_onnx:
            m |= {k: v for k, v in same.items() if "ort_" in k or "onnx" in k}
        else:
            m |= onnx_metrics("deploy", deploy_onnx, vocab, spec, seq_len)
        m["deploy/bits"] = {"fp32": 32, "int8": 8, "int4": 4}[converted.precision]
        m["deploy/onnx_acc_gap_dev_pt"] = 100 * abs(m["deploy/onnx_dev_acc"] - m["student/dev_acc"])  # informational
        # parity: the deployable ONNX vs the trained model (as the quantizer emulates it), same dev batches
        dev = self.data.inputs("dev")
        m |= parity.parity_metrics(parity.torch_logits(converted.reference, dev), parity.onnx_logits(deploy_onnx, dev), converted.precision)
        return m | agreement_metrics(trained_logits, t_logits, m) | ratios(m, spec.batch_sizes)

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
            trained, is_global_zero = self.fit(self.student(teacher), teacher)
            if not is_global_zero:  # DDP: other ranks only train
                return {}
            trained_logits = {split: predict_logits(trained, self.data.inputs(split)) for split in ("dev", "test")}
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "student"
                converted, fp32_onnx, deploy_onnx = self.deploy(trained, out)
                metrics = self.measure(teacher, teacher_key, teacher_logits, trained_logits, converted, fp32_onnx, deploy_onnx)
                self.tracker.log_metrics(metrics)
                self.tracker.set_tags(parity.parity_tags(metrics))
                converted.float_model.save_pretrained(out)
                tokenizer.save_pretrained(out)
                self.tracker.log_artifacts(out, "student")
            print_table(metrics, self.measure_spec.batch_sizes)
        return metrics


def run(cfg: DictConfig, choices: dict[str, str]) -> dict[str, float]:
    return Run(cfg, choices)()
