"""Attention maps for attention-transfer losses: the softmax *before* attention dropout.

Hugging Face's eager attention returns the probabilities after dropout: in training about ``p`` of
the entries are zero and the rest are scaled by ``1 / (1 - p)``, so rows no longer sum to 1 and a KL
against the teacher's map is dominated by the dropped entries. :data:`PRE_DROPOUT_EAGER` is an
attention kernel, registered with transformers' ``AttentionInterface``, that computes what eager
attention computes (the same dropout on the probabilities that multiply the values, so training is
regularized as before) but returns the probabilities before dropout. It works for every model that
dispatches through ``ALL_ATTENTION_FUNCTIONS`` (BERT, DistilBERT, ... in transformers 5).

``use_attention_kernel(*models)`` switches models to it and returns the function that switches them back.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask

PRE_DROPOUT_EAGER = "distilkit_eager_pre_dropout"


def pre_dropout_eager_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager scaled dot-product attention; returns ``(output [batch, seq, heads, head_dim], probs before dropout)``."""
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:  # additive: 0 for kept keys, the dtype's minimum for masked ones
        scores = scores + attention_mask[:, :, :, : key.shape[-2]]
    probs = F.softmax(scores, dim=-1)
    dropped = F.dropout(probs, p=dropout, training=module.training)
    output = torch.matmul(dropped, value).transpose(1, 2).contiguous()
    return output, probs


AttentionInterface.register(PRE_DROPOUT_EAGER, pre_dropout_eager_attention)
AttentionMaskInterface.register(PRE_DROPOUT_EAGER, eager_mask)


def use_attention_kernel(*models: nn.Module) -> Callable[[], None]:
    """Switch each Hugging Face model to :data:`PRE_DROPOUT_EAGER`; returns a function restoring their kernels."""
    previous = [(model, model.config._attn_implementation) for model in models if model is not None]
    for model, _ in previous:
        model.set_attn_implementation(PRE_DROPOUT_EAGER)

    def restore() -> None:
        for model, implementation in previous:
            model.set_attn_implementation(implementation)

    return restore
