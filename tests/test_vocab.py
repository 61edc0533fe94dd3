"""Vocabulary pruning (distilkit.prune.vocab): exact logits on kept-token text, tokenizer/model agreement
after save/load, WordPiece fallback for unseen words, and vocab=train through the whole pipeline."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertForSequenceClassification

from distilkit.data.synthetic import generate
from distilkit.errors import ConfigError
from distilkit.models.tokenizer import train_wordpiece
from distilkit.prune.vocab import TrainVocab, kept_token_ids

FULL_TEXTS = [e.text for e in generate(300, seed=1)]


@pytest.fixture(scope="module")
def full():
    tokenizer = train_wordpiece(FULL_TEXTS, vocab_size=300)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, num_labels=2, pad_token_id=tokenizer.pad_token_id)
    return BertForSequenceClassification(config).eval(), tokenizer


def logits(model, tokenizer, texts):
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits


def test_pruned_logits_equal_unpruned_on_kept_text_and_round_trip(full, tmp_path):
    model, tokenizer = full
    train = FULL_TEXTS[:40]  # a subset: fewer tokens than the full vocabulary
    student = copy.deepcopy(model)
    new, kept = TrainVocab().prune(student, tokenizer, train)
    assert len(tokenizer.all_special_ids) < len(kept) < len(tokenizer)
    assert student.config.vocab_size == len(new) == student.get_input_embeddings().num_embeddings == len(kept)
    # the training text: same pieces, renumbered; exactly the same logits
    old_ids, new_ids = tokenizer(train)["input_ids"], new(train)["input_ids"]
    assert [[kept[i] for i in row] for row in new_ids] == old_ids
    assert torch.equal(logits(student, new, train), logits(model, tokenizer, train))
    # save/load: tokenizer and embeddings still agree and compute the same
    student.save_pretrained(tmp_path)
    new.save_pretrained(tmp_path)
    loaded_tok = AutoTokenizer.from_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert len(loaded_tok) == loaded.config.vocab_size == loaded.get_input_embeddings().num_embeddings
    assert loaded_tok(train)["input_ids"] == new_ids
    assert loaded_tok.pad_token_id == loaded.config.pad_token_id == new.convert_tokens_to_ids("[PAD]")
    assert torch.equal(logits(loaded, loaded_tok, train), logits(model, tokenizer, train))


def test_unseen_words_fall_back_to_pieces_or_unk(full):
    model, tokenizer = full
    student = copy.deepcopy(model)
    new, kept = TrainVocab().prune(student, tokenizer, ["good movie"])
    kept_tokens = set(tokenizer.convert_ids_to_tokens(kept))
    assert "good" in kept_tokens and "terrible" not in kept_tokens
    pieces = new.tokenize("terrible good")
    assert pieces[-1] == "good" and set(pieces) <= kept_tokens
    assert all(i < len(new) for i in new("terrible zzz good")["input_ids"])
    assert new.tokenize("qqq") == ["[UNK]"] or set(new.tokenize("qqq")) <= kept_tokens


def test_max_tokens_keeps_the_most_frequent(full):
    _, tokenizer = full
    kept = kept_token_ids(tokenizer, FULL_TEXTS[:40], max_tokens=20)
    assert len(kept) == 20 and set(tokenizer.all_special_ids) <= set(kept)
    most = kept_token_ids(tokenizer, FULL_TEXTS[:40])
    assert set(kept) < set(most)
    with pytest.raises(ConfigError, match="max_tokens"):
        TrainVocab(max_tokens=3)


def test_extra_tokens_keep_the_first_of_the_vocabulary_and_their_words_exact(full):
    model, tokenizer = full
    train = ["good movie"]
    base = set(kept_token_ids(tokenizer, train))
    kept = kept_token_ids(tokenizer, train, extra_tokens=60)
    added = sorted(set(kept) - base)
    assert len(added) == 60
    # the first 60 ids not kept yet, in the vocabulary's own order
    assert added == [i for i in range(len(tokenizer)) if i not in base][:60]
    # a sentence made of those words (unseen in training): the pruned pair computes what the full pair computes
    words = [t for t in tokenizer.convert_ids_to_tokens(added) if not t.startswith("##") and len(t) > 1][:4]
    assert words, "the test vocabulary has whole words among its first ids"
    text = [" ".join(words)]
    student = copy.deepcopy(model)
    new, kept2 = TrainVocab(extra_tokens=60).prune(student, tokenizer, train)
    assert kept2 == kept
    assert [[kept[i] for i in row] for row in new(text)["input_ids"]] == tokenizer(text)["input_ids"]
    assert torch.equal(logits(student, new, text), logits(model, tokenizer, text))
    plain, _ = TrainVocab().prune(copy.deepcopy(model), tokenizer, train)
    assert plain(text)["input_ids"] != new(text)["input_ids"]  # without them the words fall back to pieces/[UNK]
    with pytest.raises(ConfigError, match="extra_tokens"):
        TrainVocab(extra_tokens=-1)


def test_placeholder_rows_are_never_added():
    from distilkit.prune.vocab import PLACEHOLDER

    assert PLACEHOLDER.match("[unused0]") and PLACEHOLDER.match("[unused993]") and PLACEHOLDER.match("<unused12>")
    assert not PLACEHOLDER.match("unused") and not PLACEHOLDER.match("[UNK]") and not PLACEHOLDER.match("the")


def test_vocab_train_in_pipeline_deploys_the_pruned_tokenizer(compose_cfg, shared_cache_dir, tmp_path):
    """vocab=train + width + qat_int8 + export.fuse in one run: the saved student's tokenizer and model agree,
    the fused int8 ONNX model runs the pruned ids (parity), and the kept-token count and embedding sizes are logged."""
    import mlflow

    from distilkit.pipeline import run

    cfg = compose_cfg("vocab=train", "pruner=width", "quantizer=qat_int8", "export.fuse=true", f"paths.cache_dir={shared_cache_dir}")
    metrics = run(cfg, {"vocab": "train", "pruner": "width", "quantizer": "qat_int8"})
    assert metrics["vocab/tokens_kept"] < metrics["vocab/tokens_before"]
    assert metrics["vocab/embedding_mb_after"] < metrics["vocab/embedding_mb_before"]
    assert metrics["deploy/parity_pass"] == 1.0
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    run_id = mlflow.search_runs(search_all_experiments=True)["run_id"][0]
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="student", dst_path=str(tmp_path / "dl"))
    from distilkit.prune import load_pruned

    import onnx

    fused = onnx.load(f"{local}/student.int8.fused.onnx")
    fused_ops = {n.op_type for n in fused.graph.node}
    assert {"Sum", "MultiHeadAttention", "MatMulInteger"} <= fused_ops  # what parity checked is the fused graph
    assert "SkipLayerNormalization" not in fused_ops  # split again (distilkit.export.skip_layernorm)
    tokenizer = AutoTokenizer.from_pretrained(local)
    model = load_pruned(local)
    assert len(tokenizer) == model.config.vocab_size == metrics["vocab/tokens_kept"]
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)
