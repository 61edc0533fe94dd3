"""The trained student as an MLflow PyTorch model: one tensor of token ids in, logits out.

MLflow's ``pytorch`` flavor (pyfunc included) calls the model with ONE tensor, so the student is wrapped:
``forward(input_ids, attention_mask=None)`` takes padded token ids (the mask, when not given, is where
the ids are not the tokenizer's pad id; all ones for a tokenizer without one) and returns the logits tensor, not a Hugging Face output object.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

CAPTURING_HOOKS = "transformers.utils.output_capturing"  # where transformers' hidden-state/attention capture hooks live


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


@contextmanager
def without_capturing_hooks(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` without the forward hooks transformers installs to capture hidden states and attentions
    (installed once a forward asks for them, e.g. under ``loss=distilbert``; their closures hold a
    ``ContextVar``, which can't be pickled). Reinstalled by transformers on the next such call; restored here after."""
    removed = []
    for module in model.modules():
        for hook_id, hook in list(module._forward_hooks.items()):
            if getattr(hook, "__module__", None) == CAPTURING_HOOKS:
                removed.append((module, hook_id, hook, module._forward_hooks_with_kwargs.get(hook_id), module._forward_hooks_always_called.get(hook_id)))
                del module._forward_hooks[hook_id]
                module._forward_hooks_with_kwargs.pop(hook_id, None)
                module._forward_hooks_always_called.pop(hook_id, None)
    flags = [(m, m.__dict__["_output_capturing_hooks_installed"]) for m in model.modules() if "_output_capturing_hooks_installed" in m.__dict__]
    for m, _ in flags:
        m._output_capturing_hooks_installed = False
    try:
        yield model
    finally:
        for module, hook_id, hook, with_kwargs, always in removed:
            module._forward_hooks[hook_id] = hook
            if with_kwargs is not None:
                module._forward_hooks_with_kwargs[hook_id] = with_kwargs
            if always is not None:
                module._forward_hooks_always_called[hook_id] = always
        for m, value in flags:
            m._output_capturing_hooks_installed = value
