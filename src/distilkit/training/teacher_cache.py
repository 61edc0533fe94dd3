"""Fine-tuned teachers cached on disk, keyed by (teacher, data, tokenization, seed, fine-tune settings).

Each entry is a ``save_pretrained`` directory (safetensors weights + tokenizer + ``meta.json``),
loaded with ``use_safetensors=True`` and without remote code. Entries are written to a temporary
directory and renamed into place, so a killed run never leaves a half-written one; an entry that fails
to load is removed and recomputed.

Concurrency: :meth:`exclusive` is a file lock per key held around build-or-load, so two jobs started
at once with the same teacher fine-tune it once (the second waits, then loads). Within a DDP job only
global rank 0 holds the lock and writes; :meth:`save` ends with a barrier, so no rank goes on before
the entry exists.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from contextlib import AbstractContextManager
from pathlib import Path

from transformers import AutoModelForSequenceClassification, AutoTokenizer

from distilkit.training.distributed import barrier, exclusive, is_rank_zero

log = logging.getLogger(__name__)


class TeacherCache:
    def __init__(self, root: str | Path):
        self.root = Path(root) / "teachers"

    def path(self, key: str) -> Path:
        return self.root / key

    def exclusive(self, key: str) -> AbstractContextManager:
        """Hold around load -> (build, fine-tune, save): one job per key at a time (rank 0 of each job)."""
        return exclusive(self.root.parent / ".locks" / f"teacher-{key}.lock")

    def load(self, key: str, model_class=AutoModelForSequenceClassification):
        """``(model, tokenizer, meta)`` for ``key`` (loaded with ``model_class``, the task's), or None when absent or unreadable."""
        entry = self.path(key)
        if not (entry / "meta.json").is_file():
            return None
        try:
            meta = json.loads((entry / "meta.json").read_text())
            model = model_class.from_pretrained(entry, use_safetensors=True, trust_remote_code=False)
            tokenizer = AutoTokenizer.from_pretrained(entry, trust_remote_code=False)
        except Exception as err:  # any corruption: drop the entry and fine-tune again
            log.warning("teacher cache entry %s is unreadable (%s); recomputing", entry, str(err).splitlines()[0])
            if is_rank_zero():
                shutil.rmtree(entry, ignore_errors=True)
            return None
        return model, tokenizer, meta

    def save(self, key: str, model, tokenizer, meta: dict) -> Path:
        """Written by global rank 0 only (atomically), then every rank of the job meets at a barrier."""
        final = self.path(key)
        if is_rank_zero():
            tmp = self.root / f".tmp-{key}-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        barrier()
        return final
