"""``python -m train`` as a user runs it: a subprocess, tiny overrides, results read back from MLflow."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from conftest import ROOT, TINY

LATENCY = [
    f"{rt}{m}{real}_b{b}{s}"
    for rt in ("", "ort_")
    for real in ("", "_real")
    for b in (1, 4)
    for m, s in (("latency", "_p50_ms"), ("latency", "_p95_ms"), ("latency", "_samples"), ("throughput", ""))
]
ROLES_METRICS = ["dev_acc", "test_acc", "params", "nonzero_params", "size_mb", "sparse_size_mb", "onnx_size_mb", "torch_cuda", *LATENCY]
STUDENT_METRICS = ["retention_dev", "retention_test", "agreement_dev", "agreement_test", "size_ratio_vs_teacher", "speedup_b1_vs_teacher",
                   "ort_speedup_b4_vs_teacher", "ort_speedup_real_b1_vs_teacher", "speedup_real_b4_vs_teacher"]
DEPLOY_METRICS = ["dev_acc", "onnx_dev_acc", "onnx_test_acc", "onnx_size_mb", "bits", "onnx_acc_gap_dev_pt", "parity_max_abs_logit_diff", "parity_top1_agreement", "parity_pass", "size_ratio_vs_teacher",
                  "ort_speedup_b1_vs_student", "ort_speedup_real_b4_vs_student", "torch_cuda", *LATENCY]
EXPECTED = (
    [f"{r}/{m}" for r in ("teacher", "student") for m in ROLES_METRICS]
    + [f"student/{m}" for m in STUDENT_METRICS]
    + [f"deploy/{m}" for m in DEPLOY_METRICS]
    + ["measure/threads_torch", "measure/threads_ort"]
)


@pytest.fixture(scope="session")
def cli_cache(tmp_path_factory) -> Path:
    """One teacher cache for this file's runs (shared by the xdist workers; the cache locks its entries):
    the tiny teacher on 96 rows is fine-tuned once, not once per test."""
    return tmp_path_factory.getbasetemp().parent / "cli-cache"


def train(root: Path, *args: str, cache: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "train", *args, f"paths.root_dir={root}", *TINY, "data.num_train=96",
           *([f"paths.cache_dir={cache}"] if cache else [])]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)


def runs(root: Path):
    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
    return mlflow.search_runs(search_all_experiments=True)


def test_train_writes_mlflow_run_with_every_metric(tmp_path, cli_cache):
    proc = train(tmp_path, "loss=kd", "loss.T=3", cache=cli_cache)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = runs(tmp_path)
    assert len(found) == 1 and found["status"][0] == "FINISHED"
    row = found.iloc[0]
    missing = [m for m in EXPECTED if f"metrics.{m}" not in row or row[f"metrics.{m}"] != row[f"metrics.{m}"]]
    assert not missing
    assert row["metrics.measure/threads_torch"] == 1 and row["metrics.measure/threads_ort"] == 1  # TINY: measure.threads=1
    assert all(row[f"metrics.{m}"] >= 3 for m in EXPECTED if m.endswith("_samples"))  # TINY: min_samples=3
    assert row["params.loss.T"] == "3" and row["tags.loss"] == "kd" and row["tags.teacher"] == "scratch"
    assert row["metrics.student/params"] < row["metrics.teacher/params"]
    artifacts = mlflow.artifacts.list_artifacts(run_id=row["run_id"], artifact_path="student")
    assert any(a.path.endswith("model.safetensors") for a in artifacts)
    assert "distilkit: teacher vs student" in proc.stdout
    assert row["metrics.deploy/parity_pass"] == 1.0 and row["tags.deploy.parity"] == "pass"  # fp32 ONNX equals torch


def test_multirun_gives_one_run_per_job(tmp_path, cli_cache):
    proc = train(tmp_path, "-m", "loss.T=2,4", "trainer.fast_dev_run=true", cache=cli_cache)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = runs(tmp_path)
    assert sorted(found["params.loss.T"]) == ["2", "4"] and set(found["status"]) == {"FINISHED"}
    assert found["tags.mlflow.runName"].nunique() == 2  # distinct, descriptive names
    assert all("python -m train" in note for note in found["tags.mlflow.note.content"])


def test_hydra_sweep_syntax_choice_glob_range(tmp_path, cli_cache):
    proc = train(tmp_path, "-m", "loss=choice(kd,ce)", "quantizer=glob(ptq_d*)", "seed=range(3,4)", "trainer.fast_dev_run=true", cache=cli_cache)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = runs(tmp_path)
    assert sorted(found["tags.loss"]) == ["ce", "kd"]
    assert set(found["tags.quantizer"]) == {"ptq_dynamic"} and set(found["params.seed"]) == {"3"}


def test_user_config_group_option_through_config_dir(tmp_path, cli_cache):
    user = tmp_path / "my_conf" / "student"
    user.mkdir(parents=True)
    (user / "one_layer.yaml").write_text("_target_: distilkit.models.student.DistilStudent\nnum_layers: 1\nlayer_map: null\n")
    proc = train(tmp_path, "--config-dir", str(tmp_path / "my_conf"), "student=one_layer", "trainer.fast_dev_run=true", cache=cli_cache)
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = runs(tmp_path).iloc[0]
    assert row["tags.student"] == "one_layer" and row["tags.mlflow.runName"].startswith("scratch→one_layer[1]")


def test_sigterm_ends_the_run_killed_with_one_line(tmp_path):
    cmd = [sys.executable, "-m", "train", f"paths.root_dir={tmp_path}", *TINY, "teacher.finetune.max_epochs=50"]
    err_file = (tmp_path / "stderr.txt").open("w")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err_file, text=True)
    deadline = time.monotonic() + 600  # generous: start-up is slow on a loaded machine
    while time.monotonic() < deadline and proc.poll() is None:  # wait for the teacher stage (the run exists)
        time.sleep(1)
        if any("teacher: started" in log.read_text() for log in tmp_path.glob("outputs/*/*/train.log")):
            break
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    stderr = (tmp_path / "stderr.txt").read_text()
    assert proc.returncode == 130, stderr[-2000:]
    assert [line for line in stderr.splitlines() if line.startswith("error:")] == ["error: stopped by SIGTERM; the MLflow run is marked KILLED"]
    assert list(runs(tmp_path)["status"]) == ["KILLED"]


@pytest.mark.parametrize(
    "args,expected",
    [
        (["loss=foo"], "error: loss=foo is not an option of group 'loss'; available: ce, distilbert, intermediate, kd, lm_ce, lm_fkl, lm_jsd, lm_rkl, lm_skew_kl"),
        (["-m", "loss=choice(kd,foo)"], "error: loss=foo is not an option of group 'loss'; available: ce, distilbert, intermediate, kd, lm_ce, lm_fkl, lm_jsd, lm_rkl, lm_skew_kl"),
        (["no_such_key=1"], "error: Could not override 'no_such_key'. To append to your config use +no_such_key=1"),
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
