"""task=causal_lm with quantizers (and narrowed students): the deployed torch model is the one evaluated and timed."""

from __future__ import annotations

import pytest
import torch

import distilkit.tasks.causal_lm as causal_lm
from distilkit.measure.lm_quality import next_token_predictions, perplexity, real_positions
from distilkit.pipeline import run
from distilkit.quantize.int4 import Int4Linear
from test_lm_pipeline import LM

FAST = [*LM, "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1"]


@pytest.fixture
def timed(monkeypatch):
    """The models handed to the generation timing, by role (the real timing still runs)."""
    seen = {}
    original = causal_lm.generation_metrics

    def spy(models, *args, **kwargs):
        seen.update(models)
        return original(models, *args, **kwargs)

    monkeypatch.setattr(causal_lm, "generation_metrics", spy)
    return seen


@pytest.mark.parametrize("quantizer,bits,layer", [("ptq_dynamic", 8, torch.ao.nn.quantized.dynamic.Linear), ("qat_int4", 4, Int4Linear)])
def test_quantized_student_is_what_is_evaluated_and_timed(quantizer, bits, layer, compose_cfg, shared_cache_dir, timed, monkeypatch):
    evaluated = []
    monkeypatch.setattr(causal_lm, "next_token_predictions", lambda model, inputs: evaluated.append((model, inputs)) or next_token_predictions(model, inputs))
    cfg = compose_cfg(*FAST, f"quantizer={quantizer}", f"paths.cache_dir={shared_cache_dir}")
    metrics = run(cfg, {})
    assert set(timed) == {"teacher", "student", "deploy"}
    deployed = timed["deploy"]
    kinds = {type(m) for m in deployed.modules()}
    assert layer in kinds and torch.nn.Linear not in kinds  # every Linear (lm_head included) is low-bit: task.keep_fp32=[]
    assert not any(isinstance(m, layer) for m in timed["student"].modules())  # the student timed beside it is the float one
    assert metrics["deploy/bits"] == bits
    for key in ("deploy/dev_ppl", "deploy/test_ppl", "deploy/gen_decode_tokens_per_s", "deploy/gen_ttft_ms",
                "deploy/gen_decode_speedup_vs_student", "deploy/ppl_ratio_vs_student_dev", "deploy/state_dict_mb"):
        assert metrics[key] == metrics[key] and metrics[key] > 0, key
    # the reported perplexity is the timed model's own (recomputed here on the dev blocks it was given), and
    # quantization changed it, a little
    (dev,) = [inputs for model, inputs in evaluated if model is deployed][:1]
    again = perplexity(next_token_predictions(deployed, dev)["target"], real_positions(dev["attention_mask"]))
    assert again == pytest.approx(metrics["deploy/dev_ppl"], rel=1e-9)
    assert metrics["deploy/dev_ppl"] != metrics["student/dev_ppl"] and 0.8 < metrics["deploy/ppl_ratio_vs_student_dev"] < 1.25
    assert metrics["deploy/state_dict_mb"] < 0.8 * metrics["student/state_dict_mb"]  # tiny: per-channel scales and pickling weigh in
