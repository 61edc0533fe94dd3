"""Physical removal of attention heads and FFN neurons from BERT layers, and reloading such models.

Transformers 5 has no ``prune_heads`` (and no ``config.pruned_heads``), but its
``BertSelfAttention`` infers the head count from the projection width (``view(..., -1,
head_size)``), so a layer works with fewer heads once query/key/value lose the heads' output rows
and ``attention.output.dense`` the matching input columns; eager and SDPA attention both work.

Saving: ``save_pretrained`` writes the pruned weights, and :func:`record_structure` stores the
per-layer sizes in ``config.distilkit_structure`` (``{"num_heads": [...], "intermediate_size":
[...]}``), which survives the config round trip. Plain ``from_pretrained`` then refuses the
mismatched shapes; :func:`load_pruned` rebuilds the pruned architecture and loads the weights.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedModel

from distilkit.prune.encoder import encoder_layers

STRUCTURE_KEY = "distilkit_structure"


def _linear_like(linear: nn.Linear, in_features: int, out_features: int) -> nn.Linear:
    return nn.Linear(in_features, out_features, bias=linear.bias is not None,
                     device=linear.weight.device, dtype=linear.weight.dtype)


@torch.no_grad()
def keep_rows(linear: nn.Linear, index: torch.Tensor) -> nn.Linear:
    """A new Linear with only the output features ``index`` of ``linear``."""
    new = _linear_like(linear, linear.in_features, len(index))
    new.weight.copy_(linear.weight[index])
    if linear.bias is not None:
        new.bias.copy_(linear.bias[index])
    return new


@torch.no_grad()
def keep_columns(linear: nn.Linear, index: torch.Tensor) -> nn.Linear:
    """A new Linear with only the input features ``index`` of ``linear`` (bias unchanged)."""
    new = _linear_like(linear, len(index), linear.out_features)
    new.weight.copy_(linear.weight[:, index])
    if linear.bias is not None:
        new.bias.copy_(linear.bias)
    return new


def keep_heads(attention: nn.Module, heads: Sequence[int]) -> None:
    """Keep only ``heads`` (indices into the current heads) of a ``BertAttention`` module."""
    self_attn = attention.self
    size = self_attn.attention_head_size
    device = self_attn.query.weight.device
    index = torch.cat([torch.arange(h * size, (h + 1) * size, device=device) for h in sorted(heads)])
    self_attn.query = keep_rows(self_attn.query, index)
    self_attn.key = keep_rows(self_attn.key, index)
    self_attn.value = keep_rows(self_attn.value, index)
    attention.output.dense = keep_columns(attention.output.dense, index)
    self_attn.num_attention_heads = len(heads)
    self_attn.all_head_size = len(heads) * size


def keep_neurons(layer: nn.Module, neurons: Sequence[int]) -> None:
    """Keep only the FFN intermediate ``neurons`` of a ``BertLayer``."""
    index = torch.as_tensor(sorted(neurons), device=layer.intermediate.dense.weight.device)
    layer.intermediate.dense = keep_rows(layer.intermediate.dense, index)
    layer.output.dense = keep_columns(layer.output.dense, index)


def resize_layer(layer: nn.Module, hidden: int, heads: int, head_size: int, ffn: int) -> None:
    """Give a ``BertLayer`` fresh (uninitialized) projections of the given widths (weights are loaded after)."""
    attn, width = layer.attention.self, heads * head_size
    device = attn.query.weight.device
    for name in ("query", "key", "value"):
        setattr(attn, name, nn.Linear(hidden, width, device=device))
    layer.attention.output.dense = nn.Linear(width, hidden, device=device)
    attn.num_attention_heads, attn.attention_head_size, attn.all_head_size = heads, head_size, width
    attn.scaling = head_size**-0.5
    layer.intermediate.dense = nn.Linear(hidden, ffn, device=device)
    layer.output.dense = nn.Linear(ffn, hidden, device=device)


def record_structure(model: PreTrainedModel) -> None:
    """Write the per-layer head counts and FFN sizes to ``model.config`` (see module docstring).

    When all layers share one FFN size, ``config.intermediate_size`` is set to it as well.
    """
    layers = encoder_layers(model)
    heads = [layer.attention.self.num_attention_heads for layer in layers]
    ffn = [layer.intermediate.dense.out_features for layer in layers]
    head_size = layers[0].attention.self.attention_head_size
    setattr(model.config, STRUCTURE_KEY, {"num_heads": heads, "intermediate_size": ffn, "head_size": head_size,
                                          "hidden_size": model.config.hidden_size})
    if len(set(ffn)) == 1:
        model.config.intermediate_size = ffn[0]


def load_pruned(model_dir: str | Path, **kwargs) -> PreTrainedModel:
    """Load a sequence classifier saved with ``save_pretrained`` after structured pruning (or without).

    ``kwargs`` go to ``AutoModelForSequenceClassification.from_config`` (e.g. ``attn_implementation="eager"``).
    """
    model_dir = Path(model_dir)
    config = AutoConfig.from_pretrained(model_dir)
    structure = getattr(config, STRUCTURE_KEY, None)
    if structure and "head_size" in structure:  # any widths (pruner=width): build with 1 head, then reshape
        build = copy.deepcopy(config)
        build.num_attention_heads = 1
        model = AutoModelForSequenceClassification.from_config(build, **kwargs)
        for layer, heads, ffn in zip(encoder_layers(model), structure["num_heads"], structure["intermediate_size"]):
            resize_layer(layer, structure["hidden_size"], heads, structure["head_size"], ffn)
        model.config.num_attention_heads = config.num_attention_heads  # the saved value (layers carry their own)
    else:
        model = AutoModelForSequenceClassification.from_config(config, **kwargs)
    if structure and "head_size" not in structure:  # saved before head sizes were recorded
        for layer, heads, ffn in zip(encoder_layers(model), structure["num_heads"], structure["intermediate_size"]):
            keep_heads(layer.attention, range(heads))
            keep_neurons(layer, range(ffn))
    state = {}
    for shard in sorted(model_dir.glob("*.safetensors")):
        state.update(load_file(shard))
    model.load_state_dict(state, strict=True)
    return model.eval()
