"""``pruner=ffn``: structured pruning of FFN intermediate neurons.

In ``prepare`` each encoder layer keeps its ``n - round(amount * n)`` most important intermediate
neurons by the weight-norm score of :func:`distilkit.prune.importance.neuron_importance`; the
others are removed physically (``intermediate.dense`` loses output features, ``output.dense`` the
matching input features). The ranking is per layer, so all layers keep the same FFN width and
``config.intermediate_size`` describes the pruned model: plain ``from_pretrained`` reloads it.
Training afterwards is the fine-tuning.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from distilkit.errors import ConfigError
from distilkit.prune.base import Pruner, check_fraction
from distilkit.prune.decoder import decoder_layers, neurons_removed, prune_ffn
from distilkit.prune.encoder import encoder_layers
from distilkit.prune.importance import neuron_importance, top_indices
from distilkit.prune.surgery import keep_neurons, record_structure


class FFNPruner(Pruner):
    """Removes the fraction ``amount`` of every layer's FFN neurons, least important first."""

    def __init__(self, amount: float = 0.25):
        self.amount = check_fraction("amount", amount)

    def check(self, model: nn.Module) -> None:
        if decoder_layers(model) is not None:  # a Llama-style causal LM (distilkit.prune.decoder)
            neurons_removed(model.config, self.amount)

    def shaped(self, model: nn.Module) -> nn.Module:
        return self.prepare(copy.deepcopy(model))

    def prepare(self, model: nn.Module, scores: list | None = None) -> nn.Module:
        """``scores``: per layer, a score per neuron (default: :func:`neuron_importance`'s weight norms)."""
        if (decoder := decoder_layers(model)) is not None:
            return prune_ffn(model, decoder, self.amount)
        for index, layer in enumerate(encoder_layers(model)):
            scores_of_layer = neuron_importance(layer) if scores is None else scores[index]
            keep = len(scores_of_layer) - round(self.amount * len(scores_of_layer))
            if keep < 1:
                raise ConfigError("amount", f"{self.amount} would remove all {len(scores_of_layer)} FFN neurons of layer {index}")
            kept = top_indices(scores_of_layer, keep, ascending=False)
            if keep < len(scores_of_layer):
                keep_neurons(layer, kept.tolist())
        record_structure(model)
        return model
