"""Quantization-aware training (QAT) common to the int8 and int4 quantizers.

``prepare`` turns every target ``nn.Linear`` into a :class:`QATLinear` *in place* (its class is
swapped, as ``torch.ao.quantization`` swaps modules, but keeping the same object): parameters,
their names in the state dict, hooks and ``torch.nn.utils.prune`` reparametrizations survive, so
the optimizer created afterwards sees the same parameters, and magnitude pruning may be set up
before or after. Structured pruners replace Linear modules, so they must ``prepare`` first.
The forward pass fake-quantizes the Linear's input and its weight with the quantizer's schemes
(:mod:`distilkit.quantize.fake_quant`). Only Linear modules are touched, so any loss works.
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from distilkit.quantize.base import Quantizer
from distilkit.quantize.targets import check_keep_fp32, quantized_linears


class QATLinear(nn.Linear):
    """``nn.Linear`` whose input and weight pass through fake quantization."""

    input_fq: nn.Module
    weight_fq: nn.Module

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(self.input_fq(x), self.weight_fq(self.weight), self.bias)


def attach_fake_quant(linear: nn.Linear, input_fq: nn.Module, weight_fq: nn.Module) -> None:
    """Make ``linear`` a :class:`QATLinear` in place."""
    if type(linear) is not nn.Linear:
        raise TypeError(f"QAT supports plain nn.Linear modules, got {type(linear).__name__}")
    linear.__class__ = QATLinear
    linear.input_fq = input_fq
    linear.weight_fq = weight_fq


def strip_fake_quant(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every :class:`QATLinear` turned back into a plain ``nn.Linear``."""
    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, QATLinear):
            del module.input_fq, module.weight_fq
            module.__class__ = nn.Linear
    return model


class QATQuantizer(Quantizer):
    """Inserts fake quantization into every Linear not in ``keep_fp32`` in ``prepare``.

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
        """A new weight fake-quantization module for one Linear."""

    def prepare(self, model: nn.Module) -> nn.Module:
        for linear in quantized_linears(model, self.keep_fp32).values():
            if not isinstance(linear, QATLinear):  # prepare is idempotent
                attach_fake_quant(linear, self.input_fake_quant(), self.weight_fake_quant())
        return model
