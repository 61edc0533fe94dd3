"""One timing session: every model compared, timed in one process, interleaved, threads fixed.

Register each (role, runtime, model) with :meth:`TimingSession.add_torch` / :meth:`~TimingSession.add_onnx`;
every registration is timed on every input set (length mode x batch size). :meth:`~TimingSession.run`
sets torch's threads and builds onnxruntime sessions with the same intra-op thread count (inter-op 1,
no spin-waiting, so sessions timed side by side don't keep cores busy between calls), warms every
entry, then goes round after round over all entries in a fresh random order; in each round an entry
takes a small block of samples (one timed call each), after an untimed 1 ms pause (torch's OpenMP
workers spin-wait a little after each parallel region; the pause keeps that off the next entry's clock) and
``rewarm_ms`` (2 ms) of untimed calls of the entry itself. So every timed call runs warm, as in back-to-back
serving, however many calls its block holds: without the re-warm, the first call after another model ran pays
for refilling the caches and waking the threads, which for a small model is a large part of its time (the 1-layer
SST-2 model of the budget search at batch 1: ``bench/skip_layernorm.py``), and a fast model's latency then
depended on how many calls its blocks held, i.e. on ``min_time_s`` and on the other models in the session. An entry is done when it has ``min_samples``
samples and ``min_time_s`` seconds of timed calls (or ``max_samples``); the samples each entry needs
are planned from its warm-up speed and spread evenly over the rounds, so fast entries take their extra
samples across the whole session, not after the slow ones finished. Every entry at the same length mode and batch size sees the same
batches in the same order, so p50/p95 of different models describe the same inputs and the same
stretch of time, and speed-ups taken from one session add up.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from distilkit.export.onnx import ort_session
from distilkit.measure.latency import Latency, speedup_name

log = logging.getLogger(__name__)
Batch = dict[str, torch.Tensor]
INT8_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")


def _cpuinfo() -> list[tuple[str, str]]:
    """``(key, value)`` for every line of /proc/cpuinfo, in order; empty where it can't be read."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []
    return [(key.strip(), value.strip()) for key, _, value in (line.partition(":") for line in lines)]


def physical_cores() -> int:
    """Physical cores this process may run on: distinct (package, core) pairs in /proc/cpuinfo, at most the
    CPUs in the affinity mask; the affinity mask's size where /proc/cpuinfo says nothing."""
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cores, package = set(), "0"
    for key, value in _cpuinfo():
        if key == "physical id":
            package = value
        elif key == "core id":
            cores.add((package, value))
    return max(1, min(len(cores) or allowed, allowed))


def cpu_description() -> str:
    """``MODEL; int8-relevant flags: ...`` from /proc/cpuinfo (what decides which int8 kernels run)."""
    model, flags = "unknown CPU", set()
    for key, value in _cpuinfo():
        if key == "model name":
            model = value
        elif key == "flags":
            flags = set(value.split())
    relevant = [f for f in INT8_FLAGS if f in flags] + sorted(f for f in flags if f.startswith("avx512") and f not in INT8_FLAGS)
    return f"{model}; int8-relevant flags: {' '.join(relevant) or 'none of avx2/avx512/avx_vnni/amx'}"


def cpu_only(model: torch.nn.Module) -> bool:
    """Whether ``model`` holds CPU-only kernels (torch.ao quantized modules: fbgemm/x86 packed weights)."""
    return any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules())


@dataclass
class _Entry:
    role: str
    runtime: str
    lengths: str
    batch_size: int
    device: str
    calls: list[Callable[[], object]]
    times: list[float] = field(default_factory=list)
    need: int = 1  # samples planned from the warm-up speed

    @property
    def key(self) -> tuple[str, str, str, int]:
        return self.role, self.runtime, self.lengths, self.batch_size


@dataclass
class _Model:
    role: str
    runtime: str
    device: str
    setup: Callable[[], Callable[[Batch], Callable[[], object]]]  # -> make_call(batch) -> timed call
    teardown: Callable[[], None] = lambda: None


@dataclass
class Timings:
    """The results of one session: ``results[(role, runtime, lengths, batch_size)]``, the torch device per
    role, and the thread counts the runtimes reported while timing."""

    results: dict[tuple[str, str, str, int], Latency]
    devices: dict[str, str]
    threads: dict[str, int]
    wall_s: float = 0.0

    def alias(self, role: str, like: str) -> None:
        """``role`` is the very model ``like`` is, in the runtimes where ``role`` was not timed itself."""
        timed = {runtime for r, runtime, _, _ in self.results if r == role}
        for (r, runtime, lengths, b), latency in list(self.results.items()):
            if r == like and runtime not in timed:
                self.results[(role, runtime, lengths, b)] = latency
        if like in self.devices and role not in self.devices:
            self.devices[role] = self.devices[like]

    def metrics(self) -> dict[str, float]:
        out = {}
        for (role, runtime, lengths, _), latency in self.results.items():
            out |= latency.metrics(role, runtime, lengths)
        out |= {f"{role}/torch_cuda": float(device.startswith("cuda")) for role, device in self.devices.items()}
        out |= {f"measure/threads_{'ort' if rt == 'onnxruntime' else rt}": n for rt, n in self.threads.items()}
        return out

    def speedups(self, pairs: list[tuple[str, str]]) -> dict[str, float]:
        """``role`` vs ``base``: base p50 / role p50, for each runtime, length mode and batch size both were
        timed at in this session; torch pairs only where both ran on the same device."""
        out = {}
        for role, base in pairs:
            for (r, runtime, lengths, b), latency in self.results.items():
                other = self.results.get((base, runtime, lengths, b))
                if r != role or other is None:
                    continue
                if runtime == "torch" and self.devices.get(role) != self.devices.get(base):
                    continue
                out[f"{role}/{speedup_name(runtime, lengths, b, base)}"] = other.p50_ms / latency.p50_ms
        return out


class TimingSession:
    """Models registered for timing, and the inputs they are timed on: ``inputs[(lengths, batch_size)]`` is
    the list of batches that entry cycles through (cycle order shuffled once, shared by every model)."""

    def __init__(
        self,
        inputs: dict[tuple[str, int], list[Batch]],
        threads: int,
        warmup: int = 5,
        min_samples: int = 100,
        min_time_s: float = 1.0,
        max_samples: int = 5000,
        device: str = "cpu",
        runtimes: tuple[str, ...] | list[str] = ("torch", "onnxruntime"),
        seed: int = 0,
        settle_s: float = 0.001,
        rewarm_ms: float = 2.0,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not inputs or any(not batches for batches in inputs.values()):
            raise ValueError("every input set needs at least one batch")
        self.inputs = inputs
        self.threads = threads
        self.warmup = max(1, warmup)
        self.min_samples = min_samples
        self.min_time_s = min_time_s
        self.max_samples = max(max_samples, min_samples)
        self.device = device
        self.runtimes = tuple(runtimes)
        self.rng = random.Random(seed)
        self.settle_s = settle_s  # untimed pause before each block: the previous runtime's spinning workers go idle
        self.rewarm_ms = rewarm_ms  # untimed calls before each block, until this much time: its timed calls run warm
        self.clock = clock
        self.sleep = sleep
        self.models: list[_Model] = []
        self.ort_threads: list[int] = []

    # registration -------------------------------------------------------------------------------
    def add_call(self, role: str, runtime: str, make_call: Callable[[Batch], Callable[[], object]], device: str = "cpu") -> None:
        """Time ``make_call(batch)()`` (a call prepared per batch, preparation untimed) as ``role`` in ``runtime``."""
        self.models.append(_Model(role, runtime, device, lambda: make_call))

    def add_torch(self, role: str, model: torch.nn.Module, device: str | None = None) -> None:
        """Time ``model`` in torch (eval, inference mode) on ``device`` (the session's by default);
        a model with CPU-only kernels can't be timed on a GPU. Nothing if torch is not among the runtimes."""
        if "torch" not in self.runtimes:
            return
        device = device or self.device
        if device != "cpu" and cpu_only(model):
            raise ValueError(f"{role}: the model has CPU-only quantized kernels; time it on device 'cpu', not {device!r}")
        original = next(model.parameters(), torch.empty(0)).device
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

        def setup():
            model.eval().to(device)

            def make_call(batch: Batch):
                batch = {k: v.to(device) for k, v in batch.items()}

                @torch.inference_mode()
                def call():
                    model(**batch)
                    sync()

                return call

            return make_call

        self.models.append(_Model(role, "torch", device, setup, teardown=lambda: model.to(original)))

    def add_onnx(self, role: str, path: Path) -> None:
        """Time the ONNX model at ``path`` in onnxruntime (CPU) with the session's thread count; nothing if
        onnxruntime is not among the runtimes."""
        if "onnxruntime" not in self.runtimes:
            return

        def setup():
            session = ort_session(path, self.threads)
            self.ort_threads.append(session.get_session_options().intra_op_num_threads)

            def make_call(batch: Batch):
                feed = {k: np.ascontiguousarray(v.numpy(), dtype=np.int64) for k, v in batch.items()}
                return lambda: session.run(None, feed)

            return make_call

        self.models.append(_Model(role, "onnxruntime", "cpu", setup))

    # timing -------------------------------------------------------------------------------------
    def _time(self, entry: _Entry) -> None:
        call = entry.calls[len(entry.times) % len(entry.calls)]
        start = self.clock()
        call()
        entry.times.append((self.clock() - start) * 1000)

    def _rewarm(self, entry: _Entry) -> None:
        """Untimed calls of ``entry`` (on the batches before its next one) until ``rewarm_ms`` have passed, at least one
        unless ``rewarm_ms`` is 0: after the other entries ran, its weights are back in the caches and its threads awake."""
        if self.rewarm_ms <= 0:
            return
        start = self.clock()
        for i in range(1, 1001):  # at most 1000 calls, should the clock stand still
            entry.calls[(len(entry.times) - i) % len(entry.calls)]()
            if (self.clock() - start) * 1000 >= self.rewarm_ms:
                return

    def _done(self, entry: _Entry) -> bool:
        n = len(entry.times)
        return n >= self.max_samples or (n >= self.min_samples and sum(entry.times) >= 1000 * self.min_time_s)

    def _plan(self, entries: list[_Entry], estimates_ms: list[float]) -> int:
        """Samples each entry needs at its warm-up speed, and the rounds to spread them over (the fewest needed)."""
        for entry, t in zip(entries, estimates_ms):
            entry.need = min(self.max_samples, max(self.min_samples, math.ceil(1000 * self.min_time_s / max(t, 1e-6))))
        return max(1, min((e.need for e in entries), default=1))

    def run(self) -> Timings:
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        started = self.clock()
        try:
            torch_threads = torch.get_num_threads()
            entries = []
            for model in self.models:
                make_call = model.setup()
                for (lengths, batch_size), batches in self.inputs.items():
                    order = list(range(len(batches)))
                    random.Random(f"{lengths}/{batch_size}").shuffle(order)  # the same cycle for every model
                    entries.append(_Entry(model.role, model.runtime, lengths, batch_size, model.device, [make_call(batches[i]) for i in order]))
            estimates = []
            for entry in entries:
                for _ in range(self.warmup):
                    self._time(entry)
                estimates.append(min(entry.times))
                entry.times.clear()
            rounds = self._plan(entries, estimates)
            active, r = list(entries), 0
            while active:
                self.rng.shuffle(active)
                for entry in active:  # this round's share of its planned samples; one a round past the plan
                    self.sleep(self.settle_s)
                    self._rewarm(entry)
                    share = math.ceil((r + 1) * entry.need / rounds) - len(entry.times) if r < rounds else 1
                    for _ in range(max(1, share)):
                        self._time(entry)
                active, r = [e for e in active if not self._done(e)], r + 1
        finally:
            torch.set_num_threads(previous_threads)
            for model in self.models:
                model.teardown()
        threads = {}
        if any(m.runtime == "torch" for m in self.models):
            threads["torch"] = torch_threads
        if self.ort_threads:
            threads["onnxruntime"] = self.ort_threads[0]
        timings = Timings(
            results={e.key: Latency.of(e.times, e.batch_size) for e in entries},
            devices={m.role: m.device for m in self.models if m.runtime == "torch"},
            threads=threads,
            wall_s=self.clock() - started,
        )
        counts = [len(e.times) for e in entries]
        log.info("timing session: %d entries, threads %s, %d-%d samples each, %.1f s", len(entries), threads, min(counts, default=0), max(counts, default=0), timings.wall_s)
        return timings
