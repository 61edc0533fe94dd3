"""``budget``: upper bounds on the deployed model's latency and size, checked before the student trains.

A budget sweep (``+sweep=budget``) makes ``deploy/ort_latency_b1_p50_ms`` and ``deploy/onnx_size_mb``
Optuna constraints on the *measured* metrics of the trained, deployed model. Both depend on the
architecture the trial chose (depth, width, vocabulary, bits), not on the trained weights. So, when a
bound is set and ``precheck`` is on, the run first deploys an untrained copy of the student exactly as
it will deploy the trained one (fresh pruner and quantizer: ``prepare``, ``convert``, ONNX export,
``quantize_onnx``, fusion) and times it in onnxruntime (batch 1, full length, the run's
``hardware.measure`` settings). A copy over a bound by more than ``margin`` (a fraction, for timing
noise) ends the run before any training: :class:`OverBudget` (an ``optuna.TrialPruned``), which the
sweeper records as a pruned, infeasible trial and a single run reports as one ``budget:`` line.
Within the bounds the run goes on; the trained model's own measurement stays the constraint. The
copy's figures are logged as ``budget/precheck_*`` beside the final ones.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import tempfile
from pathlib import Path

from optuna import TrialPruned

from distilkit.errors import ConfigError, check_bool, config_group
from distilkit.measure.latency import latency_name

LATENCY = f"deploy/{latency_name('onnxruntime', 'full', 1, 'p50_ms')}"  # deploy/ort_latency_b1_p50_ms
SIZE = "deploy/onnx_size_mb"
PRECHECK = "budget/precheck_"
log = logging.getLogger(__name__)


class OverBudget(TrialPruned):
    """The untrained copy of the student already breaks the budget; ``metrics`` are its measured figures."""

    def __init__(self, message: str, metrics: dict[str, float]):
        super().__init__(message)
        self.metrics = metrics

    def __reduce__(self):  # picklable for launchers that ship job results between processes
        return (type(self), (str(self), self.metrics))


class Budget:
    """``latency_ms`` bounds ``deploy/ort_latency_b1_p50_ms``, ``size_mb`` bounds ``deploy/onnx_size_mb``
    (null: no bound); ``precheck``: measure an untrained copy first, ``margin``: how far over a bound
    (fraction) it must be to stop the run."""

    def __init__(self, latency_ms: float | None = None, size_mb: float | None = None, precheck: bool = True, margin: float = 0.15):
        for key, value in (("latency_ms", latency_ms), ("size_mb", size_mb)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise ConfigError(key, f"must be a number > 0 or null (no bound), got {value!r}")
        check_bool(precheck, "precheck")
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or margin < 0:
            raise ConfigError("margin", f"must be a number >= 0, got {margin!r}")
        self.bounds = {name: float(bound) for name, bound in ((LATENCY, latency_ms), (SIZE, size_mb)) if bound is not None}
        self.precheck, self.margin = precheck, float(margin)

    @property
    def active(self) -> bool:
        """A bound is set and the precheck is on."""
        return bool(self.bounds) and self.precheck

    def over(self, metrics: dict[str, float]) -> list[str]:
        """``"NAME VALUE > BOUND"`` for each bound that ``metrics`` break by more than the margin."""
        return [f"{name} {metrics[name]:.3g} > {bound:g}" for name, bound in self.bounds.items()
                if metrics[name] > bound * (1 + self.margin)]

    def check_untrained(self, run, student) -> dict[str, float]:
        """Deploy and measure an untrained copy of ``student`` (see the module docstring); raise
        :class:`OverBudget` when it breaks a bound by more than the margin, else return its figures
        (``budget/precheck_*``). Nothing to do (``{}``) without bounds or with ``precheck=false``."""
        if not self.active:
            return {}
        from distilkit.measure.report import onnx_size_metrics

        pruner, quantizer = run.fresh("pruner"), run.fresh("quantizer")
        if getattr(quantizer, "calibrates_in_fit", False):  # its deployable file needs training batches
            log.info("budget precheck: skipped (%s calibrates on training batches); the trained model is measured", type(quantizer).__name__)
            return {}
        model = copy.deepcopy(student)
        with tempfile.TemporaryDirectory() as tmp:
            for group, compressor in (("pruner", pruner), ("quantizer", quantizer)):
                with config_group(group):
                    model = compressor.prepare(model)
            _, _, deploy_onnx = run.deploy(model.eval(), Path(tmp), pruner, quantizer)
            if deploy_onnx is None:  # a task that exports no ONNX has nothing to time
                return {}
            spec = dataclasses.replace(run.measure_spec, runtimes=["onnxruntime"], batch_sizes=[1], lengths=["full"])
            session = spec.session(run.data.max_length, model.config.vocab_size, run.data.inputs("dev"))
            session.add_onnx("deploy", deploy_onnx)
            measured = session.run().metrics() | onnx_size_metrics("deploy", deploy_onnx)
        figures = {f"{PRECHECK}{name.split('/', 1)[1]}": measured[name] for name in self.bounds}
        broken = self.over(measured)
        if broken:
            raise OverBudget(f"budget: the untrained copy of this student measures {', '.join(broken)} "
                             f"(bound + {self.margin:.0%} margin): over budget, not trained", {**figures, **{n: measured[n] for n in self.bounds}})
        return figures
