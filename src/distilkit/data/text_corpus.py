"""Plain text for causal-LM distillation: any text file or directory of text files, split and packed.

Split rule (deterministic, stated): the files (a directory: every non-hidden file under it, by sorted
relative path) are joined with a newline into one text; the first ``1 - dev_fraction - test_fraction``
of its characters are ``train``, the next ``dev_fraction`` ``dev``, the rest ``test``, each cut moved
forward to the next line start (so no line is split between two splits). Each split is tokenized by
the teacher's tokenizer (no special tokens) and packed into consecutive blocks of ``max_length``
tokens; a last, shorter block (>= 2 tokens) is kept and padded in its batch. ``max_train_blocks``
and ``max_eval_blocks`` keep only the first N blocks of the training split and of dev and test (null: all).

With ``path: null`` the corpus is embedded: ``num_lines`` lines generated from the synthetic
review grammar (:mod:`distilkit.data.synthetic`), deterministic by ``seed``; a few KB, offline.
"""

from __future__ import annotations

import hashlib
from functools import cached_property
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from distilkit.data.batching import batches_of, pad_batch
from distilkit.data.module import SPLITS, Columns
from distilkit.data.replay import EpochOrder, ReplayableLoader
from distilkit.data.text_lines import read_text
from distilkit.errors import ConfigError, check

TOKENIZE_CHUNK_LINES = 2000  # lines per tokenizer call (a 1 MB text in one call is slow and warns)


def split_text(text: str, dev_fraction: float, test_fraction: float) -> dict[str, str]:
    """``{"train", "dev", "test"}`` by the module's rule: character fractions, cuts moved to the next line break."""

    def cut(fraction: float) -> int:
        at = int(len(text) * fraction)
        if at == 0 or text[at - 1] == "\n":  # already at a line start
            return at
        newline = text.find("\n", at)
        return len(text) if newline < 0 else newline + 1

    dev_start = cut(1 - dev_fraction - test_fraction)
    test_start = max(dev_start, cut(1 - test_fraction))
    return {"train": text[:dev_start], "dev": text[dev_start:test_start], "test": text[test_start:]}


class CollateBlocks:
    """Blocks padded to the batch's longest; stored teacher outputs (fixed shape per block) stacked."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        batch = pad_batch([row["input_ids"] for row in rows], self.pad_id)
        for key in rows[0]:
            if key.startswith("teacher_"):
                batch[key] = torch.stack([row[key] for row in rows])[:, : batch["input_ids"].shape[1] - 1]
        return batch


class TextCorpusData(L.LightningDataModule):
    """A text file or a directory of text files (``path``), or the embedded corpus (``path: null``)."""

    tasks = ("causal_lm",)

    def __init__(
        self,
        path: str | None = None,
        encoding: str = "utf-8",
        dev_fraction: float = 0.05,
        test_fraction: float = 0.05,
        max_length: int = 64,
        batch_size: int = 16,
        max_train_blocks: int | None = None,
        max_eval_blocks: int | None = None,
        num_lines: int = 600,
        seed: int = 0,
        num_workers: int = 0,
    ):
        super().__init__()
        check(max_length >= 2, "max_length", f"must be >= 2 (a block predicts its next tokens), got {max_length}")
        check(batch_size > 0, "batch_size", f"must be > 0, got {batch_size}")
        check(0 < dev_fraction and 0 < test_fraction and dev_fraction + test_fraction < 1, "dev_fraction",
              f"dev_fraction and test_fraction must be > 0 with a sum < 1, got {dev_fraction} and {test_fraction}")
        for key, value in (("max_train_blocks", max_train_blocks), ("max_eval_blocks", max_eval_blocks)):
            check(value is None or value >= 1, key, f"must be >= 1 or null (all), got {value}")
        check(num_lines >= 20, "num_lines", f"must be >= 20, got {num_lines}")
        self.path, self.encoding = path, encoding
        self.dev_fraction, self.test_fraction = dev_fraction, test_fraction
        self.max_length, self.batch_size = max_length, batch_size
        self.max_train_blocks, self.max_eval_blocks = max_train_blocks, max_eval_blocks
        self.num_lines, self.seed, self.num_workers = num_lines, seed, num_workers
        self.train_order = EpochOrder()  # where each training epoch's order came from (resume)
        self.pad_id = 0
        self.encoded: dict[str, dict] = {}
        self.tokenizer = None

    @property
    def batching(self) -> dict:
        return {"batch_size": self.batch_size, "max_train_blocks": self.max_train_blocks}

    def _files(self) -> list[Path]:
        root = Path(self.path)
        if root.is_file():
            return [root]
        if not root.is_dir():
            raise ConfigError("path", f"{self.path!r} is neither a text file nor a directory")
        return sorted(p for p in root.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))

    def _text(self) -> str:
        if self.path is None:
            from distilkit.data.synthetic import generate

            return "\n".join(ex.text for ex in generate(self.num_lines, seed=self.seed)) + "\n"
        files = self._files()
        check(bool(files), "path", f"{self.path!r} holds no files")
        return "\n".join(read_text(f, self.encoding) for f in files)

    @cached_property
    def splits(self) -> dict[str, str]:
        text = self._text()
        check(bool(text.strip()), "path", f"the corpus {self.path!r} is empty: give a text file or a directory with text")
        splits = split_text(text, self.dev_fraction, self.test_fraction)
        for name in SPLITS:
            check(bool(splits[name].strip()), "path",
                  f"split '{name}' is empty: the corpus ({len(text)} characters, {text.count(chr(10))} lines) is too short "
                  "for the split rule (cuts at line breaks); give more text")
        return splits

    def texts(self, split: str) -> list[str]:
        """The split's lines (what a tokenizer trained from scratch learns from)."""
        return self.splits[split].splitlines()

    @cached_property
    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for name in SPLITS:
            digest.update(f"{name}\t{self.splits[name]}\n".encode())
        return digest.hexdigest()[:16]

    def _token_ids(self, text: str, tokenizer) -> list[int]:
        lines = text.splitlines(keepends=True)
        ids: list[int] = []
        for start in range(0, len(lines), TOKENIZE_CHUNK_LINES):
            ids += tokenizer("".join(lines[start : start + TOKENIZE_CHUNK_LINES]), add_special_tokens=False)["input_ids"]
        return ids

    def tokenize(self, tokenizer) -> None:
        """Each split as blocks of ``max_length`` token ids (the last may be shorter, >= 2 tokens)."""
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = pad if pad is not None else 0
        self.tokenizer = tokenizer  # decodes teacher-generated blocks (sequence-level KD) for the store
        for name in SPLITS:
            ids = self._token_ids(self.splits[name], tokenizer)
            blocks = [ids[i : i + self.max_length] for i in range(0, len(ids), self.max_length)]
            blocks = [b for b in blocks if len(b) >= 2][: self.max_train_blocks if name == "train" else self.max_eval_blocks]
            check(bool(blocks), "path", f"split '{name}' has fewer than 2 tokens: give more text")
            self.encoded[name] = {"input_ids": blocks}

    def replace_train(self, blocks: torch.Tensor) -> None:
        """Train on ``blocks`` ``[N, <= max_length]`` instead of the corpus's training blocks (sequence-level KD)."""
        assert blocks.shape[1] <= self.max_length, (blocks.shape, self.max_length)
        self.encoded["train"] = {"input_ids": blocks.tolist()}

    def inputs(self, split: str) -> dict[str, torch.Tensor]:
        """``input_ids``/``attention_mask`` ``[blocks, max_length]`` (the split's content, for cache keys)."""
        return pad_batch(self.encoded[split]["input_ids"], self.pad_id, width=self.max_length)

    def batches(self, split: str, batch_size: int | None = None):
        return batches_of(self.inputs(split), batch_size or self.batch_size)

    def num_tokens(self, split: str) -> int:
        """Tokens with a next-token target in the split (each block's first token has none as a target)."""
        return sum(len(b) - 1 for b in self.encoded[split]["input_ids"])

    def attach_teacher_outputs(self, outputs: dict[str, torch.Tensor]) -> None:
        """Stored teacher outputs of the training split (``[blocks, max_length - 1, ...]`` each); batches carry them."""
        n = len(self.encoded["train"]["input_ids"])
        for key, value in outputs.items():
            assert len(value) == n, (key, value.shape, n)
            self.encoded["train"][f"teacher_{key}"] = value

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(Columns(self.encoded[split]), batch_size=self.batch_size, shuffle=shuffle,
                          collate_fn=CollateBlocks(self.pad_id), num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        """Shuffled training blocks, replayable from a checkpoint (``resume``: the interrupted epoch's order again)."""
        return ReplayableLoader(Columns(self.encoded["train"]), batch_size=self.batch_size, shuffle=True,
                                collate_fn=CollateBlocks(self.pad_id), num_workers=self.num_workers, order=self.train_order)

    def val_dataloader(self) -> DataLoader:
        return self._loader("dev", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
