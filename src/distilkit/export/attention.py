"""Fused attention in the ONNX export (``export.fuse=true``): one onnxruntime ``MultiHeadAttention`` node per layer.

onnxruntime's offline fusions (:mod:`distilkit.export.fuse`) don't recognize the attention block of the
dynamo export (SDPA's pattern with its NaN guard, or the eager one), so the export writes the fused
node itself. While :func:`fused_attention` is active the model's attention implementation (transformers'
``AttentionInterface``) is :func:`attention`, which hands query, key and value as ``[batch, seq, heads *
head_size]`` to the custom op ``distilkit::mha``, with a bidirectional model's padding mask as a
``[batch, kv_seq]`` key padding mask (:func:`padding_mask`, the model's mask function meanwhile, keeps it
that shape), or any other mask as an additive ``[batch, 1, seq, kv_seq]`` bias. In torch that op is SDPA
(the same numbers as the model's own attention); the exporter translates it (:data:`TRANSLATION`) to
``com.microsoft.MultiHeadAttention(query, key, value, key_padding_mask=, attention_bias=, num_heads, scale)``:
QK^T, scaling, mask, softmax and the weighted sum in one kernel instead of about fifteen nodes, and no
``[batch, 1, seq, kv_seq]`` mask built in the graph. The projections stay ``MatMul`` nodes with their module names,
so the quantizers find and quantize them exactly as before; what leaves the graph are the attention
scores' fp32 ``MatMul`` pairs and their plumbing.

Where the op does not fit — grouped key/value heads, a causal model whose mask was skipped, attention
weights requested, dropout in training — :func:`attention` falls back to transformers' SDPA, and that
layer exports unfused. The deploy parity check compares the exported file with the torch model either way.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import onnx
import onnxscript
import torch
import torch.nn.functional as F
from onnx.defs import OpSchema
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import bidirectional_mask_function, sdpa_mask

IMPLEMENTATION = "distilkit_mha"  # the name registered with transformers' attention and mask interfaces
ORT_DOMAIN = "com.microsoft"
_DOMAIN = "distilkit.export"  # the node's domain inside the exporter; renamed to ORT_DOMAIN afterwards (rename_domain)


@torch.library.custom_op("distilkit::mha", mutates_args=())
def mha(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, key_padding_mask: torch.Tensor | None,
        bias: torch.Tensor | None, num_heads: int, scale: float) -> torch.Tensor:
    """Multi-head attention over ``[batch, seq, heads * head_size]`` inputs, keys masked by ``key_padding_mask``
    (``[batch, kv_seq]``, 1 = attend) or by an additive ``bias`` (``[batch, 1, seq, kv_seq]``)."""
    b, s, _ = query.shape
    t = key.shape[1]
    split = lambda x, n: x.reshape(b, n, num_heads, -1).transpose(1, 2)  # noqa: E731 -- [b, heads, n, head_size]
    if key_padding_mask is not None:
        bias = torch.where(key_padding_mask[:, None, None, :].bool(), 0.0, torch.finfo(query.dtype).min).to(query.dtype)
    out = F.scaled_dot_product_attention(split(query, s), split(key, t), split(value, t), attn_mask=bias, scale=scale)
    return out.transpose(1, 2).reshape(b, s, -1).contiguous()


@mha.register_fake
def _mha_shape(query, key, value, key_padding_mask, bias, num_heads, scale):
    return query.new_empty((*query.shape[:2], value.shape[-1]))


def attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers attention function (``[batch, heads, seq, head_size]`` in, ``[batch, seq, heads, head_size]`` out)
    computed by ``distilkit::mha``; transformers' SDPA where the fused op does not apply."""
    b, heads, s, d = query.shape
    t = key.shape[2]
    causal_skipped = attention_mask is None and kwargs.get("is_causal", getattr(module, "is_causal", False))
    if key.shape[1] != heads or causal_skipped or kwargs.get("output_attentions") or (module.training and dropout > 0):
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)
    padding, bias = None, None
    if attention_mask is None:
        padding = torch.ones((b, t), dtype=torch.int32, device=query.device)
    elif attention_mask.dtype == torch.bool and attention_mask.shape[-2] == 1:  # [batch, 1, 1, kv_seq]: padding_mask's
        padding = attention_mask[:, 0, 0, :].to(torch.int32)
    elif attention_mask.dtype == torch.bool:
        bias = torch.where(attention_mask, 0.0, torch.finfo(query.dtype).min).to(query.dtype)
    else:
        bias = attention_mask.to(query.dtype)
    if bias is not None:
        bias = bias[:, :1].expand(b, 1, s, t)  # MultiHeadAttention's attention_bias: [batch or 1, heads or 1, seq, kv_seq]
    flat = lambda x: x.transpose(1, 2).reshape(b, x.shape[2], -1)  # noqa: E731 -- [b, n, heads * head_size]
    scale = float(scaling if scaling is not None else d**-0.5)
    out = torch.ops.distilkit.mha(flat(query), flat(key), flat(value), padding, bias, heads, scale)
    return out.view(b, s, heads, d), None


def padding_mask(batch_size, q_length, kv_length, q_offset=0, kv_offset=0, mask_function=bidirectional_mask_function,
                 attention_mask=None, **kwargs):
    """transformers mask function: a bidirectional model's padding mask as ``[batch, 1, 1, kv_seq]`` (the keys to
    attend), which :func:`attention` hands to MultiHeadAttention as its ``key_padding_mask``, so the export computes
    no ``[batch, 1, seq, kv_seq]`` mask; every other mask (causal, offsets, combined) is :func:`sdpa_mask`'s."""
    if (mask_function is bidirectional_mask_function and attention_mask is not None and attention_mask.dim() == 2
            and q_offset == 0 and kv_offset == 0 and attention_mask.shape[-1] == kv_length):
        return attention_mask[:, None, None, :].bool()
    return sdpa_mask(batch_size=batch_size, q_length=q_length, kv_length=kv_length, q_offset=q_offset, kv_offset=kv_offset,
                     mask_function=mask_function, attention_mask=attention_mask, **kwargs)


AttentionInterface.register(IMPLEMENTATION, attention)
AttentionMaskInterface.register(IMPLEMENTATION, padding_mask)

# onnxscript builds a node only from a registered schema: the subset of MultiHeadAttention's inputs used here, in a
# private domain so that onnx's own view of com.microsoft (checker, shape inference) is not changed by this process.
_param, _optional = OpSchema.FormalParameter, OpSchema.FormalParameterOption.Optional
onnx.defs.register_schema(
    OpSchema(
        "MultiHeadAttention",
        _DOMAIN,
        1,
        inputs=[
            _param("query", "T"),
            *(_param(name, type_, param_option=_optional) for name, type_ in
              (("key", "T"), ("value", "T"), ("bias", "T"), ("key_padding_mask", "M"), ("attention_bias", "T"))),
        ],
        outputs=[_param("output", "T")],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)", "tensor(bfloat16)"], ""), ("M", ["tensor(int32)"], "")],
        attributes=[OpSchema.Attribute("num_heads", OpSchema.AttrType.INT, "", required=True),
                    OpSchema.Attribute("scale", OpSchema.AttrType.FLOAT, "", required=False)],
    )
)
_opset = onnxscript.values.Opset(_DOMAIN, 1)


def _onnx_mha(query, key, value, key_padding_mask, bias, num_heads: int, scale: float):
    return _opset.MultiHeadAttention(query, key, value, None, key_padding_mask, bias, num_heads=num_heads, scale=scale)


TRANSLATION = {torch.ops.distilkit.mha.default: _onnx_mha}  # torch.onnx.export(..., custom_translation_table=TRANSLATION)


def rename_domain(model) -> int:
    """The exported ``onnx_ir`` model's fused nodes moved to onnxruntime's domain; returns how many there are."""
    nodes = [node for node in model.graph.all_nodes() if node.domain == _DOMAIN]
    for node in nodes:
        node.domain = ORT_DOMAIN
    model.opset_imports.pop(_DOMAIN, None)
    if nodes:
        model.opset_imports[ORT_DOMAIN] = 1
    return len(nodes)


@contextmanager
def fused_attention(model: torch.nn.Module, enabled: bool = True) -> Iterator[None]:
    """``model`` computes its attention with :func:`attention` inside the block (when ``enabled``), then as before."""
    config = getattr(model, "config", None)
    previous = getattr(config, "_attn_implementation", None)
    if not enabled or previous is None:
        yield
        return
    model.set_attn_implementation(IMPLEMENTATION)
    try:
        yield
    finally:
        model.set_attn_implementation(previous)
