"""Runs of ``python -m train`` side by side, on one shared cache (one session-scoped set of processes,
started at once, serves every test here):

- ``ddp``: ``hardware=ddp_cpu`` (2 processes on gloo, ``data.batch_size=16`` each: global batch 32);
- ``single`` and ``twin``: the same 1-process command (``data.batch_size=32``), started together.

Checked: the 2-process run gives the 1-process dev accuracy within DEV_ACC_TOLERANCE, logs exactly one
MLflow run and writes one teacher entry; the two identical runs both finish, fine-tune their teacher
once (the other waits on the lock and loads it) and agree exactly.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from conftest import ROOT, TINY

# DDP shards with a DistributedSampler (seeded), one process shuffles with torch's generator: the same
# global batch in another order, so the students differ a little. 32 dev rows: 0.0625 is 2 rows. The
# tiny scratch teacher stays near chance in a test-sized run, so the dev NLL (continuous) is compared too.
DEV_ACC_TOLERANCE = 0.0625
DEV_NLL_TOLERANCE = 0.01


def _start(root: Path, cache: Path, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "train", f"paths.root_dir={root}", f"paths.cache_dir={cache}", *TINY, *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _runs(root: Path):
    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
    return mlflow.search_runs(search_all_experiments=True)


# `make test-all` (slow): a DDP run and a one-process run side by side cost ~100 s of CPU, which pushed
# `make test` past its 10 minutes on 2 cores; test_distributed.py keeps the quick DDP checks in `make test`.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def side_by_side(tmp_path_factory):
    base = tmp_path_factory.mktemp("side_by_side")
    cache = base / "cache"
    procs = {
        "ddp": _start(base / "ddp", cache, "hardware=ddp_cpu", "data.batch_size=16"),
        "single": _start(base / "single", cache, "data.batch_size=32"),
        "twin": _start(base / "twin", cache, "data.batch_size=32"),
    }
    out = {}
    for name, proc in procs.items():
        log, _ = proc.communicate(timeout=900)
        out[name] = (proc.returncode, log)
    return base, cache, out


def test_every_run_finishes(side_by_side):
    _, _, out = side_by_side
    for name, (code, log) in out.items():
        assert code == 0, f"{name}: {log[-3000:]}"


def test_ddp_cpu_run_matches_one_process_and_logs_once(side_by_side):
    base, cache, out = side_by_side
    ddp, single = _runs(base / "ddp"), _runs(base / "single")
    assert len(ddp) == 1 and len(single) == 1  # one MLflow run per job, however many ranks
    assert ddp["status"][0] == "FINISHED"
    assert ddp["params.hardware.devices"][0] == "2" and ddp["params.trainer.strategy"][0] == "ddp"
    acc_ddp, acc_one = ddp["metrics.student/dev_acc"][0], single["metrics.student/dev_acc"][0]
    assert abs(acc_ddp - acc_one) <= DEV_ACC_TOLERANCE, (acc_ddp, acc_one)
    nll_ddp, nll_one = ddp["metrics.student/dev_nll"][0], single["metrics.student/dev_nll"][0]
    assert abs(nll_ddp - nll_one) <= DEV_NLL_TOLERANCE, (nll_ddp, nll_one)
    assert out["ddp"][1].count("student fit: started") == 2  # a second process really trained (its log shares stdout)
    # the teacher was fine-tuned by both ranks but written once: one entry for the ddp key, one for the 1-process key
    entries = [p for p in (cache / "teachers").iterdir() if not p.name.startswith(".")]
    assert len(entries) == 2, entries
    assert len(list((cache / "teacher_logits").glob("*.pt"))) == 6  # 3 splits x 2 teachers, no strays
    assert not list(cache.rglob(".tmp*")) and not list(cache.rglob("*.tmp*"))


def test_two_runs_at_once_on_one_cache_fine_tune_once_and_agree(side_by_side):
    base, _, out = side_by_side
    logs = [out["single"][1], out["twin"][1]]
    assert sum("teacher: cached fine-tuned model" in log for log in logs) == 1  # one trained, the other waited and loaded
    a, b = _runs(base / "single"), _runs(base / "twin")
    for metric in ("student/dev_acc", "student/dev_nll", "teacher/dev_acc"):
        assert a[f"metrics.{metric}"][0] == b[f"metrics.{metric}"][0], metric
