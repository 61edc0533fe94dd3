"""Teacher logits computed once per (teacher, split inputs) and stored on disk for every later run.

KD losses read the training split's teacher logits from here (no teacher forward pass during
training); evaluation reads the dev/test ones. Files are written atomically; a file that can't be
read or has the wrong shape is recomputed, with a warning.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

import torch

from distilkit.data.batching import batches_of

log = logging.getLogger(__name__)


class LogitStore:
    def __init__(self, root: str | Path):
        self.root = Path(root) / "teacher_logits"

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def get_or_compute(self, key: str, shape: tuple[int, int], compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        path = self.path(key)
        if path.is_file():
            try:
                logits = torch.load(path, weights_only=True)
                if isinstance(logits, torch.Tensor) and tuple(logits.shape) == shape and torch.isfinite(logits).all():
                    return logits
                log.warning("teacher logits %s have the wrong shape or values; recomputing", path)
            except Exception as err:
                log.warning("teacher logits %s are unreadable (%s); recomputing", path, str(err).splitlines()[0])
        logits = compute().float().cpu()
        assert tuple(logits.shape) == shape, (logits.shape, shape)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save(logits, tmp)
        os.replace(tmp, path)
        return logits


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, inputs: dict[str, torch.Tensor], batch_size: int = 64) -> torch.Tensor:
    """Logits of ``model`` (eval mode, on its device) for every row of padded ``inputs``, in row order,
    ``batch_size`` rows at a time, each batch padded only to its longest row; returned on CPU."""
    model.eval()
    device = next(model.parameters()).device
    chunks = []
    for batch in batches_of(inputs, batch_size):
        chunks.append(model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu())
    return torch.cat(chunks)
