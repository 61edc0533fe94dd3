"""The embedded default task: movie-review sentiment generated from a small grammar, offline.

Deterministic by seed and hard in the ways that separate a deeper model from a shallow one:
negation flips a clause (``was not good``), double negation flips it back (``it is not true that
... was not good``), in a contrast (``A but B``, ``although A , B``) the clause after the contrast
word decides, and intensifiers/fillers add words that carry no label.
A bag of words can't solve it: the same words appear on both sides of the label.
A fraction ``label_noise`` of *training* labels is flipped (dev/test stay clean), as in real
annotation, which is where a teacher's soft labels help a student.
"""

from __future__ import annotations

import random

from distilkit.data.module import Example, TextClassificationData
from distilkit.errors import check

SUBJECTS = [
    "the movie", "the film", "the plot", "the acting", "the script", "the ending", "the cast",
    "the soundtrack", "the dialogue", "the director", "the story", "the pacing", "the humor",
    "the photography", "the lead", "the sequel",
]
VERBS = ["was", "is", "seemed", "felt", "looked", "turned out"]
POSITIVE = [
    "good", "great", "brilliant", "charming", "moving", "funny", "clever", "delightful", "gripping",
    "beautiful", "fresh", "smart", "touching", "wonderful", "sharp", "engaging",
]
NEGATIVE = [
    "bad", "dull", "boring", "awful", "clumsy", "tedious", "messy", "bland", "forgettable", "weak",
    "stale", "silly", "lifeless", "painful", "shallow", "flat",
]
INTENSIFIERS = ["very", "really", "truly", "extremely", "incredibly", "quite", "so", "remarkably"]
NEGATIONS = ["not", "never", "hardly", "not at all"]
FILLERS = ["honestly ,", "overall ,", "to be fair ,", "in the end ,", "frankly ,", "i think"]


def _clause(rng: random.Random, polarity: int) -> str:
    """A clause with the given polarity (+1/-1), by a positive or negative word, negated or not."""
    negate = rng.random() < 0.4
    word_polarity = -polarity if negate else polarity
    adjective = rng.choice(POSITIVE if word_polarity > 0 else NEGATIVE)
    words = [rng.choice(SUBJECTS), rng.choice(VERBS)]
    if negate:
        negation = rng.choice(NEGATIONS)
        if negation == "not at all":
            words += ["not", adjective, "at all"]
        else:
            words += [negation, adjective]
    else:
        if rng.random() < 0.4:
            words.append(rng.choice(INTENSIFIERS))
        words.append(adjective)
    return " ".join(words)


def _sentence(rng: random.Random, label: int) -> str:
    """The last clause decides, unless the sentence says ``it is not true that`` (a flip)."""
    polarity = 1 if label == 1 else -1
    form = rng.random()
    if form < 0.3:
        text = _clause(rng, polarity)
    elif form < 0.55:
        text = f"{_clause(rng, -polarity)} but {_clause(rng, polarity)}"
    elif form < 0.7:
        text = f"although {_clause(rng, -polarity)} , {_clause(rng, polarity)}"
    elif form < 0.85:
        text = f"{_clause(rng, polarity)} and {_clause(rng, polarity)}"
    else:
        text = f"it is not true that {_clause(rng, -polarity)}"
    if rng.random() < 0.3:
        text = f"{rng.choice(FILLERS)} {text}"
    return text + " ."


def generate(n: int, seed: int, label_noise: float = 0.0) -> list[Example]:
    """``n`` balanced examples; labels flipped with probability ``label_noise``."""
    rng = random.Random(seed)
    examples = []
    for i in range(n):
        label = i % 2
        text = _sentence(rng, label)
        if rng.random() < label_noise:
            label = 1 - label
        examples.append(Example(text, label))
    rng.shuffle(examples)
    return examples


class SyntheticData(TextClassificationData):
    """Generated binary sentiment; splits drawn from disjoint seeds derived from ``seed``."""

    def __init__(
        self,
        num_train: int = 6000,
        num_dev: int = 500,
        num_test: int = 500,
        label_noise: float = 0.05,
        seed: int = 0,
        max_length: int = 24,
        batch_size: int = 32,
        num_workers: int = 0,
        bucket_by_length: bool = False,
        holdout: int = 0,
    ):
        super().__init__(max_length=max_length, batch_size=batch_size, num_workers=num_workers, bucket_by_length=bucket_by_length, holdout=holdout)
        for key, value in (("num_train", num_train), ("num_dev", num_dev), ("num_test", num_test)):
            check(value > 0, key, f"must be > 0, got {value}")
        check(0 <= label_noise < 0.5, "label_noise", f"must be in [0, 0.5), got {label_noise}")
        self.sizes = {"train": num_train, "dev": num_dev, "test": num_test}
        self.label_noise = label_noise
        self.seed = seed

    def load_splits(self) -> dict[str, list[Example]]:
        return {
            name: generate(n, seed=self.seed * 1000 + offset, label_noise=self.label_noise if name == "train" else 0.0)
            for offset, (name, n) in enumerate(self.sizes.items())
        }
