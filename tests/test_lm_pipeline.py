"""task=causal_lm end to end on the embedded corpus and tiny Llama teacher: metrics, stores, bad input."""

from __future__ import annotations

import mlflow
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from distilkit.errors import ConfigError
from distilkit.models.student import DistilStudent
from distilkit.pipeline import Run, run
from distilkit.training.topk_store import TopKStore

LM = [
    "task=causal_lm",
    "data.num_lines=200",
    "teacher.num_key_value_heads=1",
    "task.top_k=8",
    "task.generation.prompt_tokens=4",
    "task.generation.new_tokens=4",
    "task.generation.repeats=1",
    "hardware.measure.threads=1",
]
METRICS = [
    *(f"{role}/{split}_ppl" for role in ("teacher", "student") for split in ("dev", "test")),
    "student/agreement_dev", "student/agreement_test",
    *(f"{role}/{m}" for role in ("teacher", "student") for m in ("params", "size_mb", "gen_ttft_ms", "gen_decode_tokens_per_s")),
    "measure/gen_prompt_tokens", "measure/gen_new_tokens", "measure/teacher_store_bytes_per_token",
]


def mlflow_runs(root):
    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
    return mlflow.search_runs(search_all_experiments=True)


class OtherVocabStudent:
    """A causal-LM student whose vocabulary is not the teacher's (as a student with its own tokenizer would be)."""

    tasks = ("causal_lm",)

    def __init__(self, **_):
        pass

    def build(self, teacher):
        config = LlamaConfig(vocab_size=teacher.config.vocab_size + 7, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                             num_key_value_heads=1, intermediate_size=32)
        return LlamaForCausalLM(config)


def test_composes_with_the_task_defaults(compose_cfg):
    cfg = compose_cfg("task=causal_lm", tiny=False)
    assert cfg.data._target_.endswith("TextCorpusData") and cfg.teacher._target_.endswith("ScratchLMTeacher")
    assert cfg.loss._target_.endswith("ForwardKL") and cfg.task.top_k == 32
    cfg = compose_cfg("task=causal_lm", "loss=lm_ce", tiny=False)  # the user's choice wins over the task's default
    assert cfg.loss._target_.endswith("TokenCrossEntropy")


def test_end_to_end_writes_every_metric_and_reuses_the_store(compose_cfg, tmp_path, monkeypatch):
    metrics = run(compose_cfg(*LM), {"task": "causal_lm"})
    for key in METRICS:
        assert key in metrics and metrics[key] == metrics[key] and metrics[key] > 0, key
    assert metrics["student/params"] < metrics["teacher/params"]
    assert 0 <= metrics["student/agreement_dev"] <= 1
    assert metrics["measure/teacher_store_bytes_per_token"] == 8 * 8 + 8
    runs = mlflow_runs(tmp_path)
    assert list(runs["status"]) == ["FINISHED"] and runs["tags.task"][0] == "causal_lm"
    assert runs["metrics.student/dev_ppl"][0] == pytest.approx(metrics["student/dev_ppl"])
    # a second run, another loss: no teacher training, no teacher forward pass (top-k read from the store)
    computed, fits = [], []
    original = TopKStore.get_or_compute
    monkeypatch.setattr(TopKStore, "get_or_compute", lambda self, key, shape, compute: original(self, key, shape, lambda: computed.append(key) or compute()))
    monkeypatch.setattr(Run, "finetune", lambda self, model, spec: fits.append(1))
    again = run(compose_cfg(*LM, "loss=lm_rkl"), {"task": "causal_lm"})
    assert computed == [] and fits == []
    assert again["teacher/dev_ppl"] == metrics["teacher/dev_ppl"]  # the same teacher, from the store
    assert again["student/dev_ppl"] != metrics["student/dev_ppl"]  # another loss trained another student


def test_online_full_vocabulary_teacher_and_ce_baseline(compose_cfg, shared_cache_dir):
    for extra in (["task.top_k=null", "loss=lm_jsd"], ["loss=lm_ce", "student=scratch_lm"]):
        metrics = run(compose_cfg(*LM, *extra, "trainer.fast_dev_run=true", f"paths.cache_dir={shared_cache_dir}"), {})
        assert metrics["student/dev_ppl"] > 1


def test_sampled_store_trains_on_teacher_draws(compose_cfg, shared_cache_dir):
    """teacher_store=sampled: the training split holds frequencies of k teacher draws (seeded), dev/test the exact top-k."""
    seen = {}
    original = TopKStore.get_or_compute
    def spy(self, key, shape, compute):
        seen[len(seen)] = out = original(self, key, shape, compute)
        return out
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(TopKStore, "get_or_compute", spy)
        metrics = run(compose_cfg(*LM, "task.teacher_store=sampled", "trainer.fast_dev_run=true", f"paths.cache_dir={shared_cache_dir}"), {})
    train, dev = seen[0], seen[1]
    real = train["rest"] != 0
    counts = train["logprobs"][real].exp() * 8
    assert torch.all(train["rest"][real] == float("-inf")) and torch.allclose(counts.sum(-1), torch.full_like(counts[:, 0], 8.0))
    assert torch.allclose(counts, counts.round(), atol=1e-4) and (counts == 0).any()  # frequencies of 8 draws, some slots unused
    assert torch.isfinite(dev["rest"]).all()  # dev: exact top-k and rest
    assert metrics["student/dev_ppl"] > 1 and 0 <= metrics["student/agreement_dev"] <= 1


def test_layer_copy_student_equals_the_kept_teacher_layers():
    teacher = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=4, num_attention_heads=2,
                                           num_key_value_heads=1, intermediate_size=32))
    student = DistilStudent(layer_map=[0, 3]).build(teacher)
    assert student.config.num_hidden_layers == 2
    t, s = teacher.state_dict(), student.state_dict()
    for name, tensor in s.items():
        src = name
        if name.startswith("model.layers."):
            i = int(name.split(".")[2])
            src = name.replace(f"model.layers.{i}.", f"model.layers.{[0, 3][i]}.", 1)
        assert torch.equal(tensor, t[src]), name
    # the copy computes what the teacher's kept layers compute: drop layers 1 and 2 from the teacher and compare
    teacher.model.layers = torch.nn.ModuleList([teacher.model.layers[0], teacher.model.layers[3]])
    teacher.config.num_hidden_layers = 2
    ids = torch.randint(0, 50, (2, 7))
    assert torch.allclose(student(input_ids=ids, use_cache=False).logits, teacher(input_ids=ids, use_cache=False).logits, atol=1e-6)


@pytest.mark.parametrize(
    "overrides,key",
    [
        (["task=causal_lm", "teacher=scratch"], "teacher"),  # a classification teacher with task=causal_lm
        (["teacher=tiny_lm"], "teacher"),  # and a causal-LM teacher with task=classification
        ([*LM, "loss=kd"], "loss"),
        ([*LM, "task.top_k=100000"], "task.top_k"),
        ([*LM, "data.max_length=64", "teacher.max_position_embeddings=32"], "data.max_length"),
        ([*LM, "student._target_=test_lm_pipeline.OtherVocabStudent"], "student"),
        ([*LM, "quantizer=ptq_static"], "quantizer"),
        ([*LM, "vocab=train"], "vocab"),
        ([*LM, "pruner=width"], "pruner"),
        ([*LM, "pruner=heads"], "pruner.amount"),  # the tiny teacher has one key/value group: none can go
        ([*LM, "pruner=ffn", "pruner.amount=0.1", "quantizer=qat_int4"], "quantizer.group_size"),  # pruned FFN width not a multiple of 32
        ([*LM, "task.teacher_store=sampled", "loss=lm_rkl"], "task.teacher_store"),  # sampled estimates forward KL only
        ([*LM, "task.teacher_store=sampled", "loss.T=2"], "task.teacher_store"),  # ... at T = 1
        ([*LM, "task.teacher_store=topk"], "task.teacher_store"),
    ],
    ids=["cls-teacher", "lm-teacher-cls-task", "cls-loss", "k>vocab", "block>context", "tokenizer-mismatch", "quantizer", "vocab",
         "pruner-width", "heads-one-group",
         "pruned-ffn-vs-int4-group", "sampled-rkl", "sampled-T2", "store-name"],
)
def test_bad_input_names_key_and_leaves_nothing(overrides, key, compose_cfg, tmp_path):
    with pytest.raises(ConfigError) as err:
        run(compose_cfg(*overrides), {})
    assert str(err.value).startswith(f"{key}:") and "\n" not in str(err.value)
    assert not (tmp_path / "mlflow.db").exists() or mlflow_runs(tmp_path).empty
    assert not (tmp_path / ".cache/distilkit/teacher_topk").exists() and not (tmp_path / ".cache/distilkit/teachers").exists()


def test_empty_corpus_is_one_line(compose_cfg, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(ConfigError, match=r"^data.path: the corpus .* is empty"):
        run(compose_cfg(*LM, f"data.path={empty}"), {})
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    with pytest.raises(ConfigError, match=r"^data.path: .* holds no files"):
        run(compose_cfg(*LM, f"data.path={corpus}"), {})


def test_store_holds_the_teachers_exact_top_k_rest_and_target(tmp_path):
    from distilkit.data.batching import pad_batch
    from distilkit.losses.causal_lm import sparse_teacher
    from distilkit.training.topk_store import teacher_topk

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                         num_key_value_heads=1, intermediate_size=32)).eval()
    inputs = pad_batch([list(range(1, 9)), [5, 6, 7]], pad_id=0, width=8)
    stored = teacher_topk(model, inputs, k=5)
    with torch.no_grad():
        row0 = model(input_ids=inputs["input_ids"][:1]).logits[0, :-1]
        row1 = model(input_ids=inputs["input_ids"][1:, :3]).logits[0, :-1]
    for row, logits, n in ((0, row0, 7), (1, row1, 2)):
        expect = sparse_teacher(logits, 5)
        assert torch.equal(stored["indices"][row, :n].long(), expect.indices)
        assert torch.allclose(stored["logprobs"][row, :n], expect.logprobs, atol=1e-6)
        assert torch.allclose(stored["rest"][row, :n].exp(), 1 - expect.logprobs.exp().sum(-1), atol=1e-6)
        target = torch.log_softmax(logits, -1).gather(-1, inputs["input_ids"][row, 1 : n + 1, None]).squeeze(-1)
        assert torch.allclose(stored["target"][row, :n], target, atol=1e-6)
    assert (stored["logprobs"][1, 2:] == 0).all() and (stored["target"][1, 2:] == 0).all()  # padding holds nothing
    store = TopKStore(tmp_path)
    assert store.get_or_compute("k", (2, 7, 5), lambda: stored) is stored
    again = store.get_or_compute("k", (2, 7, 5), lambda: pytest.fail("recomputed"))
    assert all(torch.equal(again[name], stored[name]) for name in stored)
    store.path("k").write_bytes(b"torn")
    assert store.get_or_compute("k", (2, 7, 5), lambda: stored) is stored  # unreadable: recomputed


def test_split_rule_cuts_at_line_breaks_and_keeps_every_character():
    from distilkit.data.text_corpus import split_text

    text = "".join(f"line {i:03d} of the corpus\n" for i in range(100))
    splits = split_text(text, 0.05, 0.05)
    assert splits["train"] + splits["dev"] + splits["test"] == text
    assert all(part.endswith("\n") for part in splits.values())
    assert splits["train"].count("\n") == 90 and splits["dev"].count("\n") == 5 and splits["test"].count("\n") == 5


def test_corpus_training_loader_replays_an_interrupted_epoch(tmp_path):
    """resume: the causal-LM training loader draws the interrupted epoch's order again and skips the done batches."""
    from distilkit.data.replay import Replay
    from distilkit.data.text_corpus import TextCorpusData

    data = TextCorpusData(path=str(tmp_path), batch_size=2)
    data.encoded["train"] = {"input_ids": [[i, i + 1, i + 2] for i in range(0, 30, 3)]}  # 10 blocks, 5 batches
    torch.manual_seed(0)
    loader = data.train_dataloader()
    epoch = [batch["input_ids"].tolist() for batch in loader]
    drawn_from, after_two = data.train_order.rng, None
    torch.manual_seed(123)  # the resumed process's generator is elsewhere
    after_two = torch.get_rng_state()
    data.train_order.replay = Replay(order_rng=drawn_from, skip=2, after_rng=after_two)
    assert [batch["input_ids"].tolist() for batch in data.train_dataloader()] == epoch[2:]
    assert torch.equal(torch.get_rng_state(), after_two)
