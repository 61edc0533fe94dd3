"""``pruner=none``: no pruning."""

from __future__ import annotations

from torch import nn

from distilkit.prune.base import Pruner


class NoPruner(Pruner):
    """Identity."""

    def prepare(self, model: nn.Module) -> nn.Module:
        return model
