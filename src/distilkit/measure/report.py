"""The run's measurements of one model (teacher or student), their metric names and the printed table.

Metric names are made here and nowhere else: ``{role}/{metric}``, e.g. ``student/dev_acc``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from rich.console import Console
from rich.table import Table

from distilkit.measure.accuracy import accuracy, agreement
from distilkit.measure.latency import torch_latency
from distilkit.measure.size import num_nonzero, num_parameters, saved_size_mb


@dataclass
class MeasureSpec:
    """How models are measured: ``device`` (cpu/cuda), ``threads`` (None: torch's default), batch sizes,
    ``seq_len`` (None: the data's ``max_length``), warm-up calls and timed repeats."""

    device: str = "cpu"
    threads: int | None = None
    batch_sizes: list[int] = field(default_factory=lambda: [1, 32])
    seq_len: int | None = None
    warmup: int = 3
    repeats: int = 20


def measure_model(role: str, model, split_logits: dict[str, torch.Tensor], labels: dict[str, torch.Tensor], spec: MeasureSpec, seq_len: int) -> dict[str, float]:
    """Accuracy per split, parameters, non-zeros, size on disk, latency/throughput per batch size."""
    metrics = {f"{role}/{split}_acc": accuracy(logits, labels[split]) for split, logits in split_logits.items()}
    metrics[f"{role}/params"] = num_parameters(model)
    metrics[f"{role}/nonzero_params"] = num_nonzero(model)
    metrics[f"{role}/size_mb"] = saved_size_mb(model)
    threads = torch.get_num_threads()
    if spec.threads:
        torch.set_num_threads(spec.threads)
    try:
        for batch_size in spec.batch_sizes:
            latency = torch_latency(model, batch_size, spec.seq_len or seq_len, spec.warmup, spec.repeats, spec.device)
            metrics.update(latency.metrics(f"{role}/"))
        metrics[f"{role}/threads"] = torch.get_num_threads()
    finally:
        torch.set_num_threads(threads)
        model.cpu()
    return metrics


def compare(student_logits: dict[str, torch.Tensor], teacher_logits: dict[str, torch.Tensor], metrics: dict[str, float], batch_sizes: list[int]) -> dict[str, float]:
    """Student vs teacher: retention (accuracy ratio), agreement, size ratio and speed-ups."""
    out = {}
    for split in student_logits:
        out[f"student/retention_{split}"] = metrics[f"student/{split}_acc"] / max(metrics[f"teacher/{split}_acc"], 1e-12)
        out[f"student/agreement_{split}"] = agreement(student_logits[split], teacher_logits[split])
    out["student/size_ratio"] = metrics["teacher/size_mb"] / metrics["student/size_mb"]
    for b in batch_sizes:
        out[f"student/speedup_b{b}"] = metrics[f"teacher/latency_b{b}_p50_ms"] / metrics[f"student/latency_b{b}_p50_ms"]
    return out


def print_table(metrics: dict[str, float], batch_sizes: list[int], console: Console | None = None) -> None:
    rows = [("dev acc", "dev_acc", "{:.4f}"), ("test acc", "test_acc", "{:.4f}"), ("params (M)", "params", "{:.2f}"),
            ("non-zero (M)", "nonzero_params", "{:.2f}"), ("size (MB)", "size_mb", "{:.2f}")]
    for b in batch_sizes:
        rows += [(f"b{b} p50 (ms)", f"latency_b{b}_p50_ms", "{:.2f}"), (f"b{b} p95 (ms)", f"latency_b{b}_p95_ms", "{:.2f}"),
                 (f"b{b} throughput (/s)", f"throughput_b{b}", "{:.0f}")]
    table = Table(title="distilkit: teacher vs student")
    for column in ("metric", "teacher", "student"):
        table.add_column(column, justify="right")
    for label, key, fmt in rows:
        cells = []
        for role in ("teacher", "student"):
            value = metrics.get(f"{role}/{key}")
            value = value / 1e6 if value is not None and key in ("params", "nonzero_params") else value
            cells.append("-" if value is None else fmt.format(value))
        table.add_row(label, *cells)
    summary = ", ".join(
        f"{name} {metrics[key]:.3f}" for name, key in (("retention(dev)", "student/retention_dev"), ("agreement(dev)", "student/agreement_dev"), ("size ratio", "student/size_ratio")) if key in metrics
    )
    (console or Console()).print(table, summary)
