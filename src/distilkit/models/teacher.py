"""Teachers: a pretrained BERT-family model by hub name or directory, or a small BERT from scratch.

A teacher spec builds ``(model, tokenizer)``; fine-tuning on the task and caching are the
pipeline's (``distilkit.training.teacher_cache``). ``fingerprint`` is the spec's part of the cache key
(a local checkpoint by its content, a hub name by its commit: :mod:`distilkit.fingerprint`), and
``config`` the model's architecture, read without loading weights, so that the student, the loss and
the compressors can be checked before anything runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertForSequenceClassification

from distilkit.errors import check
from distilkit.fingerprint import FileHashes, model_source
from distilkit.hub import from_pretrained
from distilkit.models.tokenizer import train_wordpiece


@dataclass(frozen=True)
class Finetune:
    """How a teacher is fine-tuned on the task (skipped when ``max_epochs`` is 0)."""

    max_epochs: int = 3
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1

    def __post_init__(self):
        check(self.max_epochs >= 0, "finetune.max_epochs", f"must be >= 0, got {self.max_epochs}")
        check(self.lr > 0, "finetune.lr", f"must be > 0, got {self.lr}")


class PretrainedTeacher:
    """``AutoModelForSequenceClassification.from_pretrained(name_or_path)`` — a hub name or a local directory.

    ``finetuned=True`` says the checkpoint is already trained on this task (its head is kept and its
    label count must match the data); otherwise a fresh head is fine-tuned with ``finetune``.
    """

    def __init__(self, name_or_path: str, finetune: dict | None = None, finetuned: bool = False):
        self.name_or_path = name_or_path
        self.finetune = Finetune(**(finetune or {}))
        self.finetuned = finetuned

    def needs_finetune(self) -> bool:
        return not self.finetuned and self.finetune.max_epochs > 0

    def fingerprint(self, hashes: FileHashes) -> dict:
        """A local directory counts by its content (wherever it lies), a hub name by its commit."""
        source = model_source(self.name_or_path, hashes)
        return {"kind": "pretrained", "source": source, "finetuned": self.finetuned, "finetune": asdict(self.finetune)}

    def config(self, num_labels: int):
        """The checkpoint's config (no weights loaded) with ``num_labels``; its label count checked when ``finetuned``."""
        config = from_pretrained(AutoConfig, self.name_or_path, key="name_or_path")
        if self.finetuned:
            check(
                config.num_labels == num_labels,
                "name_or_path",
                f"teacher has {config.num_labels} labels but the data has {num_labels}; "
                "use a checkpoint with matching labels or finetuned=false",
            )
        else:
            config.num_labels = num_labels
        return config

    def build(self, train_texts: list[str], num_labels: int):
        """``(model, tokenizer)`` loaded by name or path; a new head when not ``finetuned``."""
        config = self.config(num_labels)
        tokenizer = from_pretrained(AutoTokenizer, self.name_or_path, key="name_or_path")
        kwargs = {} if self.finetuned else {"ignore_mismatched_sizes": True}
        model = from_pretrained(AutoModelForSequenceClassification, self.name_or_path, key="name_or_path", config=config, **kwargs)
        return model, tokenizer


class ScratchTeacher:
    """A small BERT from a config with a WordPiece tokenizer trained on the training split (offline)."""

    def __init__(
        self,
        num_layers: int = 4,
        hidden_size: int = 256,
        num_attention_heads: int = 4,
        intermediate_size: int = 1024,
        vocab_size: int = 4000,
        finetune: dict | None = None,
    ):
        check(hidden_size % num_attention_heads == 0, "hidden_size", "must be divisible by num_attention_heads")
        self.architecture = dict(
            num_hidden_layers=num_layers,
            hidden_size=hidden_size,
            num_attention_heads=num_attention_heads,
            intermediate_size=intermediate_size,
        )
        self.vocab_size = vocab_size
        self.finetune = Finetune(**(finetune or {}))

    def needs_finetune(self) -> bool:
        return self.finetune.max_epochs > 0

    def fingerprint(self, hashes: FileHashes) -> dict:
        return {"kind": "scratch", **self.architecture, "vocab_size": self.vocab_size, "finetune": asdict(self.finetune)}

    def config(self, num_labels: int, vocab_size: int | None = None) -> BertConfig:
        """The BERT config; the vocabulary is the trained tokenizer's (at most ``vocab_size`` tokens)."""
        return BertConfig(vocab_size=vocab_size or self.vocab_size, num_labels=num_labels, **self.architecture)

    def build(self, train_texts: list[str], num_labels: int):
        """``(model, tokenizer)``: WordPiece trained on ``train_texts``, BERT randomly initialized."""
        tokenizer = train_wordpiece(train_texts, self.vocab_size)
        return BertForSequenceClassification(self.config(num_labels, len(tokenizer))), tokenizer
