"""The teacher-logit store: computed once, reused without a teacher forward, recomputed when keys change."""

from __future__ import annotations

import torch

from distilkit.hashing import key_of
from distilkit.training.logit_store import LogitStore


def test_second_call_reuses_without_compute(tmp_path):
    store = LogitStore(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return torch.arange(6.0).reshape(3, 2)

    first = store.get_or_compute("k", (3, 2), compute)

    def must_not_run():
        raise AssertionError("teacher forward called although the logits are stored")

    second = LogitStore(tmp_path).get_or_compute("k", (3, 2), must_not_run)
    assert calls == [1] and torch.equal(first, second)


def test_corrupt_or_wrong_shape_file_is_recomputed(tmp_path):
    store = LogitStore(tmp_path)
    store.path("k").parent.mkdir(parents=True)
    store.path("k").write_bytes(b"not a tensor")
    assert torch.equal(store.get_or_compute("k", (2, 2), lambda: torch.ones(2, 2)), torch.ones(2, 2))
    torch.save(torch.ones(5, 2), store.path("k"))
    assert torch.equal(store.get_or_compute("k", (2, 2), lambda: torch.zeros(2, 2)), torch.zeros(2, 2))
    assert torch.equal(torch.load(store.path("k")), torch.zeros(2, 2))
    assert not list(store.root.glob("*.tmp*"))


def test_keys_change_with_teacher_and_data():
    ids = torch.tensor([[1, 2, 3]])
    base = key_of("teacher-a", "train", ids)
    assert key_of("teacher-a", "train", ids.clone()) == base
    assert key_of("teacher-b", "train", ids) != base
    assert key_of("teacher-a", "train", torch.tensor([[1, 2, 4]])) != base
    assert key_of("teacher-a", "dev", ids) != base


def test_logits_do_not_depend_on_padding_and_batches_are_padded_per_batch():
    from transformers import BertConfig, BertForSequenceClassification

    from distilkit.data.batching import batches_of, pad_batch
    from distilkit.training.logit_store import predict_logits

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)).eval()
    rows = [torch.randint(1, 50, (n,)).tolist() for n in (3, 5, 4, 30, 2, 6, 7, 3)]
    inputs = pad_batch(rows, pad_id=0, width=64)
    widths = [b["input_ids"].shape[1] for b in batches_of(inputs, batch_size=4)]
    assert widths == [30, 7]  # each batch only as wide as its longest row
    per_batch = predict_logits(model, inputs, batch_size=4)
    with torch.inference_mode():
        padded_to_64 = model(**inputs).logits
        alone = torch.cat([model(**pad_batch([r], pad_id=0)).logits for r in rows])
    assert (per_batch - padded_to_64).abs().max() < 1e-5 and (per_batch - alone).abs().max() < 1e-5
    assert per_batch.std() > 0  # the rows really differ
