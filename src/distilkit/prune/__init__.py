"""Pruners (the ``pruner`` config group) and the sparsity measurements."""

from distilkit.prune.base import Pruner
from distilkit.prune.ffn import FFNPruner
from distilkit.prune.heads import HeadPruner
from distilkit.prune.magnitude import MagnitudePruner
from distilkit.prune.none import NoPruner
from distilkit.prune.stats import count_nonzero, sparse_size_mb
from distilkit.prune.surgery import load_pruned
from distilkit.prune.width import WidthPruner

__all__ = [
    "Pruner", "NoPruner", "MagnitudePruner", "HeadPruner", "FFNPruner", "WidthPruner",
    "count_nonzero", "sparse_size_mb", "load_pruned",
]
