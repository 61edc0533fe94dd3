"""The causal-LM teacher's outputs per split, computed once and stored: top-k log-probs per token.

Per block ``[L - 1, ...]`` (positions that predict a next token): ``logprobs`` ``[k]`` float32 (descending),
``indices`` ``[k]`` int32, ``rest`` (log of the mass outside the top-k), and ``target`` (the log-prob of
the real next token, for the teacher's perplexity with no teacher forward pass). Padding positions are 0.
With a ``generator`` the training split's form is the sampled one instead
(:func:`distilkit.losses.causal_lm.sampled_teacher`: ``k`` draws from the teacher, their frequencies, no rest
mass: ``log 0``). Bytes per token: ``8 k + 8``. Entries are written to a temporary name and renamed; an unreadable
entry or one of the wrong shape is recomputed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import torch

from distilkit.losses.causal_lm import sampled_teacher, sparse_teacher
from distilkit.training.atomic import torch_save_atomic

log = logging.getLogger(__name__)
FIELDS = ("logprobs", "indices", "rest", "target")


def bytes_per_token(k: int) -> int:
    return 4 * k + 4 * k + 4 + 4


@torch.inference_mode()
def teacher_topk(model: torch.nn.Module, inputs: dict[str, torch.Tensor], k: int, batch_size: int = 8,
                 generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """The stored form of ``model``'s next-token distributions over every block of ``inputs`` ``[N, L]``: top-k, or
    ``k`` samples drawn with ``generator``."""
    model.eval()
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    out = {name: [] for name in FIELDS}
    for start in range(0, len(ids), batch_size):
        b_ids, b_mask = ids[start : start + batch_size], mask[start : start + batch_size]
        logits = model(input_ids=b_ids, attention_mask=b_mask).logits[:, :-1].float()
        sparse = sparse_teacher(logits, k) if generator is None else sampled_teacher(logits, k, generator)
        target = torch.log_softmax(logits, -1).gather(-1, b_ids[:, 1:, None]).squeeze(-1)
        real = (b_mask[:, 1:] * b_mask[:, :-1]).bool()
        out["logprobs"].append(torch.where(real[..., None], sparse.logprobs, 0.0))
        out["indices"].append(torch.where(real[..., None], sparse.indices, 0).int())
        out["rest"].append(torch.where(real, sparse.rest, 0.0))
        out["target"].append(torch.where(real, target, 0.0))
    return {name: torch.cat(chunks) for name, chunks in out.items()}


class TopKStore:
    def __init__(self, root: str | Path):
        self.root = Path(root) / "teacher_topk"

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def get_or_compute(self, key: str, shape: tuple[int, int, int], compute: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """``shape`` = (blocks, positions, k)."""
        path = self.path(key)
        if path.is_file():
            try:
                stored = torch.load(path, weights_only=True)
                if set(stored) == set(FIELDS) and tuple(stored["logprobs"].shape) == shape and (stored["logprobs"] <= 0).all():  # log-probs; NaN and +inf fail, log 0 (a sampled slot) passes
                    return stored
                log.warning("teacher top-k %s has the wrong shape or values; recomputing", path)
            except Exception as err:
                log.warning("teacher top-k %s is unreadable (%s); recomputing", path, str(err).splitlines()[0])
        stored = compute()
        assert tuple(stored["logprobs"].shape) == shape, (stored["logprobs"].shape, shape)
        torch_save_atomic(stored, path)
        return stored
