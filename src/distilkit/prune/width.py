"""``pruner=width``: Minitron-style width pruning — attention heads, FFN neurons and hidden (embedding)
channels removed by importance, then distilled (Muralidharan et al., "Compact Language Models via
Pruning and Knowledge Distillation", 2024).

In ``prepare``: heads (fraction ``heads``, global ranking, :class:`distilkit.prune.HeadPruner`), FFN
neurons (fraction ``ffn`` per layer, :class:`distilkit.prune.FFNPruner`), then the fraction ``hidden``
of the residual-stream channels. Minitron ranks embedding channels by the mean LayerNorm output
activation over calibration data; that is ``importance=activation`` (:mod:`distilkit.prune.activation`,
measured by :meth:`WidthPruner.calibrate` on training rows before fit). The default ``importance=weight``
needs no data and uses the bound it approximates: channel ``j`` of a LayerNorm output is ``gamma_j xhat_j + beta_j`` with ``|xhat_j|``
of order 1, and it reaches the next block only through column ``j`` of the Linears that read it, so
``score_j = sum over residual LayerNorms of (|gamma_j| + |beta_j|) * ||W_read[:, j]||``
(readers: the next layer's query/key/value, the FFN input, and the pooler after the last layer).
The kept channels are removed everywhere the residual stream lives: the three embedding tables
(columns), every LayerNorm, the rows of the attention-output and FFN-output projections, the
columns of query/key/value, FFN input and pooler (rows and columns of the pooler) and the
classifier's columns. ``config.hidden_size`` becomes the kept width; head size is unchanged (the
attention width is heads x head size, independent of the hidden width). The structure is recorded
for :func:`distilkit.prune.surgery.load_pruned`. The loss is bound again after ``prepare``
(:meth:`distilkit.training.module.StudentModule.setup`), so ``loss=intermediate`` learns its hidden-state
projections from the pruned width (Minitron's prune-then-distill with intermediate states); ``distilbert``'s
cosine term needs equal widths and says so.
"""

from __future__ import annotations

import torch
from torch import nn

from distilkit.errors import ConfigError, is_int
from distilkit.prune.activation import ActivationScores, activation_importance
from distilkit.prune.base import Pruner, check_fraction
from distilkit.prune.encoder import encoder_layers
from distilkit.prune.ffn import FFNPruner
from distilkit.prune.heads import HeadPruner
from distilkit.prune.surgery import keep_columns, keep_rows, record_structure


def _readers_of_residual(model: nn.Module) -> list[tuple[nn.LayerNorm, list[nn.Linear]]]:
    """Every LayerNorm that writes the residual stream, with the Linears that read its output."""
    base = model.base_model
    layers = list(encoder_layers(model))
    pairs = []
    for i, writer in enumerate([base.embeddings.LayerNorm] + [layer.output.LayerNorm for layer in layers]):
        if i < len(layers):
            attn = layers[i].attention.self
            readers = [attn.query, attn.key, attn.value]
        else:
            readers = [base.pooler.dense] if getattr(base, "pooler", None) is not None else []
        pairs.append((writer, readers))
    for layer in layers:
        pairs.append((layer.attention.output.LayerNorm, [layer.intermediate.dense]))
    return pairs


@torch.no_grad()
def hidden_importance(model: nn.Module) -> torch.Tensor:
    """Score per hidden channel, shape ``[hidden_size]`` (see module docstring)."""
    score = None
    for norm, readers in _readers_of_residual(model):
        scale = norm.weight.detach().float().abs() + norm.bias.detach().float().abs()
        reads = torch.stack([r.weight.detach().float().norm(dim=0) for r in readers]).norm(dim=0) if readers else torch.ones_like(scale)
        score = scale * reads if score is None else score + scale * reads
    return score


@torch.no_grad()
def _slice_norm(norm: nn.LayerNorm, index: torch.Tensor) -> nn.LayerNorm:
    new = nn.LayerNorm(len(index), eps=norm.eps, device=norm.weight.device, dtype=norm.weight.dtype)
    new.weight.copy_(norm.weight[index])
    new.bias.copy_(norm.bias[index])
    return new


@torch.no_grad()
def _slice_embedding(embedding: nn.Embedding, index: torch.Tensor) -> nn.Embedding:
    new = nn.Embedding(embedding.num_embeddings, len(index), padding_idx=embedding.padding_idx,
                       device=embedding.weight.device, dtype=embedding.weight.dtype)
    new.weight.copy_(embedding.weight[:, index])
    return new


def keep_hidden(model: nn.Module, channels: list[int]) -> None:
    """Keep only the residual-stream ``channels`` of a BERT sequence classifier, everywhere (in place)."""
    base = model.base_model
    index = torch.as_tensor(sorted(channels), device=base.embeddings.LayerNorm.weight.device)
    emb = base.embeddings
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        if getattr(emb, name, None) is not None:
            setattr(emb, name, _slice_embedding(getattr(emb, name), index))
    emb.LayerNorm = _slice_norm(emb.LayerNorm, index)
    for layer in encoder_layers(model):
        attn = layer.attention
        for name in ("query", "key", "value"):
            setattr(attn.self, name, keep_columns(getattr(attn.self, name), index))
        attn.output.dense = keep_rows(attn.output.dense, index)
        attn.output.LayerNorm = _slice_norm(attn.output.LayerNorm, index)
        layer.intermediate.dense = keep_columns(layer.intermediate.dense, index)
        layer.output.dense = keep_rows(layer.output.dense, index)
        layer.output.LayerNorm = _slice_norm(layer.output.LayerNorm, index)
    if getattr(base, "pooler", None) is not None:
        base.pooler.dense = keep_rows(keep_columns(base.pooler.dense, index), index)
    classifier = getattr(model, "classifier", None)
    if isinstance(classifier, nn.Linear):
        model.classifier = keep_columns(classifier, index)
    model.config.hidden_size = len(index)


class WidthPruner(Pruner):
    """Removes the fractions ``hidden`` (residual channels), ``heads`` (all heads) and ``ffn`` (each layer's
    FFN neurons), least important first."""

    importances = ("weight", "activation")

    def __init__(self, hidden: float = 0.25, heads: float = 0.0, ffn: float = 0.25, importance: str = "weight",
                 calibration_rows: int = 512):
        self.hidden = check_fraction("hidden", hidden)
        self.heads = check_fraction("heads", heads)
        self.ffn = check_fraction("ffn", ffn)
        if importance not in self.importances:
            raise ConfigError("importance", f"must be one of {list(self.importances)}, got {importance!r}")
        if not is_int(calibration_rows) or calibration_rows < 1:
            raise ConfigError("calibration_rows", f"must be an integer >= 1, got {calibration_rows!r}")
        self.importance = importance
        self.calibration_rows = calibration_rows
        self.scores: ActivationScores | None = None  # set by calibrate (importance=activation)

    def calibrate(self, model: nn.Module, data) -> None:
        """``importance=activation``: Minitron's scores of ``model`` on the first ``calibration_rows`` training rows
        (:mod:`distilkit.prune.activation`), used by the next ``prepare``; ``weight``: nothing."""
        if self.importance == "activation":
            self.check(model)
            self.scores = activation_importance(model, data.inputs("train"), self.calibration_rows)

    def check(self, model: nn.Module) -> None:
        encoder_layers(model)
        if not isinstance(getattr(model, "classifier", None), nn.Linear) and self.hidden:
            raise ConfigError("hidden", f"prunes hidden channels of BERT sequence classifiers with a Linear classifier; {type(model).__name__} has none")

    def prepare(self, model: nn.Module) -> nn.Module:
        self.check(model)
        scores, self.scores = self.scores, None  # activation scores index this model's units: used once
        if scores is not None and len(scores.hidden) != model.config.hidden_size:
            raise ConfigError("importance", "the calibrated model is not the one being pruned (hidden sizes differ)")
        for key, pruner in (("heads", HeadPruner), ("ffn", FFNPruner)):
            if getattr(self, key):
                try:
                    pruner(getattr(self, key)).prepare(model, getattr(scores, key, None))
                except ConfigError as err:  # reported under this pruner's key
                    raise ConfigError(key, err.message) from None
        if self.hidden:
            scores = hidden_importance(model) if scores is None else scores.hidden
            keep = len(scores) - round(self.hidden * len(scores))
            if keep < 1:
                raise ConfigError("hidden", f"{self.hidden} would remove all {len(scores)} hidden channels")
            keep_hidden(model, torch.topk(scores, keep).indices.tolist())
        record_structure(model)
        return model
