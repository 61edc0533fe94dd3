"""One MLflow run per training job: flattened config as params, group choices as tags, metrics,
the student as an artifact; a descriptive name and the command line as its description.

End status: FINISHED on success; KILLED when stopped by Ctrl-C (SIGINT) or SIGTERM, whether inside
Lightning's fit (which turns both into ``SystemExit``) or outside it; FAILED on any other exception.
The exception propagates; an interruption comes out as :class:`RunInterrupted`.
"""

from __future__ import annotations

import logging
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import mlflow
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from mlflow.tracking import MlflowClient
from optuna.exceptions import TrialPruned

logging.getLogger("mlflow").setLevel(logging.WARNING)
DESCRIPTION_TAG = "mlflow.note.content"  # what the MLflow UI shows as the run's description


class RunInterrupted(KeyboardInterrupt):
    """The run was stopped by SIGINT or SIGTERM and is marked KILLED."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")


@contextmanager
def _interrupt_signals(received: list[int]) -> Iterator[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt and are recorded in ``received`` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
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
    def __init__(self, tracking_uri: str, experiment_name: str, artifact_location: str, run_name: str | None = None,
                 parent_run_id: str | None = None, tags: dict | None = None, register_as: str | None = None, log_torch_model: bool = True):
        self.tracking_uri = tracking_uri
        self.log_torch_model = log_torch_model  # the trained student as an MLflow PyTorch model too (beside the ONNX one)
        self.register_as = register_as  # a registry name: the deployed ONNX model is registered under it
        self.parent_run_id = parent_run_id  # a sweep's parent run: this run is nested under it
        self.extra_tags = {str(k): str(v) for k, v in (tags or {}).items()}  # e.g. optuna.study, optuna.trial
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
    def run(self, params: dict, tags: dict[str, str], name: str | None = None, description: str = "",
            run_id: str | None = None) -> Iterator["MlflowTracker"]:
        """``run_id``: continue that run (a resumed run: status RUNNING again, same name, params logged again must be equal)."""
        if not self.enabled:
            yield self
            return
        mlflow.set_tracking_uri(self.tracking_uri)
        tags = {**tags, **self.extra_tags, DESCRIPTION_TAG: description} if description else {**tags, **self.extra_tags}
        if run_id is not None:
            active = mlflow.start_run(run_id=run_id, tags=tags)
        else:
            active = mlflow.start_run(experiment_id=self._experiment_id(), run_name=name or self.run_name, tags=tags, parent_run_id=self.parent_run_id)
        self.run_id = active.info.run_id
        received: list[int] = []
        try:
            with _interrupt_signals(received):
                flat = {k: str(v)[:6000] for k, v in flatten(params).items()}
                items = list(flat.items())
                for i in range(0, len(items), 90):
                    mlflow.log_params(dict(items[i : i + 90]))
                yield self
        except BaseException as err:
            # Lightning turns Ctrl-C inside fit into sys.exit(1) and SIGTERM into SIGTERMException
            interrupted = received or isinstance(err, (KeyboardInterrupt, SIGTERMException))
            if isinstance(err, TrialPruned):  # an Optuna sweep stopped this trial early: KILLED, tagged PRUNED
                mlflow.set_tag("optuna.state", "PRUNED")
                mlflow.end_run(status="KILLED")
                raise
            mlflow.end_run(status="KILLED" if interrupted else "FAILED")
            if interrupted:
                raise RunInterrupted(received[0] if received else signal.SIGINT) from err
            raise
        else:
            mlflow.end_run(status="FINISHED")

    def set_tags(self, tags: dict[str, str]) -> None:
        if self.enabled:
            mlflow.set_tags(tags)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        if self.enabled:
            mlflow.log_metrics({k: float(v) for k, v in metrics.items()})

    def set_tags(self, tags: dict[str, str]) -> None:
        if self.enabled and tags:
            mlflow.set_tags(tags)

    def log_artifacts(self, local_dir: Path, artifact_path: str) -> None:
        if self.enabled:
            mlflow.log_artifacts(str(local_dir), artifact_path)

    def log_deployed(self, onnx_path: Path, inputs: dict, dataset_name: str, dataset_digest: str) -> None:
        """The deployable ONNX as an MLflow model (signature from a dev batch; registered under
        ``register_as`` if set) and the data set as the run's input, so the UI's Models and Datasets
        columns are filled."""
        if not self.enabled:
            return
        import mlflow.data
        import mlflow.onnx
        import numpy as np
        import onnx
        from mlflow.models import infer_signature

        example = {k: np.asarray(v[:2]).astype(np.int64) for k, v in inputs.items()}
        mlflow.log_input(mlflow.data.from_numpy(example["input_ids"], name=dataset_name, digest=dataset_digest[:36]), context="dev")
        mlflow.onnx.log_model(onnx.load(str(onnx_path)), name="deploy_onnx", signature=infer_signature(example),
                              pip_requirements=["onnxruntime"], registered_model_name=self.register_as, save_as_external_data=False)

    def log_student(self, student, inputs: dict, pad_token_id: int | None) -> None:
        """The trained (float) student as an MLflow PyTorch model ``student_torch``: pickled whole, so any
        student loads back as trained (pruned heads, custom ``nn.Module`` students), through
        ``mlflow.pytorch.load_model`` or pyfunc; int64 token ids ``[batch, seq]`` (padded with the pad
        id) in, logits out (signature with free batch and length dims; two dev rows as input example).
        Pickled, not ``pt2`` (torch.export): an exported graph holds one call form, and every student
        type would have to trace; pickle runs code at load, so load these from a store you trust."""
        if not (self.enabled and self.log_torch_model):
            return
        import mlflow.pytorch
        import numpy as np
        import torch
        from mlflow.models import ModelSignature
        from mlflow.types import Schema, TensorSpec

        from distilkit.tracking.torch_model import LogitsFromIds, without_capturing_hooks

        model = LogitsFromIds(student, pad_token_id).eval()
        example = inputs["input_ids"][:2].long()
        with torch.inference_mode():
            logits = model(example, inputs["attention_mask"][:2])
        # any batch size and length: int64 ids [-1, -1] in; logits [-1, (-1 per token,) classes or vocabulary] out
        signature = ModelSignature(Schema([TensorSpec(np.dtype("int64"), (-1, -1))]),
                                   Schema([TensorSpec(np.dtype("float32"), (-1, *[-1] * (logits.dim() - 2), logits.shape[-1]))]))
        with without_capturing_hooks(model):
            mlflow.pytorch.log_model(model, name="student_torch", signature=signature, input_example=example.numpy(),
                                     serialization_format="pickle", pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "transformers"])

    def lightning_logger(self):
        """A Lightning logger writing step metrics into this same run (its end status stays ours)."""
        return _RunLogger(tracking_uri=self.tracking_uri, run_id=self.run_id, experiment_name=self.experiment_name)


class _RunLogger(MLFlowLogger):
    def finalize(self, status: str = "success") -> None:
        """Lightning would mark the run FINISHED after each fit; the tracker ends it once, at the end."""
