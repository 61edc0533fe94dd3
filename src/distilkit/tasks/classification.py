"""Sequence classification: the teacher's logits per example are stored; accuracy, ONNX and latency measured.

Everything here is what the pipeline did before tasks existed, moved behind the task seam unchanged.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification

from distilkit.errors import check, check_bool, config_group
from distilkit.export.fuse import cached_fused_path, check_fuse, fuse_onnx
from distilkit.export.onnx import export_onnx
from distilkit.hashing import key_of
from distilkit.losses import CrossEntropy
from distilkit.measure import parity
from distilkit.measure.accuracy import fidelity_metrics
from distilkit.measure.report import accuracy_metrics, agreement_metrics, onnx_predict, onnx_size_metrics, print_table, ratios, size_metrics
from distilkit.measure.session import Timings
from distilkit.tasks.base import Task
from distilkit.training.logit_store import predict_logits
from distilkit.training.module import DistillModule


class Classification(Task):
    name = "classification"
    model_class = AutoModelForSequenceClassification
    finetune_loss = CrossEntropy

    def __init__(self, store_logits: bool = True):
        """``store_logits``: the teacher's logits per split computed once, kept in the logit store and
        read by every later run (the default); ``false``: no store is read or written, the frozen teacher
        runs online in every training step (same loss, same numbers up to float order; slower) and its
        dev/test logits for the metrics are computed in memory."""
        self.store_logits = check_bool(store_logits, "store_logits")

    def options_hint(self, group: str) -> str:
        return {"data": "synthetic, sst2, text_lines", "teacher": "scratch, bert_base, minilm", "student": "distil, scratch",
                "loss": "ce, kd, distilbert, intermediate"}.get(group, "see README")

    # teacher ------------------------------------------------------------------------------------
    def teacher_config(self, run):
        with config_group("data"):
            num_labels = run.data.num_classes  # reads files / generates the splits
        with config_group("teacher"):
            return run.teacher_spec.config(num_labels)

    def build_teacher(self, spec, data):
        return spec.build(data.texts("train"), data.num_classes)

    def check_teacher(self, model, data) -> None:
        check(
            model.config.num_labels == data.num_classes,
            "teacher",
            f"teacher has {model.config.num_labels} labels but the data has {data.num_classes}",
        )

    def check_student(self, student, teacher) -> None:
        check(
            student.config.num_labels == teacher.config.num_labels,
            "student",
            f"student has {student.config.num_labels} labels but the teacher has {teacher.config.num_labels}",
        )

    def module(self, student, loss, optimizer, scheduler=None, teacher=None, compressors=None, log_prefix: str = ""):
        return DistillModule(student, loss, optimizer=optimizer, scheduler=scheduler, teacher=teacher, compressors=compressors, log_prefix=log_prefix,
                             online_teacher=not self.store_logits)

    # teacher logits -----------------------------------------------------------------------------
    def teacher_outputs(self, run, teacher, teacher_key: str) -> dict[str, torch.Tensor]:
        """Teacher logits per split, from the store or computed once; keyed by teacher and split inputs.
        Store off: dev/test computed in memory, none for training (the teacher runs in the step)."""
        if not self.store_logits:
            return {split: predict_logits(teacher, run.data.inputs(split)) for split in run.data.split_names if split != "train"}
        out = {}
        for split in run.data.split_names:
            inputs = run.data.inputs(split)
            key = key_of(teacher_key, split, inputs["input_ids"], inputs["attention_mask"])
            shape = (len(inputs["input_ids"]), run.data.num_classes)
            out[split] = run.logit_store.get_or_compute(key, shape, lambda: predict_logits(teacher, inputs))
        return out

    def attach(self, data, outputs) -> None:
        if self.store_logits:
            data.attach_teacher_logits(outputs["train"])

    # deploy and measure -------------------------------------------------------------------------
    def export(self, model, path: Path, data, fuse: bool = False) -> Path:
        return export_onnx(model, path, data.max_length, fuse_attention=fuse)

    def teacher_onnx(self, run, teacher, teacher_key: str, fuse: bool | None = None) -> Path:
        """The teacher's ONNX from the cache (exported once per teacher, length and ``fuse``; default ``export.fuse``)."""
        fuse = check_fuse(run.cfg.export.fuse if fuse is None else fuse)
        name = f"{teacher_key}-{run.data.max_length}" + (".mha.onnx" if fuse else ".onnx")  # .mha: attention fused at export
        path = Path(run.cfg.paths.cache_dir) / "teacher_onnx" / name
        if fuse and cached_fused_path(path).is_file():
            return cached_fused_path(path)
        path = path if path.is_file() else export_onnx(teacher, path, run.data.max_length, fuse_attention=fuse)
        return fuse_onnx(path, cached_fused_path(path)) if fuse else path

    def predict(self, run, trained) -> dict[str, torch.Tensor]:
        return {split: predict_logits(trained, run.data.inputs(split)) for split in run.data.eval_splits}

    def measure(self, run, teacher, teacher_key, teacher_logits, trained_logits, converted, fp32_onnx, deploy_onnx) -> dict[str, float]:
        data = run.data
        splits = data.eval_splits
        labels = {split: data.labels(split) for split in splits}
        t_logits = {split: teacher_logits[split] for split in splits}
        teacher_onnx = self.teacher_onnx(run, teacher, teacher_key)
        m = accuracy_metrics("teacher", t_logits, labels) | size_metrics("teacher", teacher) | onnx_size_metrics("teacher", teacher_onnx)
        # the student as trained (fp32 or fake-quant), measured as its float model and fp32 export
        student = converted.float_model
        m |= accuracy_metrics("student", trained_logits, labels) | size_metrics("student", student) | onnx_size_metrics("student", fp32_onnx)
        # the deployed student: converted torch model, and the deployable ONNX in onnxruntime
        onnx_logits = {split: onnx_predict(deploy_onnx, data.inputs(split)) for split in splits}
        m |= accuracy_metrics("deploy", onnx_logits, labels, prefix="onnx_") | onnx_size_metrics("deploy", deploy_onnx)
        if converted.torch_model is student:
            m |= {f"deploy/{split}_acc": m[f"student/{split}_acc"] for split in splits}
        else:
            torch_logits = {split: predict_logits(converted.torch_model, data.inputs(split)) for split in splits}
            m |= accuracy_metrics("deploy", torch_logits, labels)
        m["deploy/bits"] = {"fp32": 32, "int8": 8, "int4": 4}[converted.precision]
        m["deploy/onnx_acc_gap_dev_pt"] = 100 * abs(m["deploy/onnx_dev_acc"] - m["student/dev_acc"])  # informational
        # parity: the deployable ONNX vs the trained model (as the quantizer emulates it), same dev batches
        dev = data.inputs("dev")
        m |= parity.parity_metrics(parity.torch_logits(converted.reference, dev), parity.onnx_logits(deploy_onnx, dev), converted.parity_key)
        timings = self.time_models(run, teacher, teacher_onnx, converted, fp32_onnx, deploy_onnx)
        m = m | timings.metrics() | agreement_metrics(trained_logits, t_logits, m) | ratios(m, timings)
        return m | fidelity_metrics(trained_logits, teacher_logits, {s: data.labels(s) for s in trained_logits})

    def time_models(self, run, teacher, teacher_onnx: Path, converted, fp32_onnx: Path, deploy_onnx: Path) -> Timings:
        """Latency of every role in every runtime, in ONE interleaved session (threads fixed): the ratios
        between roles come from the same stretch of time. Low-bit torch kernels are timed on the CPU."""
        vocab_size = min(teacher.config.vocab_size, getattr(converted.float_model.config, "vocab_size", teacher.config.vocab_size))  # random ids valid for both
        session = run.measure_spec.session(run.data.max_length, vocab_size, run.data.inputs("dev"))
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

    def tags(self, metrics: dict[str, float]) -> dict[str, str]:
        return parity.parity_tags(metrics)

    def print_table(self, metrics: dict[str, float], run) -> None:
        print_table(metrics, run.measure_spec.batch_sizes)
