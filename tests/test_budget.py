"""The budget precheck: an untrained copy of the student, deployed and measured as the trained one will be."""

from __future__ import annotations

import subprocess
import sys

import mlflow
import optuna
import pytest
from hydra.core.utils import JobReturn, JobStatus
from optuna.distributions import FloatDistribution

from conftest import ROOT, TINY
from distilkit.errors import ConfigError
from distilkit.measure.budget import LATENCY, SIZE, Budget, OverBudget
from distilkit.pipeline import Run, run
from distilkit.tracking.sweep import feasible

WIDTH = ["pruner=width", "pruner.hidden=0.5", "pruner.ffn=0.5", "quantizer=qat_int8"]


def runs(root):
    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
    return mlflow.search_runs(search_all_experiments=True)


@pytest.mark.parametrize("kwargs, key", [({"latency_ms": 0}, "latency_ms"), ({"size_mb": "big"}, "size_mb"),
                                         ({"latency_ms": 1, "margin": -0.1}, "margin"), ({"precheck": "yes"}, "precheck")])
def test_bad_budget_values_are_config_errors(kwargs, key):
    with pytest.raises(ConfigError) as err:
        Budget(**kwargs)
    assert err.value.key == key


def test_a_bad_budget_fails_before_the_run(compose_cfg):
    with pytest.raises(ConfigError) as err:
        Run(compose_cfg("budget.latency_ms=-1"), {})
    assert str(err.value) == "budget.latency_ms: must be a number > 0 or null (no bound), got -1"


def test_over_counts_only_what_breaks_a_bound_by_more_than_the_margin():
    budget = Budget(latency_ms=2.0, size_mb=4.0, margin=0.1)
    assert budget.over({LATENCY: 2.19, SIZE: 4.0}) == []  # within the noise margin
    assert budget.over({LATENCY: 2.3, SIZE: 4.5}) == [f"{LATENCY} 2.3 > 2", f"{SIZE} 4.5 > 4"]
    assert not Budget().active and not Budget(latency_ms=1, precheck=False).active
    assert Budget().check_untrained(None, None) == {}  # no bound: nothing is built or timed


def test_untrained_copy_measures_the_architecture_the_trained_model_deploys(compose_cfg, shared_cache_dir, tmp_path):
    """Same pruner, quantizer, export and fusion: the copy's ONNX is the trained one's size (weights differ, shapes don't)."""
    metrics = run(compose_cfg(f"paths.cache_dir={shared_cache_dir}", *WIDTH, "export.fuse=true", "budget.size_mb=1000", "budget.latency_ms=1000"), {})
    assert metrics["budget/precheck_onnx_size_mb"] == pytest.approx(metrics[SIZE], rel=0.01)
    assert metrics["budget/precheck_ort_latency_b1_p50_ms"] > 0


def test_sweeper_records_an_over_budget_trial_pruned_and_infeasible():
    from test_sweep import sweeper

    s = sweeper(constraints={SIZE: 4.0})
    space = {"loss.T": FloatDistribution(1, 2)}
    study = optuna.create_study(sampler=s.sampler(space), direction="maximize")

    class Tracker:
        def trial_done(self, trial):
            self.trial = trial

    tracker = Tracker()
    trial = study.ask(space)
    s.tell(study, trial, JobReturn(status=JobStatus.FAILED, _return_value=OverBudget("budget: over", {SIZE: 9.0})), tracker)
    assert tracker.trial.state.name == "PRUNED" and not feasible(tracker.trial)
    assert tracker.trial.system_attrs[f"constraints:{SIZE}"] == 5.0


def test_over_budget_is_not_trained_one_line_and_a_failed_exit(tmp_path, shared_cache_dir):
    cmd = [sys.executable, "-m", "train", f"paths.root_dir={tmp_path}", f"paths.cache_dir={shared_cache_dir}", *TINY, *WIDTH, "budget.size_mb=0.001"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: budget: the untrained copy of this student measures {SIZE}")
    logs = proc.stdout + proc.stderr
    assert "budget precheck: failed" in logs and "student fit: started" not in logs  # never trained
    row = runs(tmp_path).iloc[0]
    assert row["status"] == "KILLED" and row["tags.budget"] == "over before training"
    assert row[f"metrics.{SIZE}"] > 0.001 * 1.15 and "metrics.student/dev_acc" not in row.index
