"""Latency: warm-up, then repeated timed calls; p50/p95 in ms and throughput in examples/s."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class Latency:
    batch_size: int
    p50_ms: float
    p95_ms: float
    throughput: float  # examples per second at the median

    def metrics(self, prefix: str) -> dict[str, float]:
        b = self.batch_size
        return {
            f"{prefix}latency_b{b}_p50_ms": self.p50_ms,
            f"{prefix}latency_b{b}_p95_ms": self.p95_ms,
            f"{prefix}throughput_b{b}": self.throughput,
        }


def time_calls(call: Callable[[], object], batch_size: int, warmup: int, repeats: int) -> Latency:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    p50 = statistics.median(times)
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return Latency(batch_size, p50, p95, batch_size / (p50 / 1000))


def example_inputs(batch_size: int, seq_len: int, vocab_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random token ids with a full attention mask: every position is real work."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000 if vocab_size > 2000 else 5, vocab_size, (batch_size, seq_len), generator=gen)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def torch_latency(model: torch.nn.Module, batch_size: int, seq_len: int, warmup: int, repeats: int, device: str = "cpu") -> Latency:
    """Latency of ``model`` in torch on ``device`` (eval mode, inference mode)."""
    model.eval().to(device)
    inputs = {k: v.to(device) for k, v in example_inputs(batch_size, seq_len, model.config.vocab_size).items()}

    @torch.inference_mode()
    def call():
        model(**inputs)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    return time_calls(call, batch_size, warmup, repeats)


def onnx_latency(session, batch_size: int, seq_len: int, vocab_size: int, warmup: int, repeats: int) -> Latency:
    """Latency of an onnxruntime ``session`` (inputs ``input_ids``/``attention_mask``)."""
    feed = {k: v.numpy() for k, v in example_inputs(batch_size, seq_len, vocab_size).items()}
    return time_calls(lambda: session.run(None, feed), batch_size, warmup, repeats)
