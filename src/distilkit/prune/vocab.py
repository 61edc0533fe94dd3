"""Vocabulary pruning (the ``vocab`` config group): keep the tokens the task's training text uses.

A small encoder's word-embedding table is most of its bytes (MiniLM: 30522 x 384 = 11.2 MB even in
int8), but a task uses a fraction of the vocabulary. ``vocab=train`` keeps the special tokens and
every token the teacher's tokenizer produces on the *training* split (dev and test text are unseen
when the vocabulary is chosen), optionally only the ``max_tokens`` most frequent of them, plus
optionally the ``extra_tokens`` first tokens of the tokenizer's own vocabulary (WordPiece and BPE
vocabularies number their tokens in the order they were learned: characters, then the most frequent
words; BERT's from id 1996 on are "the", "of", "and", ...), so that common words the training text
lacks keep their own rows instead of falling back to pieces, and remaps both sides in one step:

* the tokenizer: a WordPiece tokenizer with the kept tokens, renumbered in their old order (the
  ``tokenizers`` JSON with a new ``model.vocab``, special-token ids of the post-processor and the
  added tokens remapped); a word whose pieces were dropped falls back as WordPiece does (shorter
  pieces, or ``[UNK]`` when it can't be spelled);
* the student: its input-embedding rows gathered at the kept ids (``config.vocab_size`` and
  ``config.pad_token_id`` updated), so ``save_pretrained``/``from_pretrained`` round-trip.

Greedy longest-match WordPiece on a sub-vocabulary that contains every piece of a text's full
tokenization gives that same tokenization (a longer match would have been chosen before), so on the
training text (without ``max_tokens``) the pruned pair computes exactly what the unpruned pair
computes. The pipeline re-tokenizes every split with the pruned tokenizer: what trains, what is
measured and what is exported is the pruned tokenizer + model (``Run.__call__``). Why a group of
its own and not ``pruner=vocab``: the ``pruner`` group holds one option, and vocabulary pruning must
compose with every pruner (heads, ffn, width), every quantizer and every student.
"""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from collections.abc import Sequence

import torch
from tokenizers import Tokenizer
from torch import nn
from transformers import PreTrainedTokenizerFast

from distilkit.errors import ConfigError, is_int

SPECIAL_KEYS = ("pad_token", "unk_token", "cls_token", "sep_token", "mask_token")
PLACEHOLDER = re.compile(r"^[\[<]unused\d+[\]>]$", re.IGNORECASE)  # BERT's [unused0].. rows: never produced, never kept


class FullVocab:
    """``vocab=full``: the teacher's vocabulary, unchanged."""

    def check(self, model: nn.Module) -> None:
        """Nothing to check."""

    def apply(self, student: nn.Module, teacher: nn.Module, tokenizer, data):
        """``(tokenizer, teacher)`` unchanged."""
        return tokenizer, teacher


def _input_embedding(model: nn.Module) -> nn.Embedding:
    get = getattr(model, "get_input_embeddings", None)
    embedding = get() if callable(get) else None
    if not isinstance(embedding, nn.Embedding):
        raise ConfigError("vocab", f"prunes a model's input embeddings (get_input_embeddings); {type(model).__name__} has none: use vocab=full")
    return embedding


def kept_token_ids(tokenizer, texts: Sequence[str], max_tokens: int | None = None, extra_tokens: int = 0) -> list[int]:
    """Sorted ids of the special tokens and of the tokens ``tokenizer`` produces on ``texts`` (untruncated),
    only the ``max_tokens`` most frequent of the latter when set (ties: lower id first); then the first
    ``extra_tokens`` ids of the vocabulary (id order, ``[unusedN]`` placeholders skipped) not kept yet."""
    counts = Counter(i for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"] for i in ids)
    special = set(tokenizer.all_special_ids)
    used = sorted((i for i in counts if i not in special), key=lambda i: (-counts[i], i))
    if max_tokens is not None:
        used = used[: max(0, max_tokens - len(special))]
    kept = special | set(used)
    if extra_tokens:
        by_id = sorted((i, t) for t, i in tokenizer.get_vocab().items())
        extra = (i for i, t in by_id if i not in kept and not PLACEHOLDER.match(t))
        kept |= {i for _, i in zip(range(extra_tokens), extra)}
    return sorted(kept)


def pruned_tokenizer(tokenizer, kept: Sequence[int]) -> PreTrainedTokenizerFast:
    """A WordPiece tokenizer of the tokens ``kept`` (old ids), numbered 0.. in their old order."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    if spec["model"]["type"] != "WordPiece":
        raise ConfigError("vocab", f"prunes WordPiece tokenizers; the teacher's is {spec['model']['type']}: use vocab=full")
    old_vocab = spec["model"]["vocab"]
    by_id = {i: token for token, i in old_vocab.items()}
    new_id = {old: new for new, old in enumerate(kept)}
    spec["model"]["vocab"] = {by_id[old]: new for old, new in new_id.items()}
    for added in spec.get("added_tokens") or []:
        if added["id"] not in new_id:
            raise ConfigError("vocab", f"added token {added['content']!r} is not kept")
        added["id"] = new_id[added["id"]]
    post = spec.get("post_processor") or {}
    for special in (post.get("special_tokens") or {}).values():
        special["ids"] = [new_id[i] for i in special["ids"]]
    backend = Tokenizer.from_str(json.dumps(spec))
    specials = {key: getattr(tokenizer, key) for key in SPECIAL_KEYS if getattr(tokenizer, key, None) is not None}
    return PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=tokenizer.model_max_length, **specials)


@torch.no_grad()
def prune_embeddings(model: nn.Module, kept: Sequence[int], pad_token_id: int | None = None) -> nn.Module:
    """Keep only the input-embedding rows ``kept`` (in that order), in place; config updated."""
    old = _input_embedding(model)
    index = torch.as_tensor(list(kept), dtype=torch.long, device=old.weight.device)
    new = nn.Embedding(len(index), old.embedding_dim, padding_idx=pad_token_id, device=old.weight.device, dtype=old.weight.dtype)
    new.weight.copy_(old.weight[index])
    model.set_input_embeddings(new)
    model.config.vocab_size = len(index)
    model.config.pad_token_id = pad_token_id
    return model


class TrainVocab(FullVocab):
    """``vocab=train``: the specials and the tokens of the training text (``max_tokens``: at most that many in all),
    and the ``extra_tokens`` first tokens of the vocabulary besides."""

    def __init__(self, max_tokens: int | None = None, extra_tokens: int = 0):
        if max_tokens is not None and (not is_int(max_tokens) or max_tokens < 8):
            raise ConfigError("max_tokens", f"must be null (every training token) or an integer >= 8, got {max_tokens!r}")
        if not is_int(extra_tokens) or extra_tokens < 0:
            raise ConfigError("extra_tokens", f"must be an integer >= 0 (0: none), got {extra_tokens!r}")
        self.max_tokens, self.extra_tokens = max_tokens, extra_tokens
        self.report: dict[str, float] = {}

    def check(self, model: nn.Module) -> None:
        _input_embedding(model)

    def prune(self, model: nn.Module, tokenizer, texts: Sequence[str]):
        """``(pruned tokenizer, kept old ids)``; ``model``'s embeddings pruned in place."""
        kept = kept_token_ids(tokenizer, texts, self.max_tokens, self.extra_tokens)
        new = pruned_tokenizer(tokenizer, kept)
        prune_embeddings(model, kept, new.pad_token_id)
        return new, kept

    def apply(self, student: nn.Module, teacher: nn.Module, tokenizer, data):
        """Prune ``student`` and the tokenizer on the training text, re-tokenize ``data`` with the new
        tokenizer; returns ``(tokenizer, teacher for training)``: a copy of the teacher with the same rows
        kept, for losses that run the teacher online on the student's batches."""
        before = _input_embedding(student).weight
        rows_before, mb_before = before.shape[0], before.numel() * before.element_size() / 2**20
        new, kept = self.prune(student, tokenizer, data.texts("train"))
        online = prune_embeddings(copy.deepcopy(teacher), kept, new.pad_token_id)
        data.tokenize(new)
        after = _input_embedding(student).weight
        self.report = {"vocab/tokens_before": rows_before, "vocab/tokens_kept": len(kept), "vocab/embedding_mb_before": mb_before,
                       "vocab/embedding_mb_after": after.numel() * after.element_size() / 2**20}
        return new, online
