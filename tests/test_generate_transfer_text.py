"""bench/generate_transfer_text.py: a seeded, resumable, decontaminated transfer set from a causal LM."""

from __future__ import annotations

import importlib.util

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from conftest import ROOT
from distilkit.models.lm import LM_SPECIAL, train_lm_wordpiece

spec = importlib.util.spec_from_file_location("generate_transfer_text", ROOT / "bench" / "generate_transfer_text.py")
gen = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gen)

WORDS = ["the film was good", "the plot was bad", "a dull movie", "fine acting", "it moved me", "the cast worked"]


def _setup(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.txt").write_text("".join(f"{i % 2} {t}\n" for i, t in enumerate(WORDS)))
    (data / "dev.txt").write_text("1 the film\n")
    (data / "test.txt").write_text("0 the plot\n")
    tok = train_lm_wordpiece(WORDS * 3, 60)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                         num_key_value_heads=1, intermediate_size=32, max_position_embeddings=256,
                                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id))
    model.save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    return ["--data", str(data), "--model", str(tmp_path / "lm"), "--gguf-file", "", "--batch", "4", "--max-new-tokens", "6", "--shots", "2"]


def test_same_arguments_write_the_same_file_a_resumed_run_continues_it_and_no_line_is_dev_or_test(tmp_path, capsys):
    args = _setup(tmp_path)
    first, second, resumed = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt"
    assert gen.main([*args, "--out", str(first), "--n", "10"]) == 0
    assert gen.main([*args, "--out", str(second), "--n", "10"]) == 0
    lines = first.read_text().splitlines()
    assert len(lines) == 10 and first.read_text() == second.read_text()  # seeded
    assert len(set(lines)) == 10 and not set(lines) & {"the film", "the plot", *WORDS}  # no repeat, eval or training text
    assert all(len(line.split()) >= 3 and line == line.lower() for line in lines)
    assert gen.main([*args, "--out", str(resumed), "--n", "4"]) == 0  # killed after 4 ...
    assert gen.main([*args, "--out", str(resumed), "--n", "10"]) == 0  # ... and run again: the later batches follow
    assert resumed.read_text().splitlines()[:4] == lines[:4] and len(resumed.read_text().splitlines()) == 10
    assert gen.main([*args, "--out", str(tmp_path / "d.txt"), "--n", "10", "--seed", "1"]) == 0
    assert (tmp_path / "d.txt").read_text() != first.read_text()


def test_a_sample_is_its_first_line_lowercased_and_dev_test_repeats_and_short_lines_are_dropped():
    assert gen.clean(" The Film was  GOOD .\n- another line") == "the film was good ."
    held, seen = {"a dev sentence here"}, {"a training sentence here"}
    assert gen.rejected("a dev sentence here", held, seen) == "dev/test"
    assert gen.rejected("a training sentence here", held, seen) == "repeat"
    assert gen.rejected("two words", held, seen) == "short"
    assert gen.rejected("a new sentence here", held, seen) is None
