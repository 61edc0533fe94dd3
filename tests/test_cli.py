"""``python -m train`` as a user runs it: a subprocess, tiny overrides, results read back from MLflow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from conftest import ROOT, TINY

LATENCY = [f"{rt}{m}_b{b}{s}" for rt in ("", "ort_") for b in (1, 4) for m, s in (("latency", "_p50_ms"), ("latency", "_p95_ms"), ("throughput", ""))]
ROLES_METRICS = ["dev_acc", "test_acc", "params", "nonzero_params", "size_mb", "sparse_size_mb", "onnx_size_mb", "threads", *LATENCY]
STUDENT_METRICS = ["retention_dev", "retention_test", "agreement_dev", "agreement_test", "size_ratio_vs_teacher", "speedup_b1_vs_teacher", "ort_speedup_b4_vs_teacher"]
DEPLOY_METRICS = ["dev_acc", "onnx_dev_acc", "onnx_test_acc", "onnx_size_mb", "bits", "onnx_acc_gap_dev_pt", "parity_max_abs_logit_diff", "parity_top1_agreement", "parity_pass", "size_ratio_vs_teacher", "ort_speedup_b1_vs_student", *LATENCY]
EXPECTED = (
    [f"{r}/{m}" for r in ("teacher", "student") for m in ROLES_METRICS]
    + [f"student/{m}" for m in STUDENT_METRICS]
    + [f"deploy/{m}" for m in DEPLOY_METRICS]
)


def train(root: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "train", *args, f"paths.root_dir={root}", *TINY, "data.num_train=96"]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def runs(root: Path):
    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
    return mlflow.search_runs(search_all_experiments=True)


def test_train_writes_mlflow_run_with_every_metric(tmp_path):
    proc = train(tmp_path, "loss=kd", "loss.T=3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = runs(tmp_path)
    assert len(found) == 1 and found["status"][0] == "FINISHED"
    row = found.iloc[0]
    missing = [m for m in EXPECTED if f"metrics.{m}" not in row or row[f"metrics.{m}"] != row[f"metrics.{m}"]]
    assert not missing
    assert row["params.loss.T"] == "3" and row["tags.loss"] == "kd" and row["tags.teacher"] == "scratch"
    assert row["metrics.student/params"] < row["metrics.teacher/params"]
    artifacts = mlflow.artifacts.list_artifacts(run_id=row["run_id"], artifact_path="student")
    assert any(a.path.endswith("model.safetensors") for a in artifacts)
    assert "distilkit: teacher vs student" in proc.stdout
    assert row["metrics.deploy/parity_pass"] == 1.0 and row["tags.deploy.parity"] == "pass"  # fp32 ONNX equals torch


def test_multirun_gives_one_run_per_job(tmp_path):
    proc = train(tmp_path, "-m", "loss.T=2,4", "trainer.fast_dev_run=true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = runs(tmp_path)
    assert sorted(found["params.loss.T"]) == ["2", "4"] and set(found["status"]) == {"FINISHED"}


@pytest.mark.parametrize(
    "args,expected",
    [
        (["loss=foo"], "error: loss=foo is not an option of group 'loss'; available: ce, distilbert, intermediate, kd"),
        (["loss.T=0"], "error: loss.T: must be > 0, got 0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, expected, tmp_path):
    proc = train(tmp_path, *args)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[-1] == expected, proc.stderr[-2000:]
    assert sum(line.startswith("error:") for line in lines) == 1
    if (tmp_path / "mlflow.db").exists():
        assert "FINISHED" not in set(runs(tmp_path)["status"])
