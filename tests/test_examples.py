"""examples/: a student and a loss of your own, plugged in through ``_target_`` and ``--config-dir examples/conf``."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_model

from distilkit.errors import ConfigError
from distilkit.export.onnx import ort_logits, ort_session
from distilkit.losses import Outputs
from distilkit.models.custom import LogitsStudent
from distilkit.pipeline import Run, run

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SEARCHPATH = f"hydra.searchpath=[file://{EXAMPLES / 'conf'}]"  # what --config-dir examples/conf does


@pytest.fixture
def examples_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))  # what PYTHONPATH=examples does


@pytest.fixture
def deployed(monkeypatch):
    """Spy on ``Run.deploy``: the trained student, and its fp32 ONNX logits vs torch logits on a dev batch."""
    seen = {}
    original = Run.deploy

    def spy(self, trained, out_dir):
        converted, fp32_onnx, deploy_onnx = original(self, trained, out_dir)
        inputs = {k: v[:8] for k, v in self.data.inputs("dev").items()}
        with torch.no_grad():
            seen["torch"] = converted.float_model(**inputs).logits.numpy()
        seen["onnx"] = ort_logits(ort_session(fp32_onnx, 1), **inputs)
        seen["trained"] = trained
        return converted, fp32_onnx, deploy_onnx

    monkeypatch.setattr(Run, "deploy", spy)
    return seen


def metric_history(root: Path, name: str) -> list[float]:
    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
    (run_id,) = mlflow.search_runs(search_all_experiments=True)["run_id"]
    return [m.value for m in mlflow.MlflowClient().get_metric_history(run_id, name)]


def test_logit_mse_formula(examples_importable):
    from my_loss import LogitMSE

    s, t, y = torch.randn(4, 3), torch.randn(4, 3), torch.tensor([0, 2, 1, 1])
    out = LogitMSE(alpha=0.25)(Outputs(s), Outputs(t), y)
    mse = sum((a - b) ** 2 for a, b in zip(s.flatten().tolist(), t.flatten().tolist())) / 12
    assert out["logit_mse"].item() == pytest.approx(mse, rel=1e-5)
    assert out["loss"].item() == pytest.approx(0.25 * mse + 0.75 * F.cross_entropy(s, y).item(), rel=1e-5)
    with pytest.raises(ConfigError) as err:
        LogitMSE(alpha=2)
    assert err.value.key == "alpha"


def test_plain_module_student_and_own_loss_train_export_measure(examples_importable, deployed, compose_cfg, shared_cache_dir, tmp_path, monkeypatch):
    from my_loss import LogitMSE
    from my_student import TinyCNN

    calls, backpropagated = [], []
    forward = LogitMSE.forward

    def spy(self, student, teacher, labels, attention_mask=None):
        out = forward(self, student, teacher, labels, attention_mask)
        calls.append(out["logit_mse"].item())
        out["loss"].register_hook(lambda grad: backpropagated.append(1))  # fires only if this value is the one trained on
        return out

    monkeypatch.setattr(LogitMSE, "forward", spy)
    cfg = compose_cfg(SEARCHPATH, "student=tiny_cnn", "student.embedding_dim=16", "student.channels=8", "loss=logit_mse",
                      "trainer.log_every_n_steps=1", f"paths.cache_dir={shared_cache_dir}")
    metrics = run(cfg, {"student": "tiny_cnn", "loss": "logit_mse"})

    steps = 64 // 16  # tiny config: 64 training examples, batch 16, one epoch
    assert len(calls) == steps and len(backpropagated) == steps
    assert metric_history(tmp_path, "train/logit_mse") == pytest.approx(calls)  # its parts are logged by name
    trained = deployed["trained"]
    assert isinstance(trained, LogitsStudent) and isinstance(trained.model, TinyCNN)
    assert metrics["student/params"] == sum(p.numel() for p in trained.model.parameters()) < metrics["teacher/params"]
    np.testing.assert_allclose(deployed["onnx"], deployed["torch"], rtol=0, atol=1e-5)  # exported = trained
    assert metrics["deploy/parity_pass"] == 1.0 and metrics["student/ort_latency_b1_p50_ms"] > 0
    (weights,) = (tmp_path / "mlartifacts").rglob("model.safetensors")  # the logged artifact reloads into the user's class
    fresh = TinyCNN(trained.config.vocab_size, trained.config.num_labels, embedding_dim=16, channels=8)
    load_model(fresh, weights)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), trained.model.state_dict().values()))


def test_hf_student_from_factory_with_intermediate_loss(examples_importable, deployed, compose_cfg, shared_cache_dir, tmp_path):
    from transformers import DistilBertForSequenceClassification

    cfg = compose_cfg(SEARCHPATH, "student=small_distilbert", "student.dim=16", "student.hidden_dim=32", "student.n_layers=1",
                      "loss=intermediate", "trainer.log_every_n_steps=1", f"paths.cache_dir={shared_cache_dir}")
    metrics = run(cfg, {"student": "small_distilbert", "loss": "intermediate"})
    trained = deployed["trained"]
    assert isinstance(trained, DistilBertForSequenceClassification) and trained.config.dim == 16
    attn, hidden = metric_history(tmp_path, "train/attn"), metric_history(tmp_path, "train/hidden")
    assert len(attn) == 4 and all(0 < a < 10 for a in attn) and all(h > 0 for h in hidden)  # pre-dropout maps: no 1e-12 blow-up
    np.testing.assert_allclose(deployed["onnx"], deployed["torch"], rtol=0, atol=1e-5)
    assert metrics["student/params"] < metrics["teacher/params"]


def test_loss_must_be_a_distill_loss(compose_cfg):
    with pytest.raises(ConfigError) as err:
        run(compose_cfg("loss=ce", "loss._target_=torch.nn.MSELoss"), {})
    assert err.value.key == "loss" and "DistillLoss" in err.value.message


def test_plain_student_with_a_loss_needing_hidden_states(examples_importable, compose_cfg, shared_cache_dir, tmp_path):
    with pytest.raises(ConfigError) as err:
        run(compose_cfg(SEARCHPATH, "student=tiny_cnn", "loss=intermediate", f"paths.cache_dir={shared_cache_dir}"), {})
    assert err.value.key == "loss" and "logits only" in err.value.message
    assert not (tmp_path / "mlflow.db").exists()  # caught by the preflight: no MLflow run at all
