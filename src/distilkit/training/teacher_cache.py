"""Fine-tuned teachers cached on disk, keyed by (teacher, data, tokenization, seed, fine-tune settings).

Each entry is a ``save_pretrained`` directory (model + tokenizer + ``meta.json``). Entries are written
to a temporary directory and renamed into place, so a killed run never leaves a half-written one; an
entry that fails to load is removed and recomputed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from transformers import AutoModelForSequenceClassification, AutoTokenizer

log = logging.getLogger(__name__)


class TeacherCache:
    def __init__(self, root: str | Path):
        self.root = Path(root) / "teachers"

    def path(self, key: str) -> Path:
        return self.root / key

    def load(self, key: str, model_class=AutoModelForSequenceClassification):
        """``(model, tokenizer, meta)`` for ``key`` (loaded with ``model_class``, the task's), or None when absent or unreadable."""
        entry = self.path(key)
        if not (entry / "meta.json").is_file():
            return None
        try:
            meta = json.loads((entry / "meta.json").read_text())
            model = model_class.from_pretrained(entry)
            tokenizer = AutoTokenizer.from_pretrained(entry)
        except Exception as err:  # any corruption: drop the entry and fine-tune again
            log.warning("teacher cache entry %s is unreadable (%s); recomputing", entry, str(err).splitlines()[0])
            shutil.rmtree(entry, ignore_errors=True)
            return None
        return model, tokenizer, meta

    def save(self, key: str, model, tokenizer, meta: dict) -> Path:
        tmp = self.root / f".tmp-{key}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        final = self.path(key)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        return final
