"""Causal-LM teachers and a scratch causal-LM student (``task=causal_lm``).

``PretrainedLMTeacher``: ``AutoModelForCausalLM.from_pretrained`` of a hub name or a local directory,
or of a GGUF file in a directory (``gguf_file``; dequantized to float on load, which needs the
``gguf`` and ``accelerate`` packages: ``pip install 'distilkit[llm]'``). A GGUF teacher is slow to
load (~40 s for SmolLM2-135M on 2 cores), so the dequantized model is kept in the teacher cache as
safetensors (``cache_loaded``) and later runs load that. Not fine-tuned by default (``finetune.max_epochs: 0``).

``ScratchLMTeacher``: a small Llama (grouped-query attention, RoPE, SwiGLU, RMSNorm) from random init,
trained on the corpus's training split with next-token cross-entropy, with a WordPiece vocabulary
built deterministically from the same split (:mod:`distilkit.models.tokenizer`). Seconds on a CPU.

``ScratchLMStudent``: the teacher's architecture family and vocabulary at a given size, random init.
The layer-copy student (``student=distil``) works for causal LMs as for BERT (:mod:`distilkit.models.student`).
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from dataclasses import asdict

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from distilkit.errors import ConfigError, check
from distilkit.fingerprint import FileHashes, model_source
from distilkit.hub import from_pretrained
from distilkit.models.teacher import Finetune
from distilkit.models.tokenizer import build_vocab

LM_SPECIAL = {"pad_token": "[PAD]", "unk_token": "[UNK]", "bos_token": "[CLS]", "eos_token": "[SEP]", "mask_token": "[MASK]"}
GGUF_PACKAGES = ("gguf", "accelerate")


def train_lm_wordpiece(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Uncased WordPiece over the texts' words (the same vocabulary for the same texts), no special tokens added."""
    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    words = Counter(w for text in texts for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    vocab = build_vocab(words, vocab_size)
    tok = Tokenizer(models.WordPiece(vocab, unk_token=LM_SPECIAL["unk_token"]))
    tok.normalizer, tok.pre_tokenizer, tok.decoder = normalizer, pre_tokenizer, decoders.WordPiece()
    return PreTrainedTokenizerFast(tokenizer_object=tok, **LM_SPECIAL)


def check_gguf_packages() -> None:
    missing = [name for name in GGUF_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(
            "gguf_file", f"loading a GGUF file needs the {' and '.join(missing)} package{'s' if len(missing) > 1 else ''}: "
            f"pip install {' '.join(GGUF_PACKAGES)}  (or pip install -e '.[llm]')",
        )


class PretrainedLMTeacher:
    """A pretrained causal LM by hub name or directory; ``gguf_file`` names a GGUF file inside the directory."""

    tasks = ("causal_lm",)

    def __init__(self, name_or_path: str, gguf_file: str | None = None, finetune: dict | None = None):
        self.name_or_path = name_or_path
        self.gguf_file = gguf_file
        self.finetune = Finetune(**{"max_epochs": 0, **(finetune or {})})
        self.cache_loaded = gguf_file is not None  # keep the dequantized model: later runs skip the slow load

    def needs_finetune(self) -> bool:
        return self.finetune.max_epochs > 0

    def _kwargs(self) -> dict:
        if self.gguf_file is None:
            return {}
        check_gguf_packages()
        return {"gguf_file": self.gguf_file}

    def fingerprint(self, hashes: FileHashes) -> dict:
        return {"kind": "pretrained_lm", "source": model_source(self.name_or_path, hashes), "gguf_file": self.gguf_file,
                "finetune": asdict(self.finetune)}

    def config(self):
        return from_pretrained(AutoConfig, self.name_or_path, key="name_or_path", **self._kwargs())

    def tokenizer(self, train_texts: list[str] | None = None):
        return from_pretrained(AutoTokenizer, self.name_or_path, key="name_or_path", **self._kwargs())

    def build(self, train_texts: list[str]):
        model = from_pretrained(AutoModelForCausalLM, self.name_or_path, key="name_or_path", dtype=torch.float32, **self._kwargs())
        return plain_float(model), self.tokenizer()


def plain_float(model):
    """A GGUF model dequantized on load as an ordinary float model (transformers marks it quantized, which
    forbids ``save_pretrained`` and would re-quantize on reload); one still packed is refused."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is None:
        return model
    if any("gguf" in type(module).__name__.lower() for module in model.modules()):
        raise ConfigError("gguf_file", "transformers kept the GGUF weights packed (GGUF kernels installed); distillation "
                          "needs float weights: uninstall `kernels` or pass a float checkpoint directory")
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model


class ScratchLMTeacher:
    """A small Llama from random init, trained on the corpus (``finetune``), WordPiece vocabulary from the training split."""

    tasks = ("causal_lm",)

    def __init__(
        self,
        num_layers: int = 4,
        hidden_size: int = 64,
        num_attention_heads: int = 4,
        num_key_value_heads: int = 2,
        intermediate_size: int = 128,
        vocab_size: int = 1000,
        max_position_embeddings: int = 256,
        finetune: dict | None = None,
    ):
        for key, value in (("num_layers", num_layers), ("hidden_size", hidden_size), ("num_attention_heads", num_attention_heads),
                           ("num_key_value_heads", num_key_value_heads), ("intermediate_size", intermediate_size), ("vocab_size", vocab_size)):
            check(value >= 1, key, f"must be >= 1, got {value}")
        check(hidden_size % num_attention_heads == 0, "hidden_size", f"{hidden_size} must be divisible by num_attention_heads={num_attention_heads}")
        check(num_attention_heads % num_key_value_heads == 0, "num_key_value_heads",
              f"must divide num_attention_heads={num_attention_heads}, got {num_key_value_heads}")
        self.architecture = dict(
            num_hidden_layers=num_layers,
            hidden_size=hidden_size,
            num_attention_heads=num_attention_heads,
            num_key_value_heads=num_key_value_heads,
            intermediate_size=intermediate_size,
            max_position_embeddings=max_position_embeddings,
        )
        self.vocab_size = vocab_size
        self.finetune = Finetune(**(finetune or {}))

    def needs_finetune(self) -> bool:
        return self.finetune.max_epochs > 0

    def fingerprint(self, hashes: FileHashes) -> dict:
        return {"kind": "scratch_lm", **self.architecture, "vocab_size": self.vocab_size, "finetune": asdict(self.finetune)}

    def config(self, vocab_size: int | None = None, tokenizer=None) -> LlamaConfig:
        ids = {k: tokenizer.convert_tokens_to_ids(v) for k, v in (("pad_token_id", "[PAD]"), ("bos_token_id", "[CLS]"), ("eos_token_id", "[SEP]"))} if tokenizer else {}
        return LlamaConfig(vocab_size=vocab_size or self.vocab_size, tie_word_embeddings=True, **self.architecture, **ids)

    def tokenizer(self, train_texts: list[str]):
        return train_lm_wordpiece(train_texts, self.vocab_size)

    def build(self, train_texts: list[str]):
        tokenizer = self.tokenizer(train_texts)
        return LlamaForCausalLM(self.config(len(tokenizer), tokenizer)), tokenizer


class ScratchLMStudent:
    """The teacher's architecture family and vocabulary with ``num_layers`` layers of width ``hidden_size``; random init."""

    tasks = ("causal_lm",)

    def __init__(self, num_layers: int = 2, hidden_size: int = 64, num_attention_heads: int = 2, num_key_value_heads: int = 1, intermediate_size: int = 128):
        for key, value in (("num_layers", num_layers), ("hidden_size", hidden_size), ("num_attention_heads", num_attention_heads),
                           ("num_key_value_heads", num_key_value_heads), ("intermediate_size", intermediate_size)):
            check(value >= 1, key, f"must be >= 1, got {value}")
        check(hidden_size % num_attention_heads == 0, "hidden_size", f"{hidden_size} must be divisible by num_attention_heads={num_attention_heads}")
        check(num_attention_heads % num_key_value_heads == 0, "num_key_value_heads", f"must divide num_attention_heads={num_attention_heads}")
        self.sizes = dict(num_hidden_layers=num_layers, hidden_size=hidden_size, num_attention_heads=num_attention_heads,
                          num_key_value_heads=num_key_value_heads, intermediate_size=intermediate_size)

    def build(self, teacher):
        config = teacher.config.to_dict()
        config.update(self.sizes, head_dim=self.sizes["hidden_size"] // self.sizes["num_attention_heads"])
        config.pop("layer_types", None)  # per-layer kinds follow the new depth
        config.pop("quantization_config", None)
        config = type(teacher.config).from_dict(config)
        return AutoModelForCausalLM.from_config(config)


class PretrainedLMStudent(PretrainedLMTeacher):
    """A pretrained causal LM as the student (hub name or directory; ``gguf_file`` as for the teacher), trained
    further by distillation. It brings its own tokenizer, which must be the teacher's: the task compares the
    two (:mod:`distilkit.models.tokenizer_check`) before anything runs. In the preflight (a teacher on the
    meta device) only its architecture is built."""

    def __init__(self, name_or_path: str, gguf_file: str | None = None):
        super().__init__(name_or_path, gguf_file)

    def build(self, teacher):
        if next(teacher.parameters()).is_meta:
            return AutoModelForCausalLM.from_config(self.config())
        return super().build([])[0]
