"""Model size: parameters, non-zero parameters, bytes on disk of the saved weights."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import nn

MB = 1024 * 1024


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def num_nonzero(model: nn.Module) -> int:
    """Non-zero entries over the model's parameters (pruned weights count as zero)."""
    return sum(int(torch.count_nonzero(p)) for p in model.parameters())


def dir_size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / MB


def saved_size_mb(model) -> float:
    """Size of the model's weights as ``save_pretrained`` writes them (safetensors), in MB."""
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        return sum(f.stat().st_size for f in Path(tmp).glob("*.safetensors")) / MB
