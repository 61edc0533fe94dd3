"""The run's measurements, their metric names and the printed table.

Metric names are made here (latency and speed-up names in :mod:`distilkit.measure.latency`):
``{role}/{metric}``, and ``measure/threads_{torch,ort}`` for the timing session. Roles:
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
from distilkit.measure.latency import LENGTHS, example_inputs, latency_name, real_batches
from distilkit.measure.session import TimingSession, Timings, cpu_description, physical_cores
from distilkit.measure.parity import parity_summary
from distilkit.measure.size import file_size_mb, num_parameters, saved_size_mb
from distilkit.prune import count_nonzero, sparse_size_mb

RUNTIMES = ("torch", "onnxruntime")
PAIRS = [("student", "teacher"), ("deploy", "teacher"), ("deploy", "student")]  # (role, base) of every ratio


@dataclass
class MeasureSpec:
    """How latency is measured (one interleaved session for every role and runtime, see
    :mod:`distilkit.measure.session`): ``runtimes`` (torch, onnxruntime), ``device`` for torch (cpu/cuda;
    onnxruntime and models with CPU-only kernels are always timed on the CPU), ``threads`` for torch and
    onnxruntime alike (None: the physical core count), ``batch_sizes``, ``lengths`` (``full``: ``seq_len``
    tokens, all-ones mask; ``real``: the dev set's own lengths), ``seq_len`` (None: the data's
    ``max_length``), ``warmup`` calls per entry, ``rewarm_ms`` of untimed calls before each block of timed calls
    (:class:`~distilkit.measure.session.TimingSession`), then at least ``min_samples`` timed calls per entry and
    at least ``min_time_s`` seconds of them (fast models take more samples), at most ``max_samples``."""

    runtimes: list[str] = field(default_factory=lambda: list(RUNTIMES))
    device: str = "cpu"
    threads: int | None = None
    batch_sizes: list[int] = field(default_factory=lambda: [1, 32])
    lengths: list[str] = field(default_factory=lambda: list(LENGTHS))
    seq_len: int | None = None
    warmup: int = 5
    rewarm_ms: float = 2.0
    min_samples: int = 100
    min_time_s: float = 1.0
    max_samples: int = 5000

    def __post_init__(self):
        from distilkit.errors import check

        bad = [r for r in self.runtimes if r not in RUNTIMES]
        check(not bad, "measure.runtimes", f"{bad} not allowed; choose from {list(RUNTIMES)}")
        check(self.device == "cpu" or self.device.startswith("cuda"), "measure.device", f"must be cpu or cuda[:N], got {self.device!r}")
        check(self.threads is None or self.threads >= 1, "measure.threads", f"must be >= 1 or null (the physical core count), got {self.threads}")
        check(all(b >= 1 for b in self.batch_sizes), "measure.batch_sizes", f"must be >= 1, got {self.batch_sizes}")
        bad = [m for m in self.lengths if m not in LENGTHS]
        check(bool(self.lengths) and not bad, "measure.lengths", f"{bad or self.lengths} not allowed; choose one or more of {list(LENGTHS)}")
        check(self.seq_len is None or self.seq_len >= 1, "measure.seq_len", f"must be >= 1 or null (data.max_length), got {self.seq_len}")
        check(self.warmup >= 1, "measure.warmup", f"must be >= 1, got {self.warmup}")
        check(isinstance(self.rewarm_ms, (int, float)) and not isinstance(self.rewarm_ms, bool) and self.rewarm_ms >= 0, "measure.rewarm_ms",
              f"must be a number >= 0 (ms of untimed calls before each block of timed calls), got {self.rewarm_ms!r}")
        check(self.min_samples >= 1, "measure.min_samples", f"must be >= 1 (100 or more for a real p95), got {self.min_samples}")
        check(self.min_time_s >= 0, "measure.min_time_s", f"must be >= 0, got {self.min_time_s}")
        check(self.max_samples >= self.min_samples, "measure.max_samples", f"must be >= min_samples ({self.min_samples}), got {self.max_samples}")

    def session(self, seq_len: int, vocab_size: int, dev_inputs: dict[str, torch.Tensor]) -> TimingSession:
        """An empty timing session on this spec's inputs: per length mode and batch size, the ``full``
        batch (``self.seq_len or seq_len`` random ids, all-ones mask) or the dev set's ``real`` batches."""
        inputs = {}
        for lengths in self.lengths:
            for b in self.batch_sizes:
                if lengths == "full":
                    inputs[(lengths, b)] = [example_inputs(b, self.seq_len or seq_len, vocab_size)]
                else:
                    inputs[(lengths, b)] = list(real_batches(dev_inputs["input_ids"], dev_inputs["attention_mask"], b))
        return TimingSession(
            inputs, threads=self.threads or physical_cores(), warmup=self.warmup, rewarm_ms=self.rewarm_ms, min_samples=self.min_samples,
            min_time_s=self.min_time_s, max_samples=self.max_samples, device=self.device, runtimes=self.runtimes,
        )


def accuracy_metrics(role: str, split_logits: dict[str, torch.Tensor], labels: dict[str, torch.Tensor], prefix: str = "") -> dict[str, float]:
    return {f"{role}/{prefix}{split}_acc": accuracy(logits, labels[split]) for split, logits in split_logits.items()}


def size_metrics(role: str, model) -> dict[str, float]:
    return {
        f"{role}/params": num_parameters(model),
        f"{role}/nonzero_params": count_nonzero(model),
        f"{role}/size_mb": saved_size_mb(model),
        f"{role}/sparse_size_mb": sparse_size_mb(model),
    }


def onnx_size_metrics(role: str, path: Path) -> dict[str, float]:
    return {f"{role}/onnx_size_mb": file_size_mb(path)}


def onnx_predict(path: Path, inputs: dict[str, torch.Tensor], batch_size: int = 64) -> torch.Tensor:
    """Logits of the ONNX model at ``path`` for every row of ``inputs``."""
    session = ort_session(path)
    n = len(inputs["input_ids"])
    chunks = [
        torch.from_numpy(ort_logits(session, inputs["input_ids"][i : i + batch_size], inputs["attention_mask"][i : i + batch_size]))
        for i in range(0, n, batch_size)
    ]
    return torch.cat(chunks)


def ratios(metrics: dict[str, float], timings: Timings) -> dict[str, float]:
    """Size ratio (ONNX files) and speed-ups of the student and the deployed model vs the teacher (and deploy
    vs student); speed-ups from ``timings``, one session, the same runtime on both sides."""
    out = {}
    for role, base in PAIRS:
        if f"{role}/onnx_size_mb" in metrics and f"{base}/onnx_size_mb" in metrics:
            out[f"{role}/size_ratio_vs_{base}"] = metrics[f"{base}/onnx_size_mb"] / metrics[f"{role}/onnx_size_mb"]
    return out | timings.speedups(PAIRS)


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
    for lengths in LENGTHS:  # full: max length, all-ones mask; real: the dev set's lengths
        for b in batch_sizes:
            tag = f"b{b}{' real' if lengths == 'real' else ''}"
            rows += [(f"torch {tag} p50 (ms)", latency_name("torch", lengths, b, "p50_ms"), "{:.2f}"),
                     (f"ort {tag} p50 (ms)", latency_name("onnxruntime", lengths, b, "p50_ms"), "{:.2f}"),
                     (f"ort {tag} p95 (ms)", latency_name("onnxruntime", lengths, b, "p95_ms"), "{:.2f}"),
                     (f"ort {tag} throughput (/s)", latency_name("onnxruntime", lengths, b, "throughput"), "{:.0f}")]
    roles = ("teacher", "student", "deploy")
    threads = ", ".join(f"{name} {int(metrics[k])}" for name, k in (("torch", "measure/threads_torch"), ("ort", "measure/threads_ort")) if k in metrics)
    table = Table(title="distilkit: teacher vs student vs deployed student",
                  caption=f"latency: one interleaved session, threads: {threads or '-'}; b<N>: full length, "
                          "all-ones mask; b<N> real: dev sentences, batches padded to their longest; CPU: " + cpu_description())
    for column in ("metric", *roles):
        table.add_column(column, justify="right")
    for label, key, fmt in rows:
        if not any(f"{role}/{key}" in metrics for role in roles):
            continue
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
