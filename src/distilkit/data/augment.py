"""Training-text augmentation for distillation (``augment`` config group): more inputs for the teacher to label.

A small student learns the teacher's function from the inputs it is shown; on a few thousand
sentences it sees too few of them. TinyBERT (Jiao et al., 2020) distils on an augmented training set
labelled by the teacher alone; SST-2's own GLUE release trains on every phrase of the parse trees
(67k) rather than the 6.9k sentences. :class:`SpanAugment` does the same with no extra model: random
contiguous word spans of each training sentence, added to the training split only (dev and test are
never touched), labelled by the teacher. An augmented row's label is the teacher's argmax, set when
the stored teacher logits are attached (:meth:`TextClassificationData.attach_teacher_logits`), so it
needs ``task.store_logits=true``. The teacher is fine-tuned, and cached, on the original rows only.
"""

from __future__ import annotations

import logging
import random

from distilkit.errors import check
from distilkit.tasks.base import serves

log = logging.getLogger(__name__)


class NoAugment:
    """``augment=none``: the training split as it is."""

    def check(self, task, data) -> None:
        pass

    def apply(self, data) -> None:
        pass


class SpanAugment:
    """``augment=spans``: ``copies`` random contiguous spans of ``min_words`` or more words (fewer than the
    sentence's own) drawn from each training sentence, duplicates within a sentence dropped; seeded."""

    def __init__(self, copies: int = 4, min_words: int = 2, seed: int = 0):
        check(isinstance(copies, int) and copies >= 1, "copies", f"must be an integer >= 1, got {copies!r}")
        check(isinstance(min_words, int) and min_words >= 1, "min_words", f"must be an integer >= 1, got {min_words!r}")
        self.copies, self.min_words, self.seed = copies, min_words, seed

    def check(self, task, data) -> None:
        """Before any run: a classification task whose teacher logits are stored, over data that takes added text."""
        check(serves(self, task.name), "augment", f"spans augments classification text, not task={task.name}: use augment=none")
        check(task.store_logits, "augment", "spans labels its rows with the stored teacher logits: set task.store_logits=true or use augment=none")
        check(callable(getattr(data, "add_train_texts", None)), "augment",
              f"spans needs text-classification data; {type(data).__name__} has none: use augment=none")

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

    def apply(self, data) -> None:
        own = data.texts("train")
        added = self.spans(own)
        data.add_train_texts(added)
        self.report = {"augment/train_rows_own": len(own), "augment/train_rows_added": len(added)}
        log.info("augment: %d spans added to %d training sentences (labelled by the teacher)", len(added), len(own))
