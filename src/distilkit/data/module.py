"""The DataModule every data source shares: raw splits -> teacher tokenizer -> fixed-length tensors.

A source subclass only implements :meth:`load_splits`. Tokenization follows the teacher's tokenizer,
so it happens after the teacher is known (:meth:`tokenize`). Teacher logits for the training split,
computed once by the soft-label store, are attached with :meth:`attach_teacher_logits` and then ride
along in every training batch as ``teacher_logits``.
"""

from __future__ import annotations

import hashlib
from functools import cached_property
from typing import NamedTuple

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from distilkit.errors import ConfigError, check

SPLITS = ("train", "dev", "test")


class Example(NamedTuple):
    text: str
    label: int


class _TensorDict(Dataset):
    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.tensors.items()}


class TextClassificationData(L.LightningDataModule):
    """Base DataModule. Subclasses return ``{"train"|"dev"|"test": [Example, ...]}`` from load_splits."""

    def __init__(self, max_length: int = 64, batch_size: int = 32, num_workers: int = 0):
        super().__init__()
        check(max_length > 0, "max_length", f"must be > 0, got {max_length}")
        check(batch_size > 0, "batch_size", f"must be > 0, got {batch_size}")
        self.max_length = max_length
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.encoded: dict[str, dict[str, torch.Tensor]] = {}

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
        return splits

    @property
    def num_classes(self) -> int:
        return 1 + max(ex.label for split in self.splits.values() for ex in split)

    def texts(self, split: str) -> list[str]:
        return [ex.text for ex in self.splits[split]]

    @cached_property
    def fingerprint(self) -> str:
        """Content hash of every split (texts and labels): the data's identity in cache keys."""
        digest = hashlib.sha256()
        for name in SPLITS:
            for ex in self.splits[name]:
                digest.update(f"{name}\t{ex.label}\t{ex.text}\n".encode())
        return digest.hexdigest()[:16]

    def tokenize(self, tokenizer) -> None:
        """Encode every split with ``tokenizer``, padded/truncated to ``max_length``."""
        for name in SPLITS:
            enc = tokenizer(
                self.texts(name),
                padding="max_length",
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            self.encoded[name] = {
                "input_ids": enc["input_ids"],
                "attention_mask": enc["attention_mask"],
                "labels": torch.tensor([ex.label for ex in self.splits[name]]),
            }

    def inputs(self, split: str) -> dict[str, torch.Tensor]:
        """The model inputs of a tokenized split (``input_ids``, ``attention_mask``)."""
        enc = self.encoded[split]
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def labels(self, split: str) -> torch.Tensor:
        return self.encoded[split]["labels"]

    def attach_teacher_logits(self, logits: torch.Tensor) -> None:
        """Teacher logits for the training split, row i for example i; batches then carry them."""
        assert logits.shape == (len(self.splits["train"]), self.num_classes), logits.shape
        self.encoded["train"]["teacher_logits"] = logits

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            _TensorDict(self.encoded[split]),
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("dev", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
