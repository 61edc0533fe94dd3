"""Learning-rate schedules, built by Hydra as ``_partial_`` factories and completed by the module."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def linear_warmup(optimizer: Optimizer, total_steps: int, warmup_fraction: float = 0.1) -> LambdaLR:
    """Linear warm-up over ``warmup_fraction`` of training, then linear decay to 0 (BERT's schedule)."""
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return LambdaLR(optimizer, factor)
