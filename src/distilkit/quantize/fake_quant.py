"""Fake quantization: quantize then dequantize in float, with straight-through gradients.

Quantization-aware training after Jacob et al., "Quantization and Training of Neural Networks for
Efficient Integer-Arithmetic-Only Inference" (CVPR 2018): the forward pass sees the rounded values,
the backward pass treats rounding as the identity (the straight-through estimator of Bengio et al.,
"Estimating or Propagating Gradients Through Stochastic Neurons", 2013).

The weight codes reproduce the deployment quantizers bit for bit, so the trained fake-quantized
weights are exactly the weights that run after conversion:

* int8 (:func:`int8_codes`): per output channel (per row of a ``[out, in]`` weight; for the
  word-embedding table ``[vocab, hidden]``, per token vector), symmetric, ``scale = max|w| / 127.5``,
  ``q = clamp(round_half_even(w / scale), -128, 127)``: torch's default per-channel symmetric
  qint8 weight observer, and onnxruntime's ``quantize_dynamic`` with ``per_channel=True``,
  ``QUInt8`` weights and ``WeightSymmetric`` (zero point 128, codes ``q + 128``). With
  ``reduce_range`` (7-bit weights, onnxruntime's ``reduce_range=True`` with ``QInt8`` weights):
  ``scale = max|w| / 64``, ``q = clamp(round_half_even(w / scale), -64, 64)``, zero point 0.
* int4 (:func:`int4_codes`): groups of ``group_size`` consecutive input features per output
  channel, symmetric as MLAS does it for ``MatMulNBits`` (``MlasQuantizeBlockwise`` without zero
  points; also ``GatherBlockQuantized``'s layout for the embedding table, grouped along each row):
  ``scale = m / -8`` where ``m`` is the group's largest-magnitude element (so ``m`` maps
  to -8 and the 16 levels ``-8..7`` are all used), ``q = clamp(round_half_up(w * (1/scale)), -8, 7)``.

Activations:

* :class:`DynamicActivationFakeQuant` (int8 QAT; :func:`dynamic_uint8_fake_quant`): exactly what
  onnxruntime's ``DynamicQuantizeLinear`` (and the fused ``DynamicQuantizeMatMul`` /
  ``MatMulIntegerToFloat`` path) computes at run time: per tensor, from the whole tensor the Linear
  gets (every row and position of the batch, padding included), range widened to contain 0,
  ``scale = (max - min) / 255`` (1 if the range is empty), ``zero_point =
  round_half_even(clamp(-min / scale, 0, 255))``, ``q = clamp(round_half_even(x / scale) + zero_point,
  0, 255)`` (MLAS divides by the scale; ``torch.fake_quantize_per_tensor_affine`` multiplies by its
  inverse, which rounds differently at ties, so it is not used). No state: nothing to observe,
  nothing to freeze.
* :class:`BlockActivationFakeQuant` (int4 QAT): what ``MatMulNBits`` with ``accuracy_level=4``
  does at run time: each row is split in blocks of ``group_size`` features, each block quantized
  symmetrically to int8 with ``scale = max|x| / 127``.
"""

from __future__ import annotations

import weakref
from copy import deepcopy
from typing import Callable

import torch
from torch import Tensor, nn


class _StraightThrough(torch.autograd.Function):
    """Forward ``quantize(w)``; backward passes the gradient through unchanged."""

    @staticmethod
    def forward(ctx, w: Tensor, quantize: Callable[[Tensor], Tensor]) -> Tensor:
        return quantize(w)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


def _nonzero_scale(scale: Tensor) -> Tensor:
    """Scale 1 where a channel or group is all zeros (its codes are 0 either way), as ORT does."""
    return torch.where(scale.abs() < torch.finfo(scale.dtype).tiny, torch.ones_like(scale), scale)


def int8_codes(w: Tensor, reduce_range: bool = False) -> tuple[Tensor, Tensor]:
    """Per-output-channel symmetric int8 codes of a ``[out, in]`` weight: ``(q [out, in], scale [out])``;
    ``reduce_range``: 7-bit codes in -64..64 (onnxruntime's reduced range for ``QInt8``)."""
    w = w.detach().float()
    half, lo, hi = (64.0, -64, 64) if reduce_range else (127.5, -128, 127)
    scale = _nonzero_scale(w.abs().amax(dim=1) / half)
    q = torch.clamp(torch.round(w / scale[:, None]), lo, hi)
    return q, scale


def int4_codes(w: Tensor, group_size: int) -> tuple[Tensor, Tensor]:
    """Group-wise symmetric int4 codes (MLAS scheme) of a ``[out, in]`` weight, ``in % group_size == 0``.

    Returns ``(q [out, in] in -8..7, scale [out, in // group_size])``.
    """
    w = w.detach().float()
    out_features, in_features = w.shape
    groups = w.reshape(out_features, in_features // group_size, group_size)
    hi, lo = groups.amax(dim=-1), groups.amin(dim=-1)
    extreme = torch.where(hi.abs() > lo.abs(), hi, lo)  # MLAS: fabsf(max) > fabsf(min) ? max : min
    scale = _nonzero_scale(extreme / -8)
    scaled = groups * (1 / scale)[..., None] + 8  # MLAS rounds v * (1/scale) + zero_point(8) ...
    floor = torch.floor(scaled)
    rounded = floor + (scaled - floor >= 0.5).to(scaled.dtype)  # ... with roundf (half away from 0)
    q = torch.clamp(rounded, 0, 15) - 8
    return q.reshape(out_features, in_features), scale


def int8_fake_quant(w: Tensor, reduce_range: bool = False) -> Tensor:
    """``w`` rounded to its int8 (``reduce_range``: 7-bit) grid (dequantized), straight-through gradient."""

    def quantize(weight: Tensor) -> Tensor:
        q, scale = int8_codes(weight, reduce_range)
        return (q * scale[:, None]).to(weight.dtype)

    return _StraightThrough.apply(w, quantize)


def int4_fake_quant(w: Tensor, group_size: int) -> Tensor:
    """``w`` rounded to its group-wise int4 grid (dequantized), straight-through gradient."""

    def quantize(weight: Tensor) -> Tensor:
        q, scale = int4_codes(weight, group_size)
        return (q * scale.repeat_interleave(group_size, dim=1)).to(weight.dtype)

    return _StraightThrough.apply(w, quantize)


class _WeightFakeQuant(nn.Module):
    """Weight fake quantization whose result is reused while gradients are off.

    The rounded weight is a pure function of the weight, so in evaluation (``torch.no_grad`` or
    inference mode) it is computed once per weight value and reused until the parameter changes
    (another tensor, or its version counter moved by an in-place update such as an optimizer step).
    Without this, every evaluation forward re-rounds every table (the 30522 x 384 word embeddings
    included): the parity check runs each dev row alone, hundreds of forwards. Training (gradients
    on) always recomputes, and nothing is stored in the state dict.
    """

    def __init__(self):
        super().__init__()
        self._cached: tuple[weakref.ref, int, bool, Tensor] | None = None

    def fake_quant(self, w: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, w: Tensor) -> Tensor:
        if torch.is_grad_enabled() or not w.is_leaf or w.is_inference():
            self._cached = None
            return self.fake_quant(w)
        inference = torch.is_inference_mode_enabled()
        cached = self._cached
        if cached is None or cached[0]() is not w or cached[1] != w._version or cached[2] != inference:
            self._cached = cached = (weakref.ref(w), w._version, inference, self.fake_quant(w))
        return cached[3]

    def __deepcopy__(self, memo):
        """Copies (``strip_fake_quant``, checkpoints) start without the cache."""
        copy = self.__class__.__new__(self.__class__)
        memo[id(self)] = copy
        for key, value in self.__dict__.items():
            setattr(copy, key, None if key == "_cached" else deepcopy(value, memo))
        return copy

    def __getstate__(self):
        return {**self.__dict__, "_cached": None}  # pickling (torch.save of a whole model) drops the cache


class Int8WeightFakeQuant(_WeightFakeQuant):
    """Stateless per-channel int8 weight fake quantization (scales follow the current weights);
    ``reduce_range``: 7-bit codes (see :func:`int8_codes`)."""

    reduce_range = False  # instances pickled before the option existed

    def __init__(self, reduce_range: bool = False):
        super().__init__()
        self.reduce_range = reduce_range

    def fake_quant(self, w: Tensor) -> Tensor:
        return int8_fake_quant(w, self.reduce_range)

    def extra_repr(self) -> str:
        return "reduce_range=True" if self.reduce_range else ""


class Int4WeightFakeQuant(_WeightFakeQuant):
    """Stateless group-wise int4 weight fake quantization (scales follow the current weights)."""

    def __init__(self, group_size: int):
        super().__init__()
        self.group_size = group_size

    def fake_quant(self, w: Tensor) -> Tensor:
        return int4_fake_quant(w, self.group_size)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}"


def dynamic_uint8_qparams(x: Tensor) -> tuple[Tensor, Tensor]:
    """``(scale, zero_point)`` (float32 scalars) of onnxruntime's ``DynamicQuantizeLinear`` for tensor ``x``."""
    lo, hi = torch.aminmax(x.detach().float())
    lo, hi = lo.clamp(max=0), hi.clamp(min=0)
    scale = torch.where(hi == lo, torch.ones_like(hi), (hi - lo) / 255)
    zero_point = torch.round(torch.clamp(-lo / scale, 0, 255))
    return scale, zero_point


def dynamic_uint8_fake_quant(x: Tensor) -> Tensor:
    """``x`` rounded to its own per-tensor uint8 grid (``DynamicQuantizeLinear``), straight-through gradient."""

    def quantize(t: Tensor) -> Tensor:
        scale, zero_point = dynamic_uint8_qparams(t)
        q = torch.clamp(torch.round(t.float() / scale) + zero_point, 0, 255)
        return ((q - zero_point) * scale).to(t.dtype)

    return _StraightThrough.apply(x, quantize)


class DynamicActivationFakeQuant(nn.Module):
    """Stateless per-tensor dynamic uint8 fake quantization of a Linear's input (``DynamicQuantizeLinear``)."""

    def forward(self, x: Tensor) -> Tensor:
        return dynamic_uint8_fake_quant(x)


def int8_block_fake_quant(x: Tensor, block_size: int) -> Tensor:
    """``x`` (last dim divisible by ``block_size``) rounded blockwise to symmetric int8, straight-through gradient."""

    def quantize(t: Tensor) -> Tensor:
        blocks = t.float().reshape(*t.shape[:-1], t.shape[-1] // block_size, block_size)
        scale = _nonzero_scale(blocks.abs().amax(dim=-1, keepdim=True) / 127)
        return (torch.round(blocks / scale) * scale).reshape(t.shape).to(t.dtype)

    return _StraightThrough.apply(x, quantize)


class BlockActivationFakeQuant(nn.Module):
    """Stateless dynamic blockwise int8 fake quantization of a Linear's input (MatMulNBits scheme)."""

    def __init__(self, block_size: int):
        super().__init__()
        self.block_size = block_size

    def forward(self, x: Tensor) -> Tensor:
        return int8_block_fake_quant(x, self.block_size)

    def extra_repr(self) -> str:
        return f"block_size={self.block_size}"
