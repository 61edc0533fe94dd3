"""The run's measurements, their metric names and the printed table.

Metric names are made here and nowhere else: ``{role}/{metric}``. Roles:
``teacher``; ``student`` — the trained student as trained (fp32, or fake-quantized/masked), and its
fp32 export; ``deploy`` — the converted model (real int8/int4 kernels where the quantizer has them):
in torch, and as the deployable ONNX file in onnxruntime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from distilkit.export.onnx import ort_logits, ort_session
from distilkit.measure.accuracy import accuracy, agreement
from distilkit.measure.latency import onnx_latency, torch_latency
from distilkit.measure.parity import parity_summary
from distilkit.measure.size import file_size_mb, num_parameters, saved_size_mb
from distilkit.prune import count_nonzero, sparse_size_mb

RUNTIMES = ("torch", "onnxruntime")


@dataclass
class MeasureSpec:
    """The measurement target: ``runtimes`` (torch, onnxruntime), ``device`` for torch (cpu/cuda),
    ``threads`` (None: the runtime's default), batch sizes, ``seq_len`` (None: the data's
    ``max_length``), warm-up calls and timed repeats."""

    runtimes: list[str] = field(default_factory=lambda: list(RUNTIMES))
    device: str = "cpu"
    threads: int | None = None
    batch_sizes: list[int] = field(default_factory=lambda: [1, 32])
    seq_len: int | None = None
    warmup: int = 3
    repeats: int = 20

    def __post_init__(self):
        from distilkit.errors import check

        bad = [r for r in self.runtimes if r not in RUNTIMES]
        check(not bad, "measure.runtimes", f"{bad} not allowed; choose from {list(RUNTIMES)}")
        check(all(b >= 1 for b in self.batch_sizes), "measure.batch_sizes", f"must be >= 1, got {self.batch_sizes}")


def accuracy_metrics(role: str, split_logits: dict[str, torch.Tensor], labels: dict[str, torch.Tensor], prefix: str = "") -> dict[str, float]:
    return {f"{role}/{prefix}{split}_acc": accuracy(logits, labels[split]) for split, logits in split_logits.items()}


def size_metrics(role: str, model) -> dict[str, float]:
    return {
        f"{role}/params": num_parameters(model),
        f"{role}/nonzero_params": count_nonzero(model),
        f"{role}/size_mb": saved_size_mb(model),
        f"{role}/sparse_size_mb": sparse_size_mb(model),
    }


def torch_metrics(role: str, model, spec: MeasureSpec, seq_len: int) -> dict[str, float]:
    """Torch latency/throughput per batch size on ``spec.device``, threads recorded."""
    if "torch" not in spec.runtimes:
        return {}
    metrics = {}
    threads = torch.get_num_threads()
    if spec.threads:
        torch.set_num_threads(spec.threads)
    try:
        for batch_size in spec.batch_sizes:
            latency = torch_latency(model, batch_size, spec.seq_len or seq_len, spec.warmup, spec.repeats, spec.device)
            metrics |= latency.metrics(f"{role}/")
        metrics[f"{role}/threads"] = torch.get_num_threads()
    finally:
        torch.set_num_threads(threads)
        model.cpu()
    return metrics


def onnx_metrics(role: str, path: Path, vocab_size: int, spec: MeasureSpec, seq_len: int) -> dict[str, float]:
    """Size of the ONNX file and onnxruntime latency/throughput per batch size."""
    metrics = {f"{role}/onnx_size_mb": file_size_mb(path)}
    if "onnxruntime" in spec.runtimes:
        session = ort_session(path, spec.threads)
        for batch_size in spec.batch_sizes:
            latency = onnx_latency(session, batch_size, spec.seq_len or seq_len, vocab_size, spec.warmup, spec.repeats)
            metrics |= latency.metrics(f"{role}/ort_")
    return metrics


def onnx_predict(path: Path, inputs: dict[str, torch.Tensor], batch_size: int = 64) -> torch.Tensor:
    """Logits of the ONNX model at ``path`` for every row of ``inputs``."""
    session = ort_session(path)
    n = len(inputs["input_ids"])
    chunks = [
        torch.from_numpy(ort_logits(session, inputs["input_ids"][i : i + batch_size], inputs["attention_mask"][i : i + batch_size]))
        for i in range(0, n, batch_size)
    ]
    return torch.cat(chunks)


def ratios(metrics: dict[str, float], batch_sizes: list[int]) -> dict[str, float]:
    """Size ratio and speed-up of the student and the deployed model vs the teacher (and deploy vs student),
    each in the same runtime: torch vs torch, onnxruntime vs onnxruntime."""
    out = {}
    pairs = [("student", "teacher"), ("deploy", "teacher"), ("deploy", "student")]
    for role, base in pairs:
        size_key = "onnx_size_mb"
        if f"{role}/{size_key}" in metrics and f"{base}/{size_key}" in metrics:
            out[f"{role}/size_ratio_vs_{base}"] = metrics[f"{base}/{size_key}"] / metrics[f"{role}/{size_key}"]
        for b in batch_sizes:
            for runtime in ("", "ort_"):
                key = f"{runtime}latency_b{b}_p50_ms"
                if f"{role}/{key}" in metrics and f"{base}/{key}" in metrics:
                    out[f"{role}/{runtime}speedup_b{b}_vs_{base}"] = metrics[f"{base}/{key}"] / metrics[f"{role}/{key}"]
    return out


def agreement_metrics(student_logits: dict[str, torch.Tensor], teacher_logits: dict[str, torch.Tensor], metrics: dict[str, float]) -> dict[str, float]:
    """Retention (student/teacher accuracy) and agreement with the teacher's predictions, per split."""
    out = {}
    for split in student_logits:
        out[f"student/retention_{split}"] = metrics[f"student/{split}_acc"] / max(metrics[f"teacher/{split}_acc"], 1e-12)
        out[f"student/agreement_{split}"] = agreement(student_logits[split], teacher_logits[split])
    return out


def print_table(metrics: dict[str, float], batch_sizes: list[int], console: Console | None = None) -> None:
    rows = [("dev acc (torch)", "dev_acc", "{:.4f}"), ("dev acc (onnx)", "onnx_dev_acc", "{:.4f}"), ("test acc (torch)", "test_acc", "{:.4f}"),
            ("params (M)", "params", "{:.2f}"), ("non-zero (M)", "nonzero_params", "{:.2f}"), ("size (MB)", "size_mb", "{:.2f}"),
            ("onnx size (MB)", "onnx_size_mb", "{:.2f}")]
    for b in batch_sizes:
        rows += [(f"torch b{b} p50 (ms)", f"latency_b{b}_p50_ms", "{:.2f}"), (f"ort b{b} p50 (ms)", f"ort_latency_b{b}_p50_ms", "{:.2f}"),
                 (f"ort b{b} throughput (/s)", f"ort_throughput_b{b}", "{:.0f}")]
    roles = ("teacher", "student", "deploy")
    table = Table(title="distilkit: teacher vs student vs deployed student")
    for column in ("metric", *roles):
        table.add_column(column, justify="right")
    for label, key, fmt in rows:
        cells = []
        for role in roles:
            value = metrics.get(f"{role}/{key}")
            value = value / 1e6 if value is not None and key in ("params", "nonzero_params") else value
            cells.append("-" if value is None else fmt.format(value))
        table.add_row(label, *cells)
    summary = ", ".join(
        f"{name} {metrics[key]:.3f}"
        for name, key in (("retention(dev)", "student/retention_dev"), ("agreement(dev)", "student/agreement_dev"),
                          ("size ratio vs teacher", "deploy/size_ratio_vs_teacher"), ("ort speed-up b1 vs teacher", "deploy/ort_speedup_b1_vs_teacher"))
        if key in metrics
    )
    summary = ", ".join(part for part in (summary, parity_summary(metrics)) if part)  # deployment parity verdict
    (console or Console()).print(table, summary)
