"""Latency statistics, their metric names, and the inputs timed: full length or the dev set's real lengths.

Two length modes (``MeasureSpec.lengths``), named in every latency metric:

* ``full`` — every row ``seq_len`` tokens (the data's ``max_length``), random ids, all-ones mask: the
  worst case, every position real work. Metric names carry no length tag (``ort_latency_b1_p50_ms``).
* ``real`` — the dev set as it comes: at batch 1 each sentence with its own length, at batch ``b``
  consecutive dev rows padded to their longest member. Names carry ``real`` (``ort_latency_real_b1_p50_ms``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

LENGTHS = ("full", "real")
RUNTIME_PREFIX = {"torch": "", "onnxruntime": "ort_"}


def _name(kind: str, runtime: str, lengths: str, batch_size: int) -> str:
    return f"{RUNTIME_PREFIX[runtime]}{kind}{'_real' if lengths == 'real' else ''}_b{batch_size}"


def latency_name(runtime: str, lengths: str, batch_size: int, stat: str) -> str:
    """The metric name (without role) of one statistic: ``p50_ms``, ``p95_ms``, ``samples`` or ``throughput``,
    e.g. ``ort_latency_real_b1_p50_ms``, ``throughput_b32``."""
    if stat == "throughput":
        return _name("throughput", runtime, lengths, batch_size)
    return f"{_name('latency', runtime, lengths, batch_size)}_{stat}"


def speedup_name(runtime: str, lengths: str, batch_size: int, base: str) -> str:
    """``{ort_}speedup{_real}_b{b}_vs_{base}``: base p50 / this p50, same runtime, lengths and batch size."""
    return f"{_name('speedup', runtime, lengths, batch_size)}_vs_{base}"


@dataclass
class Latency:
    """Statistics of one timed entry: ``samples`` timed calls, each one batch of ``batch_size`` rows."""

    batch_size: int
    samples: int
    p50_ms: float
    p95_ms: float
    throughput: float  # examples per second at the median

    @classmethod
    def of(cls, times_ms: list[float], batch_size: int) -> "Latency":
        """p50 and p95 (linear interpolation between order statistics) of the per-call times."""
        p50, p95 = np.percentile(np.asarray(times_ms, dtype=np.float64), [50, 95])
        return cls(batch_size, len(times_ms), float(p50), float(p95), batch_size / (float(p50) / 1000))

    def metrics(self, role: str, runtime: str, lengths: str) -> dict[str, float]:
        name = lambda stat: f"{role}/{latency_name(runtime, lengths, self.batch_size, stat)}"  # noqa: E731
        return {name("p50_ms"): self.p50_ms, name("p95_ms"): self.p95_ms, name("throughput"): self.throughput, name("samples"): self.samples}


def example_inputs(batch_size: int, seq_len: int, vocab_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """The ``full`` mode's batch: random token ids, all-ones attention mask (every position real work)."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000 if vocab_size > 2000 else 5, vocab_size, (batch_size, seq_len), generator=gen)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def real_batches(input_ids, attention_mask, batch_size: int, pad_id: int = 0) -> Iterator[dict[str, torch.Tensor]]:
    """The ``real`` mode's batches: consecutive rows, ``batch_size`` at a time, each padded (on the right,
    mask 0) to its longest member. Rows may come padded to any length (a ``[n, L]`` tensor) or unpadded
    (a list of 1-D tensors): a row's tokens are where its mask is 1. A short last batch is dropped (every
    batch has ``batch_size`` rows) unless it is the only one."""
    n = len(input_ids)
    size = min(batch_size, n)
    for stop in range(size, n + 1, size):
        rows = [torch.as_tensor(input_ids[i])[torch.as_tensor(attention_mask[i]).bool()] for i in range(stop - size, stop)]
        longest = max(len(row) for row in rows)
        ids = torch.full((size, longest), pad_id, dtype=torch.long)
        mask = torch.zeros((size, longest), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)], mask[i, : len(row)] = row, 1
        yield {"input_ids": ids, "attention_mask": mask}
