"""Students of your own for distilkit: a plain ``nn.Module`` and a Hugging Face model from a factory.

Both are named by ``_target_`` with ``_partial_: true`` in ``conf/student/*.yaml``; distilkit calls them
with the teacher's ``vocab_size`` and ``num_labels`` (keywords) on top of the configured keys.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import DistilBertConfig, DistilBertForSequenceClassification


class TinyCNN(nn.Module):
    """A CNN sentence classifier (Kim, 2014): token embeddings, 1-D convolutions of several widths,
    max-pooling over the real tokens, a linear classifier. ``forward(input_ids, attention_mask)``
    returns logits ``[batch, num_labels]``: that is all distilkit needs of a plain module."""

    def __init__(self, vocab_size: int, num_labels: int, embedding_dim: int = 64, channels: int = 64,
                 kernel_sizes: list[int] = (3, 5), dropout: float = 0.1):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.convs = nn.ModuleList(nn.Conv1d(embedding_dim, channels, k, padding=k // 2) for k in kernel_sizes)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(channels * len(self.convs), num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.embedding(input_ids).transpose(1, 2)  # [batch, embedding_dim, seq]
        padding = attention_mask[:, None, :] == 0
        pooled = []
        for conv in self.convs:
            h = torch.relu(conv(x))[..., : x.shape[-1]]  # even kernels make one extra position
            pooled.append(h.masked_fill(padding, 0.0).amax(-1))  # ReLU >= 0, so padding at 0 never wins
        return self.classifier(self.dropout(torch.cat(pooled, -1)))


def small_distilbert(vocab_size: int, num_labels: int, dim: int = 64, n_layers: int = 2, n_heads: int = 2,
                     hidden_dim: int = 256, max_position_embeddings: int = 512) -> DistilBertForSequenceClassification:
    """A small randomly initialized DistilBERT: any ``PreTrainedModel`` for sequence classification works as
    is, and serves hidden states and attention maps to ``loss=distilbert`` / ``loss=intermediate``."""
    config = DistilBertConfig(vocab_size=vocab_size, num_labels=num_labels, dim=dim, n_layers=n_layers, n_heads=n_heads,
                              hidden_dim=hidden_dim, max_position_embeddings=max_position_embeddings)
    return DistilBertForSequenceClassification(config)
