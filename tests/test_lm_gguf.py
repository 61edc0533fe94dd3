"""The GGUF teacher from ../shared (SmolLM2-135M-Instruct, 4-bit): architecture, weights, a sensible answer.

Skipped where ../shared or the ``gguf``/``accelerate`` packages are absent (``pip install gguf accelerate``);
loading the weights (dequantized, ~40 s on 2 cores) is marked slow.
"""

from __future__ import annotations

import importlib.util

import pytest

from conftest import SHARED
from distilkit.errors import ConfigError
from distilkit.models.lm import PretrainedLMTeacher

SMOLLM2 = SHARED / "models" / "SmolLM2-135M-Instruct-Q4_1"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
HAS_GGUF = all(importlib.util.find_spec(name) is not None for name in ("gguf", "accelerate"))
needs_gguf = pytest.mark.skipif(not (SMOLLM2 / GGUF).is_file() or not HAS_GGUF, reason="../shared SmolLM2 GGUF or the gguf/accelerate packages absent")


def test_missing_gguf_package_is_one_line(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    with pytest.raises(ConfigError, match=r"^gguf_file: loading a GGUF file needs the gguf (and accelerate )?packages?: pip install gguf accelerate"):
        PretrainedLMTeacher(str(SMOLLM2), gguf_file=GGUF).config()


@needs_gguf
def test_gguf_teacher_architecture_reads_without_weights():
    config = PretrainedLMTeacher(str(SMOLLM2), gguf_file=GGUF).config()
    assert (config.num_hidden_layers, config.hidden_size, config.vocab_size) == (30, 576, 49152)


@needs_gguf
@pytest.mark.slow
def test_gguf_teacher_loads_and_answers():
    import torch

    model, tokenizer = PretrainedLMTeacher(str(SMOLLM2), gguf_file=GGUF).build([])
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    ids = tokenizer("The capital of France is", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        out = model.generate(ids, max_new_tokens=3, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids.shape[1]:])
