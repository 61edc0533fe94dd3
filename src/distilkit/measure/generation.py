"""CPU generation speed at batch 1: greedy decoding with the KV cache, models interleaved, threads fixed.

Per model: time to first token (``generate`` with 1 new token: the prompt's prefill and one step) and
the time for ``new_tokens`` tokens; decode speed = ``(new_tokens - 1) / (t_all - t_first)`` tokens/s.
Each figure is the median of ``repeats`` timed calls after one warm-up call; the models take turns
in every repeat, so they share the same stretch of time.
"""

from __future__ import annotations

import statistics
import time

import torch


@torch.inference_mode()
def _generate_s(model, prompt: torch.Tensor, new_tokens: int) -> float:
    start = time.perf_counter()
    model.generate(
        input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=False, use_cache=True,
        max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=model.config.eos_token_id or 0,
    )
    return time.perf_counter() - start


def generation_metrics(models: dict[str, torch.nn.Module], prompt: torch.Tensor, new_tokens: int, repeats: int, threads: int) -> dict[str, float]:
    """``{role}/gen_ttft_ms``, ``{role}/gen_decode_tokens_per_s`` for each model; ``measure/gen_*`` for the set-up."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for model in models.values():
            model.eval()
            _generate_s(model, prompt, 2)  # warm-up
        first = {role: [] for role in models}
        full = {role: [] for role in models}
        for _ in range(repeats):
            for role, model in models.items():
                first[role].append(_generate_s(model, prompt, 1))
                full[role].append(_generate_s(model, prompt, new_tokens))
    finally:
        torch.set_num_threads(previous)
    out = {"measure/gen_prompt_tokens": prompt.shape[1], "measure/gen_new_tokens": new_tokens, "measure/gen_threads": threads,
           "measure/gen_repeats": repeats}
    for role in models:
        t1, tn = statistics.median(first[role]), statistics.median(full[role])
        out[f"{role}/gen_ttft_ms"] = 1000 * t1
        out[f"{role}/gen_decode_tokens_per_s"] = (new_tokens - 1) / max(tn - t1, 1e-9)
        out[f"{role}/gen_tokens_per_s"] = new_tokens / tn
    return out
