"""Cache files written whole or not at all: a reader (another job, a DDP rank) never sees a half-written one."""

from __future__ import annotations

import os
from pathlib import Path

import torch


def torch_save_atomic(obj, path: Path) -> None:
    """``torch.save(obj, path)`` through a temporary file in the same folder, renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
