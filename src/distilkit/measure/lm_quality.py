"""Causal-LM quality of any model over packed blocks: next-token log-probs, perplexity, agreement, bytes.

One loop serves the trained student (right after fit), the converted (int8/int4) student that is
deployed and timed, so the deployed model's perplexity comes from the same code as the student's.
"""

from __future__ import annotations

import io
import math

import torch
from torch import nn

MB = 1024 * 1024


@torch.inference_mode()
def next_token_predictions(model: nn.Module, inputs: dict[str, torch.Tensor], batch_size: int = 8) -> dict[str, torch.Tensor]:
    """Per block ``[N, L - 1]``: ``target`` (log-prob of each real next token) and ``top1`` (the argmax token)."""
    model.eval()
    target, top1 = [], []
    for start in range(0, len(inputs["input_ids"]), batch_size):
        ids, mask = inputs["input_ids"][start : start + batch_size], inputs["attention_mask"][start : start + batch_size]
        log_q = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), -1)
        target.append(log_q.gather(-1, ids[:, 1:, None]).squeeze(-1))
        top1.append(log_q.argmax(-1))
    return {"target": torch.cat(target), "top1": torch.cat(top1)}


def real_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """``[N, L - 1]`` bool: positions whose token and next token are both real (not padding)."""
    return (attention_mask[:, 1:] * attention_mask[:, :-1]).bool()


def mean_nll(target: torch.Tensor, real: torch.Tensor) -> float:
    """Mean negative log-likelihood of the real next tokens (perplexity is its exp)."""
    return -float(target[real].double().sum()) / int(real.sum())


def perplexity(target: torch.Tensor, real: torch.Tensor) -> float:
    return math.exp(mean_nll(target, real))


def state_dict_mb(model: nn.Module) -> float:
    """Bytes of ``torch.save(model.state_dict())`` in MB: fp32, int8 (quantized tensors, packed params) and
    packed 4-bit buffers alike, shared (tied) storages counted once."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes / MB
