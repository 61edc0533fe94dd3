"""Pruners and quantizers through the whole pipeline in short real runs (one epoch, 4 steps), not
``fast_dev_run``: there training progress stays 0, so a schedule that never reaches its target would
pass. Each run combines a pruner with a quantizer; together they
cover every non-``none`` option. Checked: the state the schedule must reach by the end of training,
the structure actually removed, fake quantization active while training, training after ``prepare``,
and the converted/deployed model."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import torch
from torch import nn

from distilkit.pipeline import Run, run
from distilkit.prune import count_nonzero
from distilkit.training.module import DistillModule

CONF = Path(__file__).resolve().parent.parent / "conf"
RUNS = {"pruner": ["magnitude", "heads", "ffn", "width"], "quantizer": ["ptq_dynamic", "qat_int8", "qat_int8_rr", "qat_int4", "ptq_static"]}  # one test each below (width: tests/test_vocab.py; ptq_static: tests/test_quantize_static.py)


def test_every_compressor_option_has_a_short_run():
    for group, options in RUNS.items():
        assert sorted(options) == sorted(p.stem for p in (CONF / group).glob("*.yaml") if p.stem != "none"), group


@pytest.fixture
def short_run(compose_cfg, shared_cache_dir, tmp_path, monkeypatch):
    """``short_run(*overrides)`` -> (metrics, seen): ``seen`` holds state-dict copies of the student right after
    the compressors' ``prepare`` (``prepared``) and at the end of training (``trained_state``: before
    ``convert``, which may change the model in place), the trained model (``trained``) and ``converted``."""
    seen = {}
    setup, deploy = DistillModule.setup, Run.deploy

    def spy_setup(self, stage):
        setup(self, stage)
        if stage == "fit":  # the last fit is the student's (the teacher is fine-tuned first when not cached)
            seen["prepared"] = {k: v.detach().clone() for k, v in self.student.state_dict().items()}

    def spy_deploy(self, trained, out_dir):
        seen["trained"] = trained
        seen["trained_state"] = {k: v.detach().clone() for k, v in trained.state_dict().items()}
        seen["converted"], fp32_onnx, deploy_onnx = deploy(self, trained, out_dir)
        seen["inputs"] = {k: v[:8] for k, v in self.data.inputs("dev").items()}
        return seen["converted"], fp32_onnx, deploy_onnx

    monkeypatch.setattr(DistillModule, "setup", spy_setup)
    monkeypatch.setattr(Run, "deploy", spy_deploy)

    def _run(*overrides: str):
        cfg = compose_cfg(*overrides, f"paths.cache_dir={shared_cache_dir}")
        assert not cfg.trainer.fast_dev_run and cfg.trainer.max_epochs == 1
        choices = dict(o.split("=") for o in overrides if "." not in o.split("=")[0])
        metrics = run(cfg, choices)
        mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
        runs = mlflow.search_runs(search_all_experiments=True)
        assert list(runs["status"]) == ["FINISHED"]
        assert all(runs[f"tags.{group}"][0] == option for group, option in choices.items())
        seen["cfg"] = cfg
        return metrics, seen

    return _run


def encoder_linears(model: nn.Module) -> dict[str, nn.Linear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear) and ".encoder." in n}


def trained_after_prepare(seen) -> bool:
    """Some encoder weight moved between the compressors' ``prepare`` and the end of training."""
    state = seen["trained_state"]
    return any(not torch.equal(state[k], v) for k, v in seen["prepared"].items() if ".encoder." in k and k.endswith("weight"))


def logits(model: nn.Module, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(**inputs).logits


def fake_quant_active(seen) -> bool:
    """The trained (fake-quantized) student computes something other than its plain float copy."""
    return not torch.allclose(logits(seen["trained"], seen["inputs"]), logits(seen["converted"].float_model, seen["inputs"]), rtol=0, atol=1e-7)


def test_magnitude_reaches_final_sparsity_then_ptq_dynamic(short_run):
    metrics, seen = short_run("pruner=magnitude", "pruner.sparsity=0.5", "pruner.end=0.7", "quantizer=ptq_dynamic")
    masks = {k: v for k, v in seen["trained_state"].items() if ".encoder." in k and k.endswith("weight_mask")}
    total = sum(mask.numel() for mask in masks.values())
    assert len(masks) == len(encoder_linears(seen["converted"].float_model)) > 0
    assert sum(int((mask == 0).sum()) for mask in masks.values()) == round(0.5 * total)  # the cubic schedule reached its end
    assert sum(int((seen["prepared"][k] == 0).sum()) for k in masks) == 0  # and started from initial_sparsity 0
    assert trained_after_prepare(seen)
    student = seen["converted"].float_model
    linears = encoder_linears(student).values()
    assert not any(hasattr(m, "weight_mask") for m in linears)  # masks made permanent
    assert sum(int((m.weight == 0).sum()) for m in linears) == round(0.5 * total)
    assert metrics["student/nonzero_params"] == count_nonzero(student) <= metrics["student/params"] - round(0.5 * total)
    assert metrics["student/sparse_size_mb"] < metrics["student/size_mb"]
    assert seen["converted"].precision == "int8" and metrics["deploy/bits"] == 8
    assert metrics["deploy/onnx_size_mb"] < metrics["student/onnx_size_mb"]


def test_heads_removed_then_qat_int8_trained_and_deployed_with_parity(short_run):
    """distil -> heads pruning -> QAT int8 -> convert -> export -> measure, in one run."""
    metrics, seen = short_run("pruner=heads", "pruner.amount=0.5", "quantizer=qat_int8")
    teacher_heads = seen["cfg"].teacher.num_attention_heads  # the distil student copies the teacher's layers
    for model in (seen["trained"], seen["converted"].float_model):
        for layer in model.bert.encoder.layer:
            attention = layer.attention
            assert attention.self.num_attention_heads == teacher_heads // 2
            assert attention.self.query.out_features == attention.output.dense.in_features == attention.self.attention_head_size * teacher_heads // 2
    assert trained_after_prepare(seen) and fake_quant_active(seen)
    assert metrics["deploy/parity_pass"] == 1.0 and metrics["deploy/parity_top1_agreement"] == 1.0  # ONNX computes what trained
    assert seen["converted"].precision == "int8" and metrics["deploy/bits"] == 8
    assert metrics["student/params"] < metrics["teacher/params"]
    assert metrics["deploy/onnx_size_mb"] < metrics["student/onnx_size_mb"]
    assert abs(metrics["deploy/onnx_dev_acc"] - metrics["student/dev_acc"]) * 100 == pytest.approx(metrics["deploy/onnx_acc_gap_dev_pt"])
    assert metrics["deploy/ort_latency_b1_p50_ms"] > 0


def test_qat_int8_rr_trains_and_deploys_7_bit_weights(short_run):
    """quantizer=qat_int8_rr is qat_int8 with reduce_range=true: the student trains on the 7-bit grid and deploys it."""
    from distilkit.quantize.fake_quant import int8_fake_quant
    from distilkit.quantize.qat import QATLinear

    metrics, seen = short_run("quantizer=qat_int8_rr")
    assert seen["cfg"].quantizer.reduce_range is True
    linears = {n: m for n, m in seen["trained"].named_modules() if isinstance(m, QATLinear) and ".encoder." in n}
    assert linears
    for name, linear in linears.items():
        fake = linear.weight_fq(linear.weight).detach()
        assert torch.equal(fake, int8_fake_quant(linear.weight, reduce_range=True)), name
        assert not torch.equal(fake, int8_fake_quant(linear.weight)), name
    assert trained_after_prepare(seen) and fake_quant_active(seen)
    assert metrics["deploy/parity_pass"] == 1.0 and seen["converted"].precision == "int8" and metrics["deploy/bits"] == 8


def test_ffn_removed_then_qat_int4(short_run):
    metrics, seen = short_run("pruner=ffn", "pruner.amount=0.5", "quantizer=qat_int4", "quantizer.group_size=16")
    width = seen["cfg"].teacher.intermediate_size // 2
    for model in (seen["trained"], seen["converted"].float_model):
        assert model.config.intermediate_size == width
        for layer in model.bert.encoder.layer:
            assert layer.intermediate.dense.out_features == layer.output.dense.in_features == width
    assert trained_after_prepare(seen) and fake_quant_active(seen)
    assert metrics["deploy/parity_pass"] == 1.0 and metrics["deploy/parity_top1_agreement"] == 1.0  # ONNX computes what trained
    assert seen["converted"].precision == "int4" and metrics["deploy/bits"] == 4
    assert metrics["deploy/onnx_size_mb"] < metrics["student/onnx_size_mb"]


def test_width_pruned_then_intermediate_loss_projects_from_the_pruned_width(short_run, monkeypatch):
    """pruner=width + loss=intermediate: the loss is bound again after ``prepare``, so its hidden-state projections
    read the pruned width (bound only before pruning, they read the teacher's and the first step fails), and
    they are in the optimizer: trained with the student."""
    from distilkit.losses import IntermediateLoss

    bound = {}
    configure = DistillModule.configure_optimizers

    def spy_configure(self):
        out = configure(self)
        if not isinstance(self.loss, IntermediateLoss):  # the teacher's fine-tune (when not cached)
            return out
        bound["loss"], bound["width"] = self.loss, self.student.config.hidden_size
        bound["initial"] = [p.weight.detach().clone() for p in self.loss.projections]
        optimizer = out["optimizer"] if isinstance(out, dict) else out
        bound["optimized"] = {id(p) for group in optimizer.param_groups for p in group["params"]}
        return out

    monkeypatch.setattr(DistillModule, "configure_optimizers", spy_configure)
    metrics, seen = short_run("pruner=width", "pruner.hidden=0.5", "pruner.ffn=0.0", "loss=intermediate")
    teacher_width = seen["cfg"].teacher.hidden_size
    loss = bound["loss"]
    assert isinstance(loss, IntermediateLoss) and bound["width"] == teacher_width // 2
    assert seen["trained"].config.hidden_size == teacher_width // 2
    assert len(loss.projections) == seen["trained"].config.num_hidden_layers + 1
    assert all((p.in_features, p.out_features) == (teacher_width // 2, teacher_width) for p in loss.projections)
    assert all(id(p.weight) in bound["optimized"] for p in loss.projections)
    assert any(not torch.equal(p.weight, w) for p, w in zip(loss.projections, bound["initial"]))  # the projections trained
    assert trained_after_prepare(seen)
    assert metrics["deploy/parity_pass"] == 1.0
