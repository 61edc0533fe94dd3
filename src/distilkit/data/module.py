"""The DataModule every data source shares: raw splits -> teacher tokenizer -> batches padded per batch.

A source subclass only implements :meth:`load_splits`. Tokenization follows the teacher's tokenizer,
so it happens after the teacher is known (:meth:`tokenize`); rows are kept unpadded (truncated to
``max_length``) and every batch is padded to its longest member (:mod:`distilkit.data.batching`);
with ``bucket_by_length`` training batches hold rows of similar length. Teacher logits for the
training split, computed once by the soft-label store, are attached with :meth:`attach_teacher_logits`
and then ride along, row by row, in every training batch as ``teacher_logits``.

``holdout``: that many training rows, drawn with a fixed seed (the same rows for every run seed), become
a fourth split, ``holdout``, that nothing trains on. It is the split that selects: validation
(``val/acc``, which the teacher's fine-tune and a sweep's pruner watch) runs on it, and a sweep can rank
trials by ``deploy/onnx_holdout_acc``; dev and test are then measured only, so their accuracy is not
raised by the choice of model.
"""

from __future__ import annotations

import hashlib
import random
from functools import cached_property
from typing import Iterator, NamedTuple

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from distilkit.data.batching import Collate, LengthBucketBatchSampler, batches_of, pad_batch
from distilkit.data.replay import EpochOrder, ReplayableLoader
from distilkit.errors import ConfigError, check

SPLITS = ("train", "dev", "test")
HOLDOUT = "holdout"
HOLDOUT_SEED = 0  # one draw for every run seed: runs that differ only in seed are selected on the same rows


class Example(NamedTuple):
    text: str
    label: int


class Columns(Dataset):
    """Row i of a tokenized split stored as columns: e.g. its token ids (unpadded), label and, once
    attached, the teacher's stored outputs. Shared by every task's data module."""

    def __init__(self, columns: dict):
        self.columns = columns

    def __len__(self) -> int:
        return len(self.columns["input_ids"])

    def __getitem__(self, i: int) -> dict:
        return {k: v[i] for k, v in self.columns.items()}


class TextClassificationData(L.LightningDataModule):
    """Base DataModule. Subclasses return ``{"train"|"dev"|"test": [Example, ...]}`` from load_splits."""

    def __init__(self, max_length: int = 64, batch_size: int = 32, num_workers: int = 0, bucket_by_length: bool = False, holdout: int = 0):
        super().__init__()
        check(max_length > 0, "max_length", f"must be > 0, got {max_length}")
        check(batch_size > 0, "batch_size", f"must be > 0, got {batch_size}")
        check(isinstance(holdout, int) and not isinstance(holdout, bool) and holdout >= 0, "holdout",
              f"must be a number of training rows >= 0 (0: no holdout split), got {holdout!r}")
        self.holdout = holdout
        self.max_length = max_length
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.bucket_by_length = bucket_by_length
        self.pad_id = 0
        self.encoded: dict[str, dict] = {}
        self.extra_train: list[str] = []  # augmented training texts (distilkit.data.augment), labelled by the teacher
        self._tokenizer = None
        self.train_order = EpochOrder()  # where each training epoch's order came from (resume)

    @property
    def batching(self) -> dict:
        """What decides the training batches (part of a fine-tuned teacher's identity)."""
        return {"batch_size": self.batch_size, "bucket_by_length": self.bucket_by_length}

    def load_splits(self) -> dict[str, list[Example]]:
        raise NotImplementedError

    @cached_property
    def splits(self) -> dict[str, list[Example]]:
        splits = self.load_splits()
        for name in SPLITS:
            check(bool(splits.get(name)), "path", f"split '{name}' is empty or missing")
        labels = sorted({ex.label for split in splits.values() for ex in split})
        if labels != list(range(len(labels))) or len(labels) < 2:
            raise ConfigError("path", f"labels must be 0..K-1 with K >= 2, found {labels[:10]}")
        return self.hold_out(splits) if self.holdout else splits

    def hold_out(self, splits: dict[str, list[Example]]) -> dict[str, list[Example]]:
        """``holdout`` training rows moved to split ``holdout``; both keep the file's row order."""
        train = splits["train"]
        check(self.holdout < len(train), "holdout", f"is {self.holdout} but the training split has {len(train)} rows; allowed 0..{len(train) - 1}")
        held = set(random.Random(HOLDOUT_SEED).sample(range(len(train)), self.holdout))
        return {**splits, "train": [ex for i, ex in enumerate(train) if i not in held],
                HOLDOUT: [ex for i, ex in enumerate(train) if i in held]}

    @property
    def split_names(self) -> tuple[str, ...]:
        """Every split: train, dev, test, and ``holdout`` when rows are held out."""
        return (*SPLITS, HOLDOUT) if self.holdout else SPLITS

    @property
    def eval_splits(self) -> tuple[str, ...]:
        """The splits a trained model is measured on: the selection split first, then dev and test."""
        return (HOLDOUT, "dev", "test") if self.holdout else ("dev", "test")

    @property
    def select_split(self) -> str:
        """The split that validation runs on (``val/acc``): ``holdout`` when rows are held out, else dev."""
        return HOLDOUT if self.holdout else "dev"

    @property
    def num_classes(self) -> int:
        return 1 + max(ex.label for split in self.splits.values() for ex in split)

    def texts(self, split: str) -> list[str]:
        return [ex.text for ex in self.splits[split]]

    @cached_property
    def fingerprint(self) -> str:
        """Content hash of every split (texts and labels): the data's identity in cache keys."""
        digest = hashlib.sha256()
        for name in self.split_names:
            for ex in self.splits[name]:
                digest.update(f"{name}\t{ex.label}\t{ex.text}\n".encode())
        return digest.hexdigest()[:16]

    def tokenize(self, tokenizer) -> None:
        """Encode every split with ``tokenizer``, truncated to ``max_length``, unpadded (batches pad); the
        training split's augmented texts follow its own rows, labelled -1 until the teacher's logits come."""
        if tokenizer.pad_token_id is not None:
            self.pad_id = tokenizer.pad_token_id
        self._tokenizer = tokenizer
        for name in self.split_names:
            self._encode(name)

    def _encode(self, name: str) -> None:
        extra = self.extra_train if name == "train" else []
        enc = self._tokenizer(self.texts(name) + extra, truncation=True, max_length=self.max_length)
        self.encoded[name] = {
            "input_ids": enc["input_ids"],
            "labels": torch.tensor([ex.label for ex in self.splits[name]] + [-1] * len(extra)),
        }

    def add_train_texts(self, texts: list[str]) -> None:
        """Add unlabelled training texts (augmentation); they get the teacher's argmax as label when its
        logits are attached. Re-encodes the training split if it was tokenized already."""
        self.extra_train = list(texts)
        if self._tokenizer is not None:
            self._encode("train")

    def lengths(self, split: str) -> list[int]:
        """Tokens per row of a tokenized split."""
        return [len(ids) for ids in self.encoded[split]["input_ids"]]

    def inputs(self, split: str) -> dict[str, torch.Tensor]:
        """The model inputs of a tokenized split (``input_ids``, ``attention_mask``), every row padded to
        ``max_length``: the split's content (cache keys) and fixed-shape inputs. To run a model over a
        split use :meth:`batches`."""
        return pad_batch(self.encoded[split]["input_ids"], self.pad_id, width=self.max_length)

    def batches(self, split: str, batch_size: int = 64) -> Iterator[dict[str, torch.Tensor]]:
        """Model inputs of a split, ``batch_size`` rows at a time in row order, each padded to its longest row."""
        return batches_of(self.inputs(split), batch_size)

    def labels(self, split: str) -> torch.Tensor:
        return self.encoded[split]["labels"]

    def attach_teacher_logits(self, logits: torch.Tensor) -> None:
        """Teacher logits for the training split, row i for example i; batches then carry them. Augmented
        rows take the teacher's argmax as their label."""
        train = self.encoded["train"]
        assert logits.shape == (len(train["input_ids"]), self.num_classes), logits.shape
        own = len(self.splits["train"])
        train["labels"] = torch.cat([train["labels"][:own], logits[own:].argmax(dim=-1)])
        train["teacher_logits"] = logits

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        rows, collate = Columns(self.encoded[split]), Collate(self.pad_id)
        if shuffle and self.bucket_by_length:
            sampler = LengthBucketBatchSampler(RandomSampler(rows), self.batch_size, False, self.lengths(split))
            return ReplayableLoader(rows, batch_sampler=sampler, collate_fn=collate, num_workers=self.num_workers, order=self.train_order)
        if shuffle:  # replayable: a fit resumed mid-epoch draws the same order and skips what it trained (data/replay.py)
            return ReplayableLoader(rows, batch_size=self.batch_size, shuffle=True, collate_fn=collate, num_workers=self.num_workers, order=self.train_order)
        return DataLoader(rows, batch_size=self.batch_size, shuffle=shuffle, collate_fn=collate, num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.select_split, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
