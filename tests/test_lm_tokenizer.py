"""Teacher and student tokenizers compared beyond the vocabulary size: a mismatch is one line at start."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, models
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from distilkit.errors import ConfigError
from distilkit.models.lm import LM_SPECIAL, train_lm_wordpiece
from distilkit.models.tokenizer_check import tokenizer_mismatch
from distilkit.pipeline import Run
from test_lm_pipeline import LM, mlflow_runs

TEXTS = [f"the film was {w} and the plot {v}" for w in ("good", "bad", "dull", "fine") for v in ("moved", "dragged", "worked")]


def _tokenizer(swap: tuple[str, str] | None = None, eos: str | None = None) -> PreTrainedTokenizerFast:
    base = train_lm_wordpiece(TEXTS, 60)
    vocab = base.get_vocab()
    if swap:
        a, b = swap
        vocab[a], vocab[b] = vocab[b], vocab[a]
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend = base.backend_tokenizer
    tok.normalizer, tok.pre_tokenizer, tok.decoder = backend.normalizer, backend.pre_tokenizer, backend.decoder
    return PreTrainedTokenizerFast(tokenizer_object=tok, **{**LM_SPECIAL, **({"eos_token": eos} if eos else {})})


def test_mismatch_names_the_first_difference():
    same = _tokenizer()
    assert tokenizer_mismatch(same, _tokenizer()) is None
    swapped = tokenizer_mismatch(same, _tokenizer(swap=("film", "plot")))
    assert "2 map to other ids" in swapped and ("'film'" in swapped or "'plot'" in swapped)
    assert "special token eos_token differs" in tokenizer_mismatch(same, _tokenizer(eos="[MASK]"))
    small = train_lm_wordpiece(TEXTS[:3], 60)
    assert len(small) < len(same)
    assert tokenizer_mismatch(same, small) == f"the teacher's vocabulary has {len(same)} tokens, the student's {len(small)}"


def _save(path, tokenizer):
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                         intermediate_size=32, max_position_embeddings=128)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.parametrize("student_tokenizer,error", [({}, None), ({"swap": ("film", "plot")}, "map to other ids"),
                                                      ({"eos": "[MASK]"}, "eos_token differs")], ids=["same", "ids", "special"])
def test_pretrained_student_with_another_tokenizer_is_refused_at_start(student_tokenizer, error, compose_cfg, tmp_path):
    teacher = _save(tmp_path / "teacher", _tokenizer())
    student = _save(tmp_path / "student", _tokenizer(**student_tokenizer))
    lm = [o for o in LM if not o.startswith("teacher.")]
    cfg = compose_cfg(*lm, "teacher=smollm2", f"teacher.name_or_path={teacher}", "teacher.gguf_file=null", "data.max_length=32",
                      "student=pretrained_lm", f"student.name_or_path={student}")
    if error is None:
        Run(cfg, {}).preflight()  # same vocabulary size, same mapping, same special tokens: accepted
        return
    with pytest.raises(ConfigError) as err:
        Run(cfg, {})()
    message = str(err.value)
    assert message.startswith("student: tokenizer mismatch:") and error in message and "\n" not in message
    assert not (tmp_path / "mlflow.db").exists() or mlflow_runs(tmp_path).empty
