"""Any text-classification data set as ``train.txt``/``dev.txt``/``test.txt`` in ``LABEL SENTENCE`` lines."""

from __future__ import annotations

from pathlib import Path

from distilkit.data.module import SPLITS, Example, TextClassificationData
from distilkit.errors import ConfigError


def read_label_sentence_file(path: Path) -> list[Example]:
    """Parse ``LABEL SENTENCE`` lines (integer label, one space, the text). Blank lines are skipped."""
    examples = []
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            label, _, text = line.partition(" ")
            if not label.isdigit() or not text.strip():
                raise ConfigError(
                    "path", f"{path}:{lineno}: expected 'LABEL SENTENCE' with an integer label, got {line[:60]!r}"
                )
            examples.append(Example(text.strip(), int(label)))
    return examples


class TextLinesData(TextClassificationData):
    """A directory holding ``train.txt``, ``dev.txt`` and ``test.txt``; classes inferred from the labels."""

    def __init__(self, path: str | None, max_length: int = 64, batch_size: int = 32, num_workers: int = 0):
        super().__init__(max_length=max_length, batch_size=batch_size, num_workers=num_workers)
        self.path = path

    def load_splits(self) -> dict[str, list[Example]]:
        if self.path is None:
            raise ConfigError("path", "is required: a directory with train.txt, dev.txt, test.txt")
        root = Path(self.path)
        files = {name: root / f"{name}.txt" for name in SPLITS}
        missing = [str(f) for f in files.values() if not f.is_file()]
        if missing:
            raise ConfigError("path", f"{self.path!r} must hold train.txt, dev.txt, test.txt; missing {', '.join(missing)}")
        return {name: read_label_sentence_file(f) for name, f in files.items()}
