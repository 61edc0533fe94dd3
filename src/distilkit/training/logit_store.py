"""Teacher logits computed once per (teacher, split inputs) and stored on disk for every later run.

KD losses read the training split's teacher logits from here (no teacher forward pass during
training); evaluation reads the dev/test ones. Files are written atomically and loaded with
``weights_only=True``; a file that can't be read or has the wrong shape is recomputed, with a warning.

Concurrency: a file lock per key around load-or-compute (two jobs at once compute a split once), and
within a DDP job global rank 0 computes and writes while the other ranks wait at a barrier, then read.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import torch

from distilkit.data.batching import batches_of
from distilkit.training.atomic import torch_save_atomic
from distilkit.training.distributed import barrier, exclusive, is_rank_zero

log = logging.getLogger(__name__)


class LogitStore:
    def __init__(self, root: str | Path):
        self.root = Path(root) / "teacher_logits"

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def load(self, key: str, shape: tuple[int, int]) -> torch.Tensor | None:
        """The stored logits of ``key`` if present, readable, finite and of ``shape``; else None."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            logits = torch.load(path, weights_only=True)
            if isinstance(logits, torch.Tensor) and tuple(logits.shape) == shape and torch.isfinite(logits).all():
                return logits
            log.warning("teacher logits %s have the wrong shape or values; recomputing", path)
        except Exception as err:
            log.warning("teacher logits %s are unreadable (%s); recomputing", path, str(err).splitlines()[0])
        return None

    def get_or_compute(self, key: str, shape: tuple[int, int], compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        if not is_rank_zero():  # DDP: rank 0 computes and writes; here we wait for it, then read
            barrier()
            logits = self.load(key, shape)
            return logits if logits is not None else compute().float().cpu()
        with exclusive(self.root.parent / ".locks" / f"logits-{key}.lock"):
            logits = self.load(key, shape)
            if logits is None:
                logits = compute().float().cpu()
                assert tuple(logits.shape) == shape, (logits.shape, shape)
                torch_save_atomic(logits, self.path(key))
        barrier()
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
