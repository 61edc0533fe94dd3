"""Structured pruning of Llama-style decoder layers (``pruner=heads`` / ``pruner=ffn`` on a causal-LM student).

A decoder layer here is one with ``self_attn.{q,k,v,o}_proj`` (grouped-query attention: ``num_key_value_heads``
key/value heads, each shared by ``num_attention_heads / num_key_value_heads`` query heads) and a gated MLP
``mlp.{gate,up,down}_proj`` (SwiGLU) — Llama, SmolLM, Qwen2, Mistral. Both prunings remove the same number of
units from every layer, so the narrowed model is described by its config (``num_attention_heads``,
``num_key_value_heads``, ``head_dim``, ``intermediate_size``) and plain ``from_pretrained`` reloads it.

* Heads: whole key/value groups are removed (one K/V head and the query heads that read it), which keeps the
  grouping GQA needs. Group ``g`` is scored by the weight-norm bound of what it can add to the residual
  stream, ``||W_v^g||_F * ||W_o[:, heads of g]||_F`` (the attention weights are a convex combination; the
  rule of :func:`distilkit.prune.importance.head_importance`, per group); ``round(amount * groups)`` lowest
  groups go in each layer.
* FFN: neuron ``i`` adds ``silu(g_i . x) (u_i . x) d_i``, bounded by ``||g_i|| ||u_i|| ||x||^2 ||d_i||``
  (``|silu(z)| <= |z|``); it is scored ``||g_i|| * ||u_i|| * ||d_i||`` and the ``round(amount * n)`` lowest
  go in each layer (the rule of :func:`distilkit.prune.importance.neuron_importance` for a gated MLP).
"""

from __future__ import annotations

import torch
from torch import nn

from distilkit.errors import ConfigError
from distilkit.prune.importance import top_indices
from distilkit.prune.surgery import keep_columns, keep_rows

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")


def decoder_layers(model: nn.Module) -> nn.ModuleList | None:
    """The Llama-style decoder layers of ``model`` (``model.model.layers``), or None if it has none."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if not isinstance(layers, nn.ModuleList) or not len(layers):
        return None
    first = layers[0]
    attn, mlp = getattr(first, "self_attn", None), getattr(first, "mlp", None)
    if attn is None or mlp is None or not all(isinstance(getattr(attn, n, None), nn.Linear) for n in ATTENTION) \
            or not all(isinstance(getattr(mlp, n, None), nn.Linear) for n in MLP):
        return None
    return layers


def _removed(amount: float, total: int, unit: str) -> int:
    remove = round(amount * total)
    if amount and remove == 0:
        raise ConfigError("amount", f"{amount} of {total} {unit} per layer rounds to 0: use at least {0.5 / total:.3f}")
    if remove >= total:
        raise ConfigError("amount", f"{amount} would remove all {total} {unit} of each layer: at most {(total - 1) / total:.4f}")
    return remove


@torch.no_grad()
def group_importance(attn: nn.Module, groups: int) -> torch.Tensor:
    """Score per key/value group of one attention module, ``[groups]`` (see module docstring)."""
    value = attn.v_proj.weight.detach().float().reshape(groups, -1)
    out = attn.o_proj.weight.detach().float()
    out = out.reshape(out.shape[0], groups, -1).transpose(0, 1).reshape(groups, -1)
    return value.norm(dim=1) * out.norm(dim=1)


@torch.no_grad()
def gated_neuron_importance(mlp: nn.Module) -> torch.Tensor:
    """Score per intermediate neuron of a gated MLP, ``[intermediate_size]``."""
    return (mlp.gate_proj.weight.detach().float().norm(dim=1) * mlp.up_proj.weight.detach().float().norm(dim=1)
            * mlp.down_proj.weight.detach().float().norm(dim=0))


def groups_removed(config, amount: float) -> int:
    """Key/value groups ``pruner=heads`` removes per layer; ``ConfigError("amount")`` for none or all (needs only the config)."""
    return _removed(amount, config.num_key_value_heads, "key/value head groups")


def neurons_removed(config, amount: float) -> int:
    """FFN neurons ``pruner=ffn`` removes per layer; ``ConfigError("amount")`` for none or all."""
    return _removed(amount, config.intermediate_size, "FFN neurons")


def prune_heads(model: nn.Module, layers: nn.ModuleList, amount: float) -> nn.Module:
    """Remove ``round(amount * num_key_value_heads)`` key/value groups (with their query heads) from every layer."""
    config = model.config
    heads, kv = config.num_attention_heads, config.num_key_value_heads
    head_dim = layers[0].self_attn.head_dim
    remove = groups_removed(config, amount)
    if remove == 0:
        return model
    per_group = heads // kv
    for layer in layers:
        attn = layer.self_attn
        kept = top_indices(group_importance(attn, kv), kv - remove).tolist()
        device = attn.q_proj.weight.device
        kv_index = torch.cat([torch.arange(g * head_dim, (g + 1) * head_dim, device=device) for g in kept])
        q_index = torch.cat([torch.arange(g * per_group * head_dim, (g + 1) * per_group * head_dim, device=device) for g in kept])
        attn.q_proj, attn.o_proj = keep_rows(attn.q_proj, q_index), keep_columns(attn.o_proj, q_index)
        attn.k_proj, attn.v_proj = keep_rows(attn.k_proj, kv_index), keep_rows(attn.v_proj, kv_index)
    config.head_dim = head_dim  # no longer hidden_size / num_attention_heads
    config.num_key_value_heads = kv - remove
    config.num_attention_heads = (kv - remove) * per_group
    return model


def prune_ffn(model: nn.Module, layers: nn.ModuleList, amount: float) -> nn.Module:
    """Keep the ``n - round(amount * n)`` most important intermediate neurons of every layer's gated MLP."""
    n = model.config.intermediate_size
    keep = n - neurons_removed(model.config, amount)
    if keep == n:
        return model
    for layer in layers:
        mlp = layer.mlp
        index = top_indices(gated_neuron_importance(mlp), keep).to(mlp.gate_proj.weight.device)
        mlp.gate_proj, mlp.up_proj = keep_rows(mlp.gate_proj, index), keep_rows(mlp.up_proj, index)
        mlp.down_proj = keep_columns(mlp.down_proj, index)
        mlp.intermediate_size = keep
    model.config.intermediate_size = keep
    return model
