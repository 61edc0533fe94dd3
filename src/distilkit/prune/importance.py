"""Data-free importance scores of attention heads and FFN neurons from weight norms.

A head's contribution to the residual stream is ``softmax(q k^T) (x W_v^h + b_v^h) W_o^h``; the
attention weights form a convex combination, so its norm is at most
``||[W_v^h; b_v^h]|| * ||W_o^h|| * max(||x||, 1)``. We score head ``h`` by
``||[W_v^h, b_v^h]||_F * ||W_o[:, h]||_F``; query and key only decide how the head mixes
positions, not how much it can add. Likewise an FFN neuron adds ``gelu(w_in . x + b) w_out``,
bounded by ``(||w_in|| ||x|| + |b|) * ||w_out||`` since ``|gelu(z)| <= |z|``; it is scored by
``||[w_in, b]|| * ||w_out||``. Units whose output weights are zero score 0 and go first.
This is the magnitude criterion of weight-norm pruning (cf. Li et al., "Pruning Filters for
Efficient ConvNets", 2017) applied per unit; Michel et al., "Are Sixteen Heads Really Better
than One?" (2019) use a gradient-based score instead, which needs data.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _rows_with_bias(linear: nn.Linear) -> Tensor:
    weight = linear.weight.detach().float()
    if linear.bias is None:
        return weight
    return torch.cat([weight, linear.bias.detach().float()[:, None]], dim=1)


@torch.no_grad()
def head_importance(attention: nn.Module) -> Tensor:
    """Score per head of a ``BertAttention`` module, shape ``[num_heads]``."""
    heads = attention.self.num_attention_heads
    value = _rows_with_bias(attention.self.value).reshape(heads, -1)
    out = attention.output.dense.weight.detach().float()
    out = out.reshape(out.shape[0], heads, -1).transpose(0, 1).reshape(heads, -1)
    return value.norm(dim=1) * out.norm(dim=1)


@torch.no_grad()
def neuron_importance(layer: nn.Module) -> Tensor:
    """Score per FFN intermediate neuron of a ``BertLayer``, shape ``[intermediate_size]``."""
    inner = _rows_with_bias(layer.intermediate.dense)
    outer = layer.output.dense.weight.detach().float()
    return inner.norm(dim=1) * outer.norm(dim=0)


def top_indices(scores: torch.Tensor, k: int, ascending: bool = True) -> torch.Tensor:
    """The indices of the ``k`` highest ``scores`` (ascending, or highest score first). On the meta device (the preflight's
    shape-only student, see :meth:`Pruner.shaped`) there are no values: the first ``k``, same shapes."""
    if scores.is_meta:
        return torch.arange(k, device="cpu")  # explicit: the preflight builds under torch.device("meta")
    indices = torch.topk(scores, k).indices
    return indices.sort().values if ascending else indices
