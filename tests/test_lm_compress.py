"""task=causal_lm with quantizers (and narrowed students): the deployed torch model is the one evaluated and timed."""

from __future__ import annotations

import pytest
import torch

import distilkit.tasks.causal_lm as causal_lm
from distilkit.measure.lm_quality import next_token_predictions, perplexity, real_positions
from distilkit.pipeline import run
from distilkit.quantize.int4 import Int4Linear
from test_lm_pipeline import LM

FAST = [*LM, "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1"]  # one tiny teacher for these tests and test_lm_sequence_kd


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
    # the reported perplexity is the timed model's own (recomputed here on the dev blocks it was given)
    (dev,) = [inputs for model, inputs in evaluated if model is deployed][:1]
    again = perplexity(next_token_predictions(deployed, dev)["target"], real_positions(dev["attention_mask"]))
    assert again == pytest.approx(metrics["deploy/dev_ppl"], rel=1e-9)
    if quantizer == "ptq_dynamic":  # the float-trained student, quantized after training: the perplexity moved, a little
        assert metrics["deploy/dev_ppl"] != metrics["student/dev_ppl"] and 0.8 < metrics["deploy/ppl_ratio_vs_student_dev"] < 1.25
    else:  # QAT: the deployed int4 model computes what the fake-quantized student computed in training
        assert metrics["deploy/dev_ppl"] == pytest.approx(metrics["student/dev_ppl"], rel=1e-5)
    assert metrics["deploy/state_dict_mb"] < 0.8 * metrics["student/state_dict_mb"]  # tiny: per-channel scales and pickling weigh in


def _llama(seed=0, **sizes):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(**{"vocab_size": 60, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
                            "num_key_value_heads": 2, "intermediate_size": 48, **sizes})
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("pruner", ["heads", "ffn"])
def test_decoder_pruning_removes_the_dead_units_and_reloads(pruner, tmp_path):
    """Units that add nothing (zeroed output weights) score lowest, go first, and their removal changes no logit;
    the narrowed model's config describes it, so plain from_pretrained reloads it."""
    from transformers import AutoModelForCausalLM

    from distilkit.prune import FFNPruner, HeadPruner

    model = _llama()
    with torch.no_grad():
        for layer in model.model.layers:
            if pruner == "heads":  # key/value group 1 (query heads 2, 3) writes nothing: its value rows are zero
                layer.self_attn.v_proj.weight[8:16] = 0
            else:  # 12 of 48 neurons write nothing
                layer.mlp.down_proj.weight[:, 5:17] = 0
    ids = torch.randint(0, 60, (2, 9))
    before = model(input_ids=ids).logits
    spec = HeadPruner(amount=0.5) if pruner == "heads" else FFNPruner(amount=0.25)
    spec.check(model)
    spec.prepare(model)
    attn, mlp = model.model.layers[0].self_attn, model.model.layers[0].mlp
    if pruner == "heads":
        assert (model.config.num_attention_heads, model.config.num_key_value_heads, model.config.head_dim) == (2, 1, 8)
        assert attn.q_proj.out_features == 16 and attn.k_proj.out_features == 8 and attn.o_proj.in_features == 16
    else:
        assert model.config.intermediate_size == 36 and mlp.gate_proj.out_features == 36 and mlp.down_proj.in_features == 36
    assert torch.allclose(model(input_ids=ids).logits, before, atol=1e-5)
    model.save_pretrained(tmp_path)
    assert torch.allclose(AutoModelForCausalLM.from_pretrained(tmp_path).eval()(input_ids=ids).logits, before, atol=1e-5)


def test_narrowed_student_trains_quantized_end_to_end(compose_cfg, shared_cache_dir, timed):
    metrics = run(compose_cfg(*FAST, "pruner=ffn", "pruner.amount=0.5", "quantizer=ptq_dynamic", f"paths.cache_dir={shared_cache_dir}"), {})
    student, half = timed["student"], timed["teacher"].config.intermediate_size // 2
    assert student.config.intermediate_size == half and student.model.layers[0].mlp.up_proj.out_features == half
    assert timed["deploy"].model.layers[0].mlp.up_proj.weight().shape[0] == half  # the deployed int8 model is the narrowed one
    assert metrics["student/params"] < metrics["teacher/params"] / 2 and metrics["deploy/dev_ppl"] > 1
