"""Gradual pruning schedule of Zhu & Gupta, "To prune, or not to prune: exploring the efficacy of
pruning for model compression" (2017), eq. 1, with time measured as the fraction of training."""

from __future__ import annotations


def cubic_sparsity(fraction: float, initial: float, final: float, start: float, end: float) -> float:
    """Sparsity at ``fraction`` of training: ``initial`` until ``start``, ``final`` from ``end``,
    and ``final + (initial - final) * (1 - (fraction - start) / (end - start)) ** 3`` in between."""
    progress = min(max((fraction - start) / (end - start), 0.0), 1.0)
    return final + (initial - final) * (1.0 - progress) ** 3
