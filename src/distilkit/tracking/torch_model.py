"""The trained student as an MLflow PyTorch model: one tensor of token ids in, logits out.

MLflow's ``pytorch`` flavor (pyfunc included) calls the model with ONE tensor, so the student is wrapped:
``forward(input_ids, attention_mask=None)`` takes padded token ids (the mask, when not given, is where
the ids are not the tokenizer's pad id; all ones for a tokenizer without one) and returns the logits tensor, not a Hugging Face output object.
"""

from __future__ import annotations

import torch
from torch import nn


class LogitsFromIds(nn.Module):
    """``student`` returning its logits for padded ``input_ids`` (``attention_mask`` optional)."""

    def __init__(self, student: nn.Module, pad_token_id: int | None):
        super().__init__()
        self.student = student
        self.pad_token_id = None if pad_token_id is None else int(pad_token_id)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        input_ids = input_ids.long()
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids) if self.pad_token_id is None else (input_ids != self.pad_token_id).long()
        return self.student(input_ids=input_ids, attention_mask=attention_mask).logits
