"""Training-text augmentation for distillation (``augment`` config group): more inputs for the teacher to label.

A small student learns the teacher's function from the inputs it is shown; on a few thousand
sentences it sees too few of them. TinyBERT (Jiao et al., 2020) distils on an augmented training set
labelled by the teacher alone; SST-2's own GLUE release trains on every phrase of the parse trees
(67k) rather than the 6.9k sentences. :class:`SpanAugment` does the same with no extra model: random
contiguous word spans of each training sentence, added to the training split only (dev and test are
never touched), labelled by the teacher. :class:`CorpusAugment` adds unlabelled text from a file (text a user
has, or sentences written by a small causal LM: ``bench/generate_transfer_text.py``). :class:`WordReplaceAugment` is TinyBERT's own augmentation:
copies of each sentence with some words replaced by their nearest neighbours in the teacher's
word-embedding space (TinyBERT takes them from BERT's masked-LM predictions and GloVe; the teacher's
own input embeddings need no extra model). An augmented row's label is the teacher's argmax, set when
the stored teacher logits are attached (:meth:`TextClassificationData.attach_teacher_logits`), so it
needs ``task.store_logits=true``. The teacher is fine-tuned, and cached, on the original rows only.
"""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path

import torch

from distilkit.data.text_lines import read_text
from distilkit.errors import check
from distilkit.tasks.base import serves

log = logging.getLogger(__name__)


class NoAugment:
    """``augment=none``: the training split as it is."""

    def check(self, task, data) -> None:
        pass

    def apply(self, data, teacher=None, tokenizer=None) -> None:
        pass


def check_labelled_text(augment, task, data, option: str) -> None:
    """Before any run: a classification task whose teacher logits are stored, over data that takes added text."""
    check(serves(augment, task.name), "augment", f"{option} augments classification text, not task={task.name}: use augment=none")
    check(task.store_logits, "augment", f"{option} labels its rows with the stored teacher logits: set task.store_logits=true or use augment=none")
    check(callable(getattr(data, "add_train_texts", None)), "augment",
          f"{option} needs text-classification data; {type(data).__name__} has none: use augment=none")


class SpanAugment:
    """``augment=spans``: ``copies`` random contiguous spans of ``min_words`` or more words (fewer than the
    sentence's own) drawn from each training sentence, duplicates within a sentence dropped; seeded."""

    def __init__(self, copies: int = 4, min_words: int = 2, seed: int = 0):
        check(isinstance(copies, int) and copies >= 1, "copies", f"must be an integer >= 1, got {copies!r}")
        check(isinstance(min_words, int) and min_words >= 1, "min_words", f"must be an integer >= 1, got {min_words!r}")
        self.copies, self.min_words, self.seed = copies, min_words, seed

    def check(self, task, data) -> None:
        check_labelled_text(self, task, data, "spans")

    def spans(self, texts: list[str]) -> list[str]:
        """The augmented texts, sentence by sentence in order."""
        rng = random.Random(self.seed)
        out = []
        for text in texts:
            words = text.split()
            if len(words) <= self.min_words:
                continue
            seen = {text}
            for _ in range(self.copies):
                length = rng.randint(self.min_words, len(words) - 1)
                start = rng.randint(0, len(words) - length)
                span = " ".join(words[start : start + length])
                if span not in seen:
                    seen.add(span)
                    out.append(span)
        return out

    def apply(self, data, teacher=None, tokenizer=None) -> None:
        own = data.texts("train")
        added = self.spans(own)
        data.add_train_texts(added)
        self.report = {"augment/train_rows_own": len(own), "augment/train_rows_added": len(added)}
        log.info("augment: %d spans added to %d training sentences (labelled by the teacher)", len(added), len(own))


WORD = re.compile(r"^[a-z]+$")  # candidate replacements: plain lowercase words, no pieces, punctuation or placeholders


class WordReplaceAugment:
    """``augment=replace``: ``copies`` variants of each training sentence in which every plain word (a-z) that
    is one token of the teacher's vocabulary is replaced, with probability ``p``, by one of its ``neighbours``
    nearest words by cosine similarity of the teacher's input embeddings (``candidates``: ``train``, the
    words of the training text, so the replacements stay in a ``vocab=train`` vocabulary; ``all``: the
    whole vocabulary). Variants equal to their sentence or repeated are dropped; seeded."""

    def __init__(self, copies: int = 4, p: float = 0.4, neighbours: int = 15, candidates: str = "train", seed: int = 0):
        check(isinstance(copies, int) and copies >= 1, "copies", f"must be an integer >= 1, got {copies!r}")
        check(isinstance(p, (int, float)) and not isinstance(p, bool) and 0 < p <= 1, "p", f"must be in (0, 1], got {p!r}")
        check(isinstance(neighbours, int) and neighbours >= 1, "neighbours", f"must be an integer >= 1, got {neighbours!r}")
        check(candidates in ("train", "all"), "candidates", f"must be train or all, got {candidates!r}")
        self.copies, self.p, self.neighbours, self.candidates, self.seed = copies, p, neighbours, candidates, seed

    def check(self, task, data) -> None:
        check_labelled_text(self, task, data, "replace")

    @torch.no_grad()
    def neighbour_table(self, embeddings: torch.Tensor, tokenizer, texts: list[str]) -> dict[str, list[str]]:
        """word -> its ``neighbours`` nearest candidate words, for the words of ``texts`` that are one token."""
        vocab = tokenizer.get_vocab()
        words = sorted({w for t in texts for w in t.split()} & vocab.keys())
        queries = [w for w in words if WORD.match(w)]
        pool = queries if self.candidates == "train" else sorted(t for t in vocab if WORD.match(t))
        if not queries or len(pool) < 2:
            return {}
        unit = torch.nn.functional.normalize(embeddings.detach().float().cpu(), dim=-1)
        pool_ids = torch.tensor([vocab[w] for w in pool])
        k = min(self.neighbours + 1, len(pool))
        table = {}
        for start in range(0, len(queries), 1024):
            chunk = queries[start : start + 1024]
            sims = unit[torch.tensor([vocab[w] for w in chunk])] @ unit[pool_ids].T
            for word, row in zip(chunk, sims.topk(k, dim=-1).indices.tolist()):
                table[word] = [pool[j] for j in row if pool[j] != word][: self.neighbours]
        return table

    def variants(self, texts: list[str], table: dict[str, list[str]]) -> list[str]:
        """The augmented texts, sentence by sentence in order."""
        rng = random.Random(self.seed)
        out = []
        for text in texts:
            words = text.split()
            seen = {text}
            for _ in range(self.copies):
                new = " ".join(rng.choice(table[w]) if w in table and table[w] and rng.random() < self.p else w for w in words)
                if new not in seen:
                    seen.add(new)
                    out.append(new)
        return out

    def apply(self, data, teacher=None, tokenizer=None) -> None:
        check(teacher is not None and tokenizer is not None, "augment", "replace needs the teacher's tokenizer and embeddings")
        own = data.texts("train")
        table = self.neighbour_table(teacher.get_input_embeddings().weight, tokenizer, own)
        added = self.variants(own, table)
        data.add_train_texts(added)
        self.report = {"augment/train_rows_own": len(own), "augment/train_rows_added": len(added), "augment/words_replaceable": len(table)}
        log.info("augment: %d variants of %d training sentences added (%d words with neighbours; labelled by the teacher)",
                 len(added), len(own), len(table))


def same_text(text: str) -> str:
    """What two texts share when they differ only in case and spacing (the decontamination key)."""
    return " ".join(text.casefold().split())


class CorpusAugment:
    """``augment=corpus``: unlabelled text from a file, one text a line (in-domain text you have, or the transfer
    set ``bench/generate_transfer_text.py`` writes), added to the training split and labelled by the teacher.
    Blank lines, repeats and the training split's own texts are dropped, and so is any line equal to a text of
    an evaluation split (dev, test, holdout; case and spacing aside), so the corpus cannot leak what the model is measured on; the count
    is reported. ``max_rows``: a seeded draw of that many lines (file order kept); null: every line."""

    def __init__(self, path: str, max_rows: int | None = None, encoding: str = "utf-8", seed: int = 0):
        check(isinstance(path, str) and Path(path).is_file(), "path", f"must be a text file (one text a line), got {path!r}")
        check(max_rows is None or (isinstance(max_rows, int) and not isinstance(max_rows, bool) and max_rows >= 1),
              "max_rows", f"must be an integer >= 1 or null, got {max_rows!r}")
        self.path, self.max_rows, self.encoding, self.seed = path, max_rows, encoding, seed

    def check(self, task, data) -> None:
        check_labelled_text(self, task, data, "corpus")

    def lines(self, own: list[str], held: set[str]) -> tuple[list[str], int]:
        """The corpus texts to add (a draw of ``max_rows`` in file order), and how many equalled an evaluation text."""
        raw = read_text(Path(self.path), self.encoding).splitlines()  # a wrong encoding: one error naming file:line
        seen, texts, leaked = set(own), [], 0
        held = {same_text(t) for t in held}
        for line in raw:
            text = " ".join(line.split())
            if not text or text in seen:
                continue
            seen.add(text)
            if same_text(text) in held:  # case and spacing aside: an uncased tokenizer reads them alike
                leaked += 1
                continue
            texts.append(text)
        if self.max_rows is not None and self.max_rows < len(texts):
            keep = sorted(random.Random(self.seed).sample(range(len(texts)), self.max_rows))
            texts = [texts[i] for i in keep]
        return texts, leaked

    def apply(self, data, teacher=None, tokenizer=None) -> None:
        own = data.texts("train")
        held = {t for split in data.eval_splits for t in data.texts(split)}
        added, leaked = self.lines(own, held)
        check(added, "path", f"{self.path} has no line to add (blank, repeats, training or evaluation texts only)")
        data.add_train_texts(added)
        self.report = {"augment/train_rows_own": len(own), "augment/train_rows_added": len(added),
                       "augment/rows_dropped_eval": leaked}
        log.info("augment: %d corpus lines added to %d training sentences (labelled by the teacher); %d equal to an "
                 "evaluation text dropped", len(added), len(own), leaked)
