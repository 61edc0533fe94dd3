"""Data sources: the generated task, LABEL-SENTENCE files, SST-2 from ../shared."""

from __future__ import annotations

import pytest
import torch

from distilkit.data import SST2Data, SyntheticData, TextLinesData
from distilkit.errors import ConfigError, config_group
from distilkit.models.tokenizer import train_wordpiece

from conftest import SST2, needs_shared_sst2


def test_synthetic_deterministic_balanced_and_noisy_only_in_train():
    a, b = SyntheticData(num_train=400, num_dev=100, num_test=100, label_noise=0.1, seed=3), SyntheticData(num_train=400, num_dev=100, num_test=100, label_noise=0.1, seed=3)
    assert a.splits == b.splits and a.fingerprint == b.fingerprint
    assert SyntheticData(num_train=400, seed=4).fingerprint != a.fingerprint
    assert sum(ex.label for ex in a.splits["dev"]) == 50
    assert not set(a.texts("dev")) & set(a.texts("train")) or len(set(a.texts("dev")) & set(a.texts("train"))) < 5
    assert a.num_classes == 2


def oracle(text: str) -> int:
    """The grammar's rule, written independently: the last clause decides; negation and
    'it is not true that' each flip."""
    from distilkit.data.synthetic import FILLERS, POSITIVE

    text = text.removesuffix(" .")
    for filler in FILLERS:
        text = text.removeprefix(filler + " ")
    flip = text.startswith("it is not true that ")
    clause = text.removeprefix("it is not true that ")
    if " but " in clause:
        clause = clause.split(" but ")[1]
    elif clause.startswith("although "):
        clause = clause.split(" , ")[1]
    elif " and " in clause:
        clause = clause.split(" and ")[0]
    words = clause.split()
    positive = any(w in POSITIVE for w in words)
    negated = any(w in ("not", "never", "hardly") for w in words)
    return int(positive ^ negated ^ flip)


def test_synthetic_labels_follow_the_grammar_and_need_word_order():
    data = SyntheticData(num_train=3000, label_noise=0.0, seed=0)
    assert all(oracle(ex.text) == ex.label for ex in data.splits["train"])
    # swapping the clauses of 'A but B' keeps the bag of words and flips the label: order matters
    contrasts = [ex for ex in data.splits["train"] if " but " in ex.text and not ex.text.startswith(("it is", "honestly"))]
    assert len(contrasts) > 300
    for ex in contrasts[:50]:
        a, b = ex.text.removesuffix(" .").split(" but ")
        swapped = f"{b} but {a} ."
        assert sorted(swapped.split()) == sorted(ex.text.split()) and oracle(swapped) != ex.label
    noisy = SyntheticData(num_train=3000, label_noise=0.1, seed=0)
    wrong = sum(oracle(ex.text) != ex.label for ex in noisy.splits["train"]) / 3000
    assert 0.07 < wrong < 0.13
    assert all(oracle(ex.text) == ex.label for ex in noisy.splits["dev"])


def test_text_lines_reads_and_tokenizes(text_lines_dir):
    data = TextLinesData(path=str(text_lines_dir), max_length=12, batch_size=8)
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 60, "dev": 30, "test": 30}
    assert data.num_classes == 3
    data.tokenize(train_wordpiece(data.texts("train"), 100))
    assert data.inputs("train")["input_ids"].shape == (60, 12)  # fixed-shape view: every row padded to max_length
    batches = list(data.train_dataloader())
    assert all(set(b) == {"input_ids", "attention_mask", "labels"} for b in batches)
    assert sorted(len(b["labels"]) for b in batches) == [4] + [8] * 7


def test_holdout_moves_a_fixed_draw_of_training_rows_into_its_own_split_that_validation_runs_on(text_lines_dir):
    full = TextLinesData(path=str(text_lines_dir), max_length=12, batch_size=8)
    held = TextLinesData(path=str(text_lines_dir), max_length=12, batch_size=8, holdout=15)
    assert {k: len(v) for k, v in held.splits.items()} == {"train": 45, "dev": 30, "test": 30, "holdout": 15}
    assert held.splits["dev"] == full.splits["dev"] and held.splits["test"] == full.splits["test"]
    # a partition of the training rows, each part in the file's order
    order = {ex: i for i, ex in enumerate(full.splits["train"])}
    assert sorted(held.splits["train"] + held.splits["holdout"], key=order.get) == full.splits["train"]
    for part in ("train", "holdout"):
        assert [order[ex] for ex in held.splits[part]] == sorted(order[ex] for ex in held.splits[part])
    assert held.splits["holdout"] == TextLinesData(path=str(text_lines_dir), holdout=15).splits["holdout"]  # the same draw every time
    assert held.fingerprint != full.fingerprint
    assert (held.split_names, held.eval_splits, held.select_split) == (("train", "dev", "test", "holdout"), ("holdout", "dev", "test"), "holdout")
    assert (full.split_names, full.eval_splits, full.select_split) == (("train", "dev", "test"), ("dev", "test"), "dev")
    held.tokenize(train_wordpiece(held.texts("train"), 100))
    assert sum(len(b["labels"]) for b in held.val_dataloader()) == 15  # validation selects on the holdout rows
    assert torch.equal(torch.cat([b["labels"] for b in held.val_dataloader()]), torch.tensor([ex.label for ex in held.splits["holdout"]]))


@pytest.mark.parametrize("holdout,allowed", [(-1, ">= 0"), (1.5, ">= 0"), (True, ">= 0"), (60, "allowed 0..59")])
def test_bad_holdout_names_the_key(text_lines_dir, holdout, allowed):
    with pytest.raises(ConfigError) as err:
        TextLinesData(path=str(text_lines_dir), holdout=holdout).splits
    assert err.value.key == "holdout" and allowed in err.value.message


def tokenized(bucket_by_length: bool, n: int = 400, batch_size: int = 16) -> SyntheticData:
    data = SyntheticData(num_train=n, num_dev=40, num_test=40, max_length=24, batch_size=batch_size, bucket_by_length=bucket_by_length)
    data.tokenize(train_wordpiece(data.texts("train"), 150))
    return data


def row_index(data: SyntheticData) -> dict[tuple[int, ...], list[int]]:
    """Token ids of a row -> the rows (example indices) holding exactly those ids."""
    index: dict[tuple[int, ...], list[int]] = {}
    for i, ids in enumerate(data.encoded["train"]["input_ids"]):
        index.setdefault(tuple(ids), []).append(i)
    return index


@pytest.mark.parametrize("bucket_by_length", [False, True])
def test_training_batches_pad_to_their_longest_row_and_carry_each_rows_teacher_logits(bucket_by_length):
    data = tokenized(bucket_by_length)
    lengths = data.lengths("train")
    assert min(lengths) < max(lengths) <= 24  # rows of different lengths, so padding matters
    logits = torch.randn(len(lengths), 2)
    data.attach_teacher_logits(logits)
    index, labels = row_index(data), data.labels("train")
    torch.manual_seed(0)
    seen = []
    for batch in data.train_dataloader():
        mask = batch["attention_mask"]
        assert batch["input_ids"].shape == mask.shape and mask.shape[1] == int(mask.sum(1).max())  # longest row, no more
        assert torch.equal(batch["input_ids"][mask == 0], torch.full_like(batch["input_ids"][mask == 0], data.pad_id))
        for r in range(len(mask)):
            rows = index[tuple(batch["input_ids"][r, : int(mask[r].sum())].tolist())]
            assert any(torch.equal(batch["teacher_logits"][r], logits[i]) and batch["labels"][r] == labels[i] for i in rows)
            seen.append(rows[0])
    assert len(seen) == len(lengths) and len(data.train_dataloader()) == -(-len(lengths) // 16)


def epoch_batches(data: SyntheticData, seed: int) -> list[list[int]]:
    torch.manual_seed(seed)
    return [b["input_ids"].tolist() for b in data.train_dataloader()]


def test_bucketing_pads_less_visits_every_row_once_and_repeats_with_the_seed():
    plain, bucketed = tokenized(False, n=1200), tokenized(True, n=1200)
    width = lambda data: sum(b["input_ids"].numel() for b in data.train_dataloader())  # noqa: E731
    assert width(bucketed) < 0.9 * width(plain)
    torch.manual_seed(1)
    unpadded = lambda rows: sorted(tuple(t for t in r if t != bucketed.pad_id) for r in rows)  # noqa: E731
    seen = unpadded(r for b in bucketed.train_dataloader() for r in b["input_ids"].tolist())
    assert seen == unpadded(bucketed.inputs("train")["input_ids"].tolist())  # every row once
    assert epoch_batches(bucketed, 3) == epoch_batches(bucketed, 3) != epoch_batches(bucketed, 4)
    assert epoch_batches(plain, 3) == epoch_batches(plain, 3) != epoch_batches(plain, 4)


def test_batches_in_row_order_padded_per_batch():
    data = tokenized(True)
    batches = list(data.batches("dev", batch_size=16))
    full = data.inputs("dev")
    assert torch.equal(torch.cat([b["attention_mask"].sum(1) for b in batches]), full["attention_mask"].sum(1))
    for start, b in zip(range(0, 40, 16), batches):
        width = b["input_ids"].shape[1]
        assert width == int(b["attention_mask"].sum(1).max())
        assert torch.equal(b["input_ids"], full["input_ids"][start : start + 16, :width])


def test_malformed_line_reports_file_and_line(text_lines_dir):
    (text_lines_dir / "test.txt").write_text("1 fine\n0 also fine\nnolabel here\n")
    with pytest.raises(ConfigError) as err:
        TextLinesData(path=str(text_lines_dir)).splits
    assert err.value.key == "path" and "test.txt:3:" in err.value.message


def test_missing_path():
    with pytest.raises(ConfigError, match="missing"):
        TextLinesData(path="/no/such/dir").splits


@needs_shared_sst2
def test_sst2_local_counts():
    data = SST2Data(path=str(SST2))
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 6920, "dev": 872, "test": 1821}
    assert data.num_classes == 2
    assert sum(ex.label for ex in data.splits["dev"]) == 444


def test_sst2_hub_offline_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(ConfigError) as err:
        SST2Data(hub_name="nyu-mll/glue-not-cached-here").splits
    assert err.value.key == "data.hub_name" and "data.path=DIR" in err.value.message and "\n" not in str(err.value)


def latin1_dir(tmp_path):
    for split in ("train", "dev", "test"):
        (tmp_path / f"{split}.txt").write_bytes("1 a fine film\n0 un caf\u00e9 tr\u00e8s ennuyeux\n".encode("latin-1"))
    return tmp_path


def test_undecodable_line_names_file_line_and_the_encoding_key(tmp_path):
    with pytest.raises(ConfigError) as err, config_group("data"):
        TextLinesData(path=str(latin1_dir(tmp_path))).splits
    message = str(err.value)
    assert err.value.key == "data.encoding" and "\n" not in message
    assert f"{tmp_path / 'train.txt'}:2:" in message and "not valid utf-8" in message and "data.encoding=latin-1" in message


def test_encoding_latin1_loads(tmp_path):
    data = TextLinesData(path=str(latin1_dir(tmp_path)), encoding="latin-1")
    assert data.splits["dev"][1].text == "un caf\u00e9 tr\u00e8s ennuyeux"


def test_unknown_encoding_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not a known text encoding") as err:
        TextLinesData(path=str(latin1_dir(tmp_path)), encoding="latin-42").splits
    assert err.value.key == "encoding"
