"""Minitron's activation-based importance (``pruner=width pruner.importance=activation``).

Muralidharan et al., "Compact Language Models via Pruning and Knowledge Distillation" (2024), rank
every width axis by the activations it produces on a small calibration set: an attention head by the
magnitude of its output, an FFN neuron by its mean |activation| after the non-linearity, and an
embedding (hidden) channel by the mean |output| of the LayerNorms that write the residual stream.
Here, on the first ``rows`` training rows (the same rows on every rank, so every rank prunes alike),
each mean over the rows' real tokens (padding excluded):

* head ``h`` of a layer: the L2 norm of its slice of the attention context (the input of the output
  projection);
* FFN neuron: ``|gelu(w_in . x + b)|``;
* hidden channel ``j``: the sum over the embedding LayerNorm and each layer's two LayerNorms of
  ``|LN(x)_j|``.

The scores index the unpruned model's heads, neurons and channels, so one pass before any removal
serves all three prunings (:class:`distilkit.prune.WidthPruner`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from distilkit.data.batching import batches_of
from distilkit.prune.encoder import encoder_layers


@dataclass
class ActivationScores:
    hidden: Tensor  # [hidden_size]
    heads: list[Tensor]  # per layer, [num_heads]
    ffn: list[Tensor]  # per layer, [intermediate_size]


@torch.no_grad()
def activation_importance(model: nn.Module, inputs: dict[str, Tensor], rows: int = 512, batch_size: int = 64) -> ActivationScores:
    """Minitron's scores of ``model`` (a BERT-family encoder classifier) on the first ``rows`` rows of ``inputs``."""
    base = model.base_model
    layers = list(encoder_layers(model))
    norms = [base.embeddings.LayerNorm] + [n for layer in layers for n in (layer.attention.output.LayerNorm, layer.output.LayerNorm)]
    device = next(model.parameters()).device
    state = {"mask": None}
    sums = {"hidden": 0.0, "heads": [0.0] * len(layers), "ffn": [0.0] * len(layers)}

    def token_sum(x: Tensor) -> Tensor:  # [batch, seq, features] -> [features], over real tokens
        return (x.float() * state["mask"][..., None]).sum(dim=(0, 1))

    def on_norm(module, args, out):
        sums["hidden"] = sums["hidden"] + token_sum(out.abs())

    def on_context(i: int, heads: int):
        def hook(module, args, out):
            context = out[0] if isinstance(out, tuple) else out  # [batch, seq, heads * head_size]
            per_head = context.float().reshape(*context.shape[:2], heads, -1).norm(dim=-1)
            sums["heads"][i] = sums["heads"][i] + token_sum(per_head)
        return hook

    def on_ffn(i: int):
        def hook(module, args, out):
            sums["ffn"][i] = sums["ffn"][i] + token_sum(out.abs())
        return hook

    handles = [n.register_forward_hook(on_norm) for n in norms]
    for i, layer in enumerate(layers):
        handles.append(layer.attention.self.register_forward_hook(on_context(i, layer.attention.self.num_attention_heads)))
        handles.append(layer.intermediate.register_forward_hook(on_ffn(i)))
    was_training = model.training
    model.eval()
    tokens = 0.0
    try:
        for batch in batches_of({k: v[:rows] for k, v in inputs.items()}, batch_size):
            batch = {k: v.to(device) for k, v in batch.items()}
            state["mask"] = batch["attention_mask"].float()
            tokens += float(state["mask"].sum())
            model(**batch)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    tokens = max(tokens, 1.0)
    return ActivationScores(hidden=sums["hidden"] / tokens, heads=[s / tokens for s in sums["heads"]], ffn=[s / tokens for s in sums["ffn"]])
