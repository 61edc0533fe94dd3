"""Batches padded to their longest member (as Hugging Face's ``DataCollatorWithPadding`` does), and
batches of similar lengths for training (``bucket_by_length``).

One way to batch for everything that runs a model over a split: training and validation loaders
(:class:`Collate`), the teacher-logit pass and evaluation (:func:`batches_of`, used by
``predict_logits``), and anything that must feed torch and onnxruntime the very same batches.
A BERT-style model masks padded positions, so a row's logits do not depend on how much padding it gets.
"""

from __future__ import annotations

from typing import Iterator, Mapping, Sequence

import torch
from torch.utils.data import BatchSampler, Sampler

MODEL_INPUTS = ("input_ids", "attention_mask")


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int, width: int | None = None) -> dict[str, torch.Tensor]:
    """``input_ids`` and ``attention_mask`` ``[len(sequences), width]``, right-padded with ``pad_id``;
    ``width`` defaults to the longest sequence."""
    width = width or max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        input_ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        attention_mask[row, : len(seq)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def trim_padding(batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model inputs of ``batch`` without the trailing columns no row attends to."""
    used = batch["attention_mask"].any(dim=0).nonzero()
    width = int(used.max()) + 1 if len(used) else 1
    return {k: batch[k][:, :width] for k in MODEL_INPUTS}


def batches_of(inputs: Mapping[str, torch.Tensor], batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
    """Consecutive rows of padded ``inputs`` (``input_ids``, ``attention_mask``), ``batch_size`` at a
    time and in row order, each batch padded only to its longest member. The shared batching of every
    inference pass (torch and onnxruntime alike)."""
    n = len(inputs["input_ids"])
    for start in range(0, n, batch_size):
        yield trim_padding({k: inputs[k][start : start + batch_size] for k in MODEL_INPUTS})


class Collate:
    """``collate_fn`` for rows ``{"input_ids": [int, ...], "labels": int, "teacher_logits"?: Tensor}``:
    model inputs padded to the batch's longest row; labels and teacher logits stacked row by row."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        batch = pad_batch([row["input_ids"] for row in rows], self.pad_id)
        batch["labels"] = torch.tensor([row["labels"] for row in rows])
        if "teacher_logits" in rows[0]:
            batch["teacher_logits"] = torch.stack([row["teacher_logits"] for row in rows])
        return batch


class LengthBucketBatchSampler(BatchSampler):
    """Batches of rows of similar length, in random order.

    The ``sampler``'s order (shuffled) is cut into pools of ``pool_batches`` batches; each pool is sorted
    by length (stable, so ties keep the shuffled order) and cut into batches; then the order of all
    batches is shuffled with torch's global generator, so a seeded run repeats. Less padding, same
    randomness of which rows meet (Hugging Face's ``group_by_length`` does the same). Subclasses
    ``BatchSampler`` with ``sampler`` first so Lightning can put a ``DistributedSampler`` in its place.
    """

    def __init__(self, sampler: Sampler[int], batch_size: int, drop_last: bool, lengths: Sequence[int], pool_batches: int = 50):
        super().__init__(sampler, batch_size, drop_last)
        self.lengths = lengths
        self.pool_batches = pool_batches

    def __iter__(self) -> Iterator[list[int]]:
        indices = list(self.sampler)
        pool = self.batch_size * self.pool_batches
        batches = []
        for start in range(0, len(indices), pool):
            chunk = sorted(indices[start : start + pool], key=self.lengths.__getitem__)
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        for i in torch.randperm(len(batches)).tolist():
            yield batches[i]

    def __len__(self) -> int:
        n, pool = len(self.sampler), self.batch_size * self.pool_batches
        full, rest = divmod(n, pool)
        per_pool = pool // self.batch_size
        if self.drop_last:
            return full * per_pool + rest // self.batch_size
        return full * per_pool + -(-rest // self.batch_size)
