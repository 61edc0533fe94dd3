"""Quantization-aware training (QAT) common to the int8 and int4 quantizers.

``prepare`` turns every target ``nn.Linear`` into a :class:`QATLinear` and the word embedding
(unless kept in fp32) into a :class:`QATEmbedding`, *in place* (the class is swapped, as
``torch.ao.quantization`` swaps modules, but keeping the same object): parameters,
their names in the state dict, hooks and ``torch.nn.utils.prune`` reparametrizations survive, so
the optimizer created afterwards sees the same parameters, and magnitude pruning may be set up
before or after. Structured pruners replace Linear modules, so they must ``prepare`` first.
The forward pass fake-quantizes the Linear's input and its weight with the quantizer's schemes
(:mod:`distilkit.quantize.fake_quant`); the embedding's table is fake-quantized with the weight
scheme (one row per token: per-row int8, or int4 groups along the hidden axis) and its output is
not quantized further. Only these modules are touched, so any loss works.
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from distilkit.quantize.base import Quantizer
from distilkit.quantize.targets import check_keep_fp32, quantized_modules


class QATLinear(nn.Linear):
    """``nn.Linear`` whose input and weight pass through fake quantization."""

    input_fq: nn.Module
    weight_fq: nn.Module

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(self.input_fq(x), self.weight_fq(self.weight), self.bias)


class QATEmbedding(nn.Embedding):
    """``nn.Embedding`` looking up rows of its fake-quantized table."""

    weight_fq: nn.Module

    def forward(self, ids: Tensor) -> Tensor:
        return F.embedding(ids, self.weight_fq(self.weight), self.padding_idx, self.max_norm, self.norm_type,
                           self.scale_grad_by_freq, self.sparse)


def attach_embedding_fake_quant(embedding: nn.Embedding, weight_fq: nn.Module) -> None:
    """Make ``embedding`` a :class:`QATEmbedding` in place."""
    if type(embedding) is not nn.Embedding:
        raise TypeError(f"QAT supports plain nn.Embedding modules, got {type(embedding).__name__}")
    embedding.__class__ = QATEmbedding
    embedding.weight_fq = weight_fq


def attach_fake_quant(linear: nn.Linear, input_fq: nn.Module, weight_fq: nn.Module) -> None:
    """Make ``linear`` a :class:`QATLinear` in place."""
    if type(linear) is not nn.Linear:
        raise TypeError(f"QAT supports plain nn.Linear modules, got {type(linear).__name__}")
    linear.__class__ = QATLinear
    linear.input_fq = input_fq
    linear.weight_fq = weight_fq


def strip_fake_quant(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every :class:`QATLinear` and :class:`QATEmbedding` made plain again."""
    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, QATLinear):
            del module.input_fq, module.weight_fq
            module.__class__ = nn.Linear
        elif isinstance(module, QATEmbedding):
            del module.weight_fq
            module.__class__ = nn.Embedding
    return model


class QATQuantizer(Quantizer):
    """Inserts fake quantization into every Linear and the word embedding not in ``keep_fp32`` in ``prepare``.

    Weight scales are not observed: they are recomputed from the current weights on every forward
    pass, as the deployment quantizer computes them from the final weights.
    """

    def __init__(self, keep_fp32: Sequence[str]):
        self.keep_fp32 = check_keep_fp32(keep_fp32)

    @abstractmethod
    def input_fake_quant(self) -> nn.Module:
        """A new input (activation) fake-quantization module for one Linear."""

    @abstractmethod
    def weight_fake_quant(self) -> nn.Module:
        """A new weight fake-quantization module for one Linear or the embedding table."""

    def embedding_fake_quant(self) -> nn.Module:
        """A new fake-quantization module for the word-embedding table (default: the weights' scheme)."""
        return self.weight_fake_quant()

    def check(self, model: nn.Module) -> None:
        quantized_modules(model, self.keep_fp32)

    def prepare(self, model: nn.Module) -> nn.Module:
        for module in quantized_modules(model, self.keep_fp32).values():
            if isinstance(module, (QATLinear, QATEmbedding)):  # prepare is idempotent
                continue
            if isinstance(module, nn.Embedding):
                attach_embedding_fake_quant(module, self.embedding_fake_quant())
            else:
                attach_fake_quant(module, self.input_fake_quant(), self.weight_fake_quant())
        return model
