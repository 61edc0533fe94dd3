"""``pruner=heads``: structured attention-head pruning.

In ``prepare`` all heads of all encoder layers are ranked together by the weight-norm score of
:func:`distilkit.prune.importance.head_importance` (global ranking, as in Michel et al., 2019),
and the ``round(amount * total)`` lowest are removed physically (query/key/value lose the heads'
output features, ``attention.output.dense`` the matching input features). Every layer keeps at
least one head: a request that cannot be met that way is a ``ConfigError``. Training afterwards is
the fine-tuning. The per-layer head counts are recorded in the config for
:func:`distilkit.prune.surgery.load_pruned`.
"""

from __future__ import annotations

import copy

from torch import nn

from distilkit.errors import ConfigError
from distilkit.prune.base import Pruner, check_fraction
from distilkit.prune.decoder import decoder_layers, groups_removed, prune_heads
from distilkit.prune.encoder import encoder_layers
from distilkit.prune.importance import head_importance
from distilkit.prune.surgery import keep_heads, record_structure


class HeadPruner(Pruner):
    """Removes the fraction ``amount`` of all attention heads, least important first."""

    def __init__(self, amount: float = 0.25):
        self.amount = check_fraction("amount", amount)

    def check(self, model: nn.Module) -> None:
        if decoder_layers(model) is not None:  # a Llama-style causal LM (distilkit.prune.decoder)
            groups_removed(model.config, self.amount)

    def shaped(self, model: nn.Module) -> nn.Module:
        """Decoder students: the narrowed shapes (every layer loses the same groups); encoders keep the
        default (the global head ranking needs the weights)."""
        if decoder_layers(model) is None:
            return model
        model = copy.deepcopy(model)
        return prune_heads(model, decoder_layers(model), self.amount)

    def prepare(self, model: nn.Module, scores: list | None = None) -> nn.Module:
        """``scores``: per layer, a score per head (default: :func:`head_importance`'s weight norms)."""
        if (decoder := decoder_layers(model)) is not None:
            return prune_heads(model, decoder, self.amount)
        layers = encoder_layers(model)
        scores = scores if scores is not None else [head_importance(layer.attention) for layer in layers]
        total = sum(len(s) for s in scores)
        remove = round(self.amount * total)
        if remove > total - len(layers):
            raise ConfigError(
                "amount",
                f"{self.amount} would remove {remove} of {total} heads, but each of the {len(layers)} layers "
                f"keeps at least one head: at most {(total - len(layers)) / total:.4f}",
            )
        ranked = sorted((float(score), i, h) for i, s in enumerate(scores) for h, score in enumerate(s))
        kept = [set(range(len(s))) for s in scores]
        for _, i, h in ranked:
            if remove == 0:
                break
            if len(kept[i]) > 1:
                kept[i].discard(h)
                remove -= 1
        for layer, heads in zip(layers, kept):
            if len(heads) < layer.attention.self.num_attention_heads:
                keep_heads(layer.attention, sorted(heads))
        record_structure(model)
        return model
