"""Any text-classification data set as ``train.txt``/``dev.txt``/``test.txt`` in ``LABEL SENTENCE`` lines."""

from __future__ import annotations

import codecs
from pathlib import Path

from distilkit.data.module import SPLITS, Example, TextClassificationData
from distilkit.errors import ConfigError


def read_text(path: Path, encoding: str) -> str:
    """The text of ``path`` in ``encoding``; bytes that don't decode are a ConfigError on ``encoding``
    naming ``file:line``."""
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ConfigError("encoding", f"{encoding!r} is not a known text encoding; e.g. utf-8, latin-1, cp1252") from None
    raw = Path(path).read_bytes()
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as err:
        line_start = raw.rfind(b"\n", 0, err.start) + 1
        lineno = raw.count(b"\n", 0, err.start) + 1
        raise ConfigError(
            "encoding",
            f"{path}:{lineno}: not valid {encoding} (byte 0x{raw[err.start]:02x} at column {err.start - line_start + 1}); "
            "set {key} to the file's encoding, e.g. {key}=latin-1",
        ) from None


def read_label_sentence_file(path: Path, encoding: str = "utf-8") -> list[Example]:
    """Parse ``LABEL SENTENCE`` lines (integer label, one space, the text). Blank lines are skipped."""
    examples = []
    for lineno, line in enumerate(read_text(path, encoding).split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        label, _, text = line.partition(" ")
        if not label.isdigit() or not text.strip():
            raise ConfigError("path", f"{path}:{lineno}: expected 'LABEL SENTENCE' with an integer label, got {line[:60]!r}")
        examples.append(Example(text.strip(), int(label)))
    return examples


class TextLinesData(TextClassificationData):
    """A directory holding ``train.txt``, ``dev.txt`` and ``test.txt``; classes inferred from the labels."""

    def __init__(
        self,
        path: str | None,
        encoding: str = "utf-8",
        max_length: int = 64,
        batch_size: int = 32,
        num_workers: int = 0,
        bucket_by_length: bool = False,
        holdout: int = 0,
    ):
        super().__init__(max_length=max_length, batch_size=batch_size, num_workers=num_workers, bucket_by_length=bucket_by_length, holdout=holdout)
        self.path = path
        self.encoding = encoding

    def load_splits(self) -> dict[str, list[Example]]:
        if self.path is None:
            raise ConfigError("path", "is required: a directory with train.txt, dev.txt, test.txt")
        root = Path(self.path)
        files = {name: root / f"{name}.txt" for name in SPLITS}
        missing = [str(f) for f in files.values() if not f.is_file()]
        if missing:
            raise ConfigError("path", f"{self.path!r} must hold train.txt, dev.txt, test.txt; missing {', '.join(missing)}")
        return {name: read_label_sentence_file(f, self.encoding) for name, f in files.items()}
