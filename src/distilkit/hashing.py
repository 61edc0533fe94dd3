"""Content hashes used as cache keys: one function, so every key is made the same way."""

from __future__ import annotations

import hashlib
import json

import torch


def key_of(*parts) -> str:
    """Stable short hash of JSON-able parts and tensors (hashed by dtype, shape and bytes)."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            t = part.detach().cpu().contiguous()
            digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
            digest.update(t.numpy().tobytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:20]
