"""One MLflow run per training job: flattened config as params, group choices as tags, metrics,
the student as an artifact; FINISHED on success, FAILED on any exception (the exception propagates)."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import mlflow
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.loggers import MLFlowLogger
from mlflow.tracking import MlflowClient

logging.getLogger("mlflow").setLevel(logging.WARNING)
logging.getLogger("alembic").setLevel(logging.WARNING)


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    """``{"loss": {"T": 4}}`` -> ``{"loss.T": 4}``; lists become their string form."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


class MlflowTracker:
    def __init__(self, tracking_uri: str, experiment_name: str, artifact_location: str, run_name: str | None = None):
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.artifact_location = Path(artifact_location).resolve().as_uri()
        self.run_name = run_name
        self.run_id: str | None = None

    def _experiment_id(self) -> str:
        client = MlflowClient(self.tracking_uri)
        experiment = client.get_experiment_by_name(self.experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        return client.create_experiment(self.experiment_name, artifact_location=self.artifact_location)

    @property
    def enabled(self) -> bool:
        """Only global rank 0 tracks: under DDP every rank runs this script, one run is logged."""
        return rank_zero_only.rank == 0

    @contextmanager
    def run(self, params: dict, tags: dict[str, str]) -> Iterator["MlflowTracker"]:
        if not self.enabled:
            yield self
            return
        mlflow.set_tracking_uri(self.tracking_uri)
        active = mlflow.start_run(experiment_id=self._experiment_id(), run_name=self.run_name, tags=tags)
        self.run_id = active.info.run_id
        try:
            flat = {k: str(v)[:6000] for k, v in flatten(params).items()}
            items = list(flat.items())
            for i in range(0, len(items), 90):
                mlflow.log_params(dict(items[i : i + 90]))
            yield self
        except BaseException:
            mlflow.end_run(status="FAILED")
            raise
        else:
            mlflow.end_run(status="FINISHED")

    def log_metrics(self, metrics: dict[str, float]) -> None:
        if self.enabled:
            mlflow.log_metrics({k: float(v) for k, v in metrics.items()})

    def set_tags(self, tags: dict[str, str]) -> None:
        if self.enabled and tags:
            mlflow.set_tags(tags)

    def log_artifacts(self, local_dir: Path, artifact_path: str) -> None:
        if self.enabled:
            mlflow.log_artifacts(str(local_dir), artifact_path)

    def lightning_logger(self):
        """A Lightning logger writing step metrics into this same run (its end status stays ours)."""
        return _RunLogger(tracking_uri=self.tracking_uri, run_id=self.run_id, experiment_name=self.experiment_name)


class _RunLogger(MLFlowLogger):
    def finalize(self, status: str = "success") -> None:
        """Lightning would mark the run FINISHED after each fit; the tracker ends it once, at the end."""
