"""The Optuna sweep: trials are pipeline runs, the study resumes from its storage."""

from __future__ import annotations

import sys

import mlflow
import optuna

from conftest import ROOT, TINY

sys.path.insert(0, str(ROOT / "sweeps"))
from kd_search import search  # noqa: E402


def test_sweep_runs_and_resumes(tmp_path, shared_cache_dir):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    overrides = [f"paths.root_dir={tmp_path}", f"paths.cache_dir={shared_cache_dir}", *TINY, "trainer.fast_dev_run=true"]
    study = search(1, "t", storage, overrides)
    assert len(study.trials) == 1 and study.trials[0].state == optuna.trial.TrialState.COMPLETE
    study = search(2, "t", storage, overrides)  # resumes: one more trial, not two
    assert len(study.trials) == 2
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    runs = mlflow.search_runs(search_all_experiments=True)
    assert sorted(runs["tags.trial"]) == ["0", "1"]
    assert set(runs["params.loss.T"]) == {str(t.params["T"]) for t in study.trials}
