"""Sequence-level knowledge distillation (Kim & Rush, "Sequence-Level Knowledge Distillation", EMNLP 2016).

Word-level KD matches the teacher's next-token distribution at every position of the corpus; sequence-level
KD trains the student on the teacher's own output: ``x`` a prompt, ``y_hat = argmax_y p_teacher(y | x)``
approximated by greedy decoding (Kim & Rush use beam search), and the student minimises
``-log p_student(y_hat | x)``. Here the prompts are ``prompts`` windows of ``prompt_tokens`` tokens taken
from the training split's token stream at evenly spaced offsets (no randomness), each continued greedily by
the teacher for exactly ``new_tokens`` tokens (end-of-sequence suppressed so every block has one length);
the blocks ``prompt + continuation`` replace the training split. With ``loss=lm_ce`` that is Seq-KD as
published; with a word-level KD loss the teacher's top-k over the generated blocks is stored and used too
(their "Seq-KD + Word-KD"). The loss covers the whole block (the prompt tokens are real corpus text).

The teacher generates once: the blocks (token ids) and their decoded texts are stored under
``.cache/distilkit/teacher_sequences/`` keyed by teacher, prompts and decoding settings (content hashes,
like the teacher logits), written to a temporary name and renamed under a per-key file lock.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import torch

from distilkit.errors import ConfigError
from distilkit.training.atomic import torch_save_atomic
from distilkit.training.distributed import barrier, exclusive, is_rank_zero

log = logging.getLogger(__name__)


def prompts_from(blocks: list[list[int]], prompts: int, prompt_tokens: int) -> torch.Tensor:
    """``[prompts, prompt_tokens]`` windows of the blocks' concatenated token stream at evenly spaced offsets."""
    stream = torch.tensor([t for block in blocks for t in block], dtype=torch.long)
    last = len(stream) - prompt_tokens
    if last < 0:
        raise ConfigError("task.sequence_kd.prompt_tokens", f"is {prompt_tokens} but the training split has only {len(stream)} tokens")
    offsets = torch.linspace(0, last, prompts).round().long()
    return torch.stack([stream[o : o + prompt_tokens] for o in offsets.tolist()])


@torch.inference_mode()
def teacher_continuations(teacher, prompts: torch.Tensor, new_tokens: int, pad_id: int, batch_size: int = 16) -> torch.Tensor:
    """``[N, prompt_tokens + new_tokens]``: each prompt followed by the teacher's greedy continuation."""
    teacher.eval()
    device = next(teacher.parameters()).device
    out = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size].to(device)
        ids = teacher.generate(input_ids=batch, attention_mask=torch.ones_like(batch), do_sample=False, use_cache=True,
                               max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=pad_id)
        out.append(ids.cpu())
    return torch.cat(out)


class SequenceStore:
    """Teacher-generated blocks on disk: ``{"input_ids": LongTensor [N, L], "texts": [str]}`` per key."""

    def __init__(self, root: str | Path):
        self.root = Path(root) / "teacher_sequences"

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def load(self, key: str, shape: tuple[int, int]) -> dict | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            stored = torch.load(path, weights_only=True)
            if tuple(stored["input_ids"].shape) == shape and len(stored["texts"]) == shape[0]:
                return stored
            log.warning("teacher sequences %s have the wrong shape; regenerating", path)
        except Exception as err:
            log.warning("teacher sequences %s are unreadable (%s); regenerating", path, str(err).splitlines()[0])
        return None

    def get_or_compute(self, key: str, shape: tuple[int, int], compute: Callable[[], dict]) -> dict:
        if not is_rank_zero():  # DDP: rank 0 generates and writes; the others wait, then read
            barrier()
            return self.load(key, shape) or compute()
        with exclusive(self.root.parent / ".locks" / f"sequences-{key}.lock"):
            stored = self.load(key, shape)
            if stored is None:
                stored = compute()
                assert tuple(stored["input_ids"].shape) == shape, (stored["input_ids"].shape, shape)
                torch_save_atomic(stored, self.path(key))
        barrier()
        return stored
