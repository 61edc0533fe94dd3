"""What a loss sees of a model's forward pass: tensors only."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Outputs:
    logits: torch.Tensor  # [batch, classes]
    hidden_states: tuple[torch.Tensor, ...] | None = None  # (embeddings, layer 1, ..., layer L), each [batch, seq, hidden]
    attentions: tuple[torch.Tensor, ...] | None = None  # per layer [batch, heads, seq, seq], rows sum to 1

    @classmethod
    def of(cls, hf_output) -> "Outputs":
        return cls(hf_output.logits, hf_output.hidden_states, hf_output.attentions or None)


class Needs:
    """What a loss needs from the teacher: its logits (served from the soft-label store) or more (run online)."""

    NOTHING = "nothing"
    LOGITS = "logits"
    HIDDEN = "hidden"  # hidden states, run the teacher online
    HIDDEN_AND_ATTENTIONS = "hidden_and_attentions"
