"""CPU generation speed at batch 1: greedy decoding with the KV cache, models interleaved, threads fixed.

Per model, one ``generate`` call of ``new_tokens`` tokens, clocked by a streamer as each token comes out:
time to first token (from the call to the first new token: the prompt's prefill and one step) and
decode speed, ``(new_tokens - 1) / (t_last - t_first)`` tokens/s over the tokens after the first.
Each figure is the median of ``repeats`` timed calls after one warm-up call; the models take turns
in every repeat, so they share the same stretch of time.
"""

from __future__ import annotations

import statistics
import time

import torch
from transformers.generation.streamers import BaseStreamer


class _Clock(BaseStreamer):
    """Timestamps of the new tokens (``generate`` hands the prompt to ``put`` first, then each new token)."""

    def __init__(self):
        self.calls: list[float] = []

    def put(self, value) -> None:
        self.calls.append(time.perf_counter())

    def end(self) -> None:
        pass


@torch.inference_mode()
def _generate(model, prompt: torch.Tensor, new_tokens: int) -> tuple[float, float]:
    """``(seconds to the first new token, seconds from the first to the last new token)``."""
    clock = _Clock()
    start = time.perf_counter()
    model.generate(
        input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=False, use_cache=True, streamer=clock,
        max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=model.config.eos_token_id or 0,
    )
    tokens = clock.calls[1:]  # calls[0] is the prompt
    assert len(tokens) == new_tokens, (len(tokens), new_tokens)
    return tokens[0] - start, tokens[-1] - tokens[0]


def generation_metrics(models: dict[str, torch.nn.Module], prompt: torch.Tensor, new_tokens: int, repeats: int, threads: int) -> dict[str, float]:
    """``{role}/gen_ttft_ms``, ``{role}/gen_decode_tokens_per_s`` for each model; ``measure/gen_*`` for the set-up."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for model in models.values():
            model.eval()
            _generate(model, prompt, 2)  # warm-up
        first = {role: [] for role in models}
        decode = {role: [] for role in models}
        for _ in range(repeats):
            for role, model in models.items():
                t_first, t_rest = _generate(model, prompt, new_tokens)
                first[role].append(t_first)
                decode[role].append(t_rest)
    finally:
        torch.set_num_threads(previous)
    out = {"measure/gen_prompt_tokens": prompt.shape[1], "measure/gen_new_tokens": new_tokens, "measure/gen_threads": threads,
           "measure/gen_repeats": repeats}
    for role in models:
        out[f"{role}/gen_ttft_ms"] = 1000 * statistics.median(first[role])
        out[f"{role}/gen_decode_tokens_per_s"] = (new_tokens - 1) / max(statistics.median(decode[role]), 1e-9)
    return out
