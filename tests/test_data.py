"""Data sources: the generated task, LABEL-SENTENCE files, SST-2 from ../shared."""

from __future__ import annotations

import pytest

from distilkit.data import SST2Data, SyntheticData, TextLinesData
from distilkit.errors import ConfigError
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
    assert data.inputs("train")["input_ids"].shape == (60, 12)
    batch = next(iter(data.train_dataloader()))
    assert set(batch) == {"input_ids", "attention_mask", "labels"} and batch["input_ids"].shape == (8, 12)


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
