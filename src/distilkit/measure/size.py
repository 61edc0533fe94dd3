"""Model size: parameters, non-zero parameters, bytes on disk of the saved weights."""

from __future__ import annotations

import tempfile
from pathlib import Path

from torch import nn

MB = 1024 * 1024


def num_parameters(model: nn.Module) -> int:
    """Parameters as the forward pass uses them (a pruning mask's ``weight_orig`` counts once)."""
    return sum(p.numel() for p in model.parameters())


def file_size_mb(path: Path) -> float:
    return Path(path).stat().st_size / MB


def saved_size_mb(model) -> float:
    """Size of the model's weights as ``save_pretrained`` writes them (safetensors), in MB."""
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        return sum(f.stat().st_size for f in Path(tmp).glob("*.safetensors")) / MB
