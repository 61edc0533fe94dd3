"""fp32 ONNX export of a sequence classifier and onnxruntime helpers.

The export uses the dynamo exporter (``torch.onnx.export(..., dynamo=True)``, backed by
``torch.export`` and onnxscript), the exporter recommended since torch 2.5. The graph has inputs
``input_ids`` and ``attention_mask`` (int64, ``[batch, seq]``, both axes dynamic; ``seq`` up to
``config.max_position_embeddings``) and output ``logits``. Each ``nn.Linear`` becomes a ``MatMul``
(3-D input) or ``Gemm`` (2-D input, e.g. pooler and classifier) with a constant weight, and every
node carries the ``pkg.torch.onnx.name_scopes`` metadata that names the module it came from; the
quantizers in :mod:`distilkit.quantize` use both facts.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "logits"
HARMLESS_WARNINGS = (  # emitted by torch 2.13's exporter internals for every BERT export
    r".*isinstance\(treespec, LeafSpec\)",
    r"# The axis name: .* will not be used",
)


@contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def export_onnx(model: nn.Module, path: Path, seq_len: int, fuse_attention: bool = False) -> Path:
    """Export ``model`` (a ``*ForSequenceClassification``) to fp32 ONNX at ``path``, atomically.

    ``seq_len`` is the example sequence length used for tracing; batch and sequence axes stay
    dynamic. The model is traced in eval mode and its train/eval mode is restored afterwards.
    ``fuse_attention``: each attention block as one onnxruntime ``MultiHeadAttention`` node
    (:mod:`distilkit.export.attention`; ``export.fuse=true``).
    """
    from distilkit.export.attention import TRANSLATION, fused_attention, rename_domain

    max_len = model.config.max_position_embeddings
    if not 1 <= seq_len <= max_len:
        raise ValueError(f"seq_len must be in [1, {max_len}], got {seq_len}")
    device = next(model.parameters()).device
    input_ids = torch.ones((2, seq_len), dtype=torch.long, device=device)
    attention_mask = torch.ones_like(input_ids)  # a distinct tensor: aliased inputs would be traced as one
    batch = torch.export.Dim("batch", min=1)
    seq = torch.export.Dim("seq", min=1, max=max_len)
    axes = {0: batch, 1: seq}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings(), fused_attention(model, fuse_attention):
            for message in HARMLESS_WARNINGS:
                warnings.filterwarnings("ignore", message=message)
            program = torch.onnx.export(
                model,
                (),
                kwargs={"input_ids": input_ids, "attention_mask": attention_mask},
                dynamo=True,
                verbose=False,
                input_names=list(INPUT_NAMES),
                output_names=[OUTPUT_NAME],
                dynamic_shapes={"input_ids": axes, "attention_mask": axes},
                custom_translation_table=TRANSLATION,
            )
    finally:
        model.train(was_training)
    rename_domain(program.model)
    path = Path(path)
    with atomic_output(path) as tmp:
        program.save(tmp, external_data=False)
    return path


def ort_session(model: Path | bytes, threads: int | None = None, profile_prefix: str | None = None) -> ort.InferenceSession:
    """A CPU inference session (over a file, or a serialized model) with all graph optimizations; ``threads`` sets
    intra-op threads (then inter-op 1 and no spin-waiting, for sessions timed side by side in one process, or
    many sessions in one model); ``profile_prefix``: onnxruntime's profiler on, its file named from the prefix."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options, providers=["CPUExecutionProvider"])


def _int64(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.int64)


def ort_logits(
    session: ort.InferenceSession,
    input_ids: np.ndarray | torch.Tensor,
    attention_mask: np.ndarray | torch.Tensor,
) -> np.ndarray:
    """Run ``session`` on one batch and return the logits as a float32 array ``[batch, labels]``."""
    feed = {"input_ids": _int64(input_ids), "attention_mask": _int64(attention_mask)}
    return session.run([OUTPUT_NAME], feed)[0]
