"""Students: DistilBERT-style layer copies of the teacher (BERT or causal LM), or a smaller BERT from random init.

``DistilStudent`` (Sanh et al., 2019): same family and width as the teacher, fewer layers; the
embeddings, pooler and classifier are copied and student layer ``i`` is a copy of teacher layer
``layer_map[i]``. By default one layer out of two (``[0, 2, 4, ...]``).
"""

from __future__ import annotations

import copy

from torch import nn
from transformers import BertConfig, BertForSequenceClassification, PreTrainedModel

from distilkit.errors import ConfigError, check


def default_layer_map(teacher_layers: int, student_layers: int) -> list[int]:
    """Evenly spaced teacher layers starting at 0: 12 -> 6 gives ``[0, 2, 4, 6, 8, 10]``."""
    return [round(i * teacher_layers / student_layers) for i in range(student_layers)]


def layer_list_name(model: PreTrainedModel) -> str:
    """The name of the model's stack of transformer layers: the ``ModuleList`` with ``num_hidden_layers``
    entries (``bert.encoder.layer`` for BERT, ``model.layers`` for Llama-family causal LMs)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == model.config.num_hidden_layers:
            return name
    raise ConfigError("_target_", f"{type(model).__name__} has no list of {model.config.num_hidden_layers} layers to copy from")


def dropout_keys(config) -> list[str]:
    """The config's dropout probabilities that are set (BERT: ``hidden_dropout_prob``,
    ``attention_probs_dropout_prob``, ``classifier_dropout`` when not null; Llama: ``attention_dropout``)."""
    return [k for k, v in config.to_dict().items() if "dropout" in k and isinstance(v, (int, float)) and not isinstance(v, bool)]


def copy_layers(teacher: PreTrainedModel, layer_map: list[int], dropout: float | None = None) -> PreTrainedModel:
    """A new model equal to ``teacher`` except that its layer stack keeps only layers ``layer_map``, in order,
    and, when ``dropout`` is given, every dropout probability of its config is ``dropout``."""
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(layer_map)
    if dropout is not None:
        for key in dropout_keys(config):
            setattr(config, key, dropout)
    if isinstance(getattr(config, "layer_types", None), list):  # per-layer kinds (e.g. sliding window) follow their layers
        config.layer_types = [config.layer_types[t] for t in layer_map]
    student = type(teacher)(config)
    stack = layer_list_name(teacher)
    keep = {f"{stack}.{t}.": f"{stack}.{s}." for s, t in enumerate(layer_map)}
    state = {}
    for name, tensor in teacher.state_dict().items():
        if not name.startswith(f"{stack}."):
            state[name] = tensor.clone()
            continue
        for src, dst in keep.items():
            if name.startswith(src):
                state[dst + name[len(src):]] = tensor.clone()
    student.load_state_dict(state, strict=True)
    return student


class DistilStudent:
    """``num_layers`` (default: half the teacher's) or an explicit ``layer_map`` of teacher layer indices.
    Serves both tasks: a BERT classifier's encoder layers or a causal LM's decoder layers are copied alike.
    ``dropout``: every dropout probability of the student (null: the teacher's)."""

    tasks = ("classification", "causal_lm")

    def __init__(self, num_layers: int | None = None, layer_map: list[int] | None = None, dropout: float | None = None):
        check(dropout is None or (isinstance(dropout, (int, float)) and not isinstance(dropout, bool) and 0.0 <= dropout < 1.0),
              "dropout", f"must be in [0, 1) or null (the teacher's), got {dropout!r}")
        self.dropout = dropout
        if layer_map is not None:
            layer_map = list(layer_map)
            check(len(layer_map) > 0, "layer_map", "must list at least one teacher layer index")
            check(
                num_layers is None or num_layers == len(layer_map),
                "num_layers",
                f"is {num_layers} but layer_map has {len(layer_map)} entries; set one of them",
            )
        check(num_layers is None or num_layers >= 1, "num_layers", f"must be >= 1, got {num_layers}")
        self.num_layers = num_layers
        self.layer_map = layer_map

    def resolve_layer_map(self, teacher_layers: int) -> list[int]:
        if self.layer_map is not None:
            bad = [i for i in self.layer_map if not 0 <= i < teacher_layers]
            if bad:
                raise ConfigError("layer_map", f"indices {bad} out of range: the teacher has layers 0..{teacher_layers - 1}")
            return self.layer_map
        num_layers = self.num_layers or max(1, teacher_layers // 2)
        check(
            num_layers <= teacher_layers,
            "num_layers",
            f"is {num_layers} but the teacher has only {teacher_layers} layers; allowed 1..{teacher_layers}",
        )
        return default_layer_map(teacher_layers, num_layers)

    def build(self, teacher: PreTrainedModel) -> PreTrainedModel:
        return copy_layers(teacher, self.resolve_layer_map(teacher.config.num_hidden_layers), self.dropout)


class ScratchStudent:
    """A smaller BERT with the teacher's vocabulary and labels, randomly initialized."""

    def __init__(self, num_layers: int = 2, hidden_size: int = 128, num_attention_heads: int = 2, intermediate_size: int = 512):
        for key, value in (("num_layers", num_layers), ("hidden_size", hidden_size), ("num_attention_heads", num_attention_heads), ("intermediate_size", intermediate_size)):
            check(value >= 1, key, f"must be >= 1, got {value}")
        check(hidden_size % num_attention_heads == 0, "hidden_size", f"{hidden_size} must be divisible by num_attention_heads={num_attention_heads}")
        self.config = dict(
            num_hidden_layers=num_layers,
            hidden_size=hidden_size,
            num_attention_heads=num_attention_heads,
            intermediate_size=intermediate_size,
        )

    def build(self, teacher: PreTrainedModel) -> PreTrainedModel:
        t = teacher.config
        config = BertConfig(
            vocab_size=t.vocab_size,
            num_labels=t.num_labels,
            max_position_embeddings=t.max_position_embeddings,
            type_vocab_size=t.type_vocab_size,
            pad_token_id=t.pad_token_id,
            **self.config,
        )
        return BertForSequenceClassification(config)
