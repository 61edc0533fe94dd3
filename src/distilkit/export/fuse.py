"""onnxruntime's transformer graph optimizations (``export.fuse=true``), applied to every ONNX file alike.

``onnxruntime.transformers.optimizer.optimize_model(path, model_type="bert", num_heads=0,
hidden_size=0, opt_level=0)`` rewrites the graph offline with fused contrib operators: LayerNorm
subgraphs -> ``LayerNormalization``, residual Add + LayerNorm -> ``SkipLayerNormalization``, bias +
GELU -> ``BiasGelu``/``FastGelu``, and (where the pattern matches) attention -> ``Attention``
(``opt_level=0``: only these fusions; the session's own ``ORT_ENABLE_ALL`` still runs on top). Then every
``SkipLayerNormalization`` is split again into ``Sum`` + ``LayerNormalization``
(:mod:`distilkit.export.skip_layernorm`: onnxruntime's CPU kernel for it is the slower of the two).
``num_heads=0, hidden_size=0`` let it read the sizes from the graph (pruned layers differ).

The pipeline fuses the files it times and deploys *after* quantization (the quantizers select
``MatMul`` nodes by their module name scopes and rewrite the word-embedding ``Gather``, which the
fused graph no longer has): the fp32 student, the deployable (quantized) student and the teacher
get the same pass, so a speed-up compares equally optimized graphs in the same runtime, and the
parity check (:mod:`distilkit.measure.parity`) runs on the fused deployable file. On the dynamo
export of BERT (torch 2.13, onnxruntime 1.32) LayerNorm, SkipLayerNorm and BiasGelu fuse here; the
attention block (SDPA's pattern with its NaN guard) is not recognized as ``Attention``, so with
``export.fuse=true`` the export itself writes each attention block as one ``MultiHeadAttention``
node (:mod:`distilkit.export.attention`) before this pass.
"""

from __future__ import annotations

from pathlib import Path

from distilkit.errors import check_bool
from distilkit.export.onnx import atomic_output
from distilkit.export.skip_layernorm import split_skip_layernorm
from distilkit.quantize.onnx_graph import quiet_ort_logging

SUFFIX = ".fused.onnx"
VERSION = 2  # of the graph fuse_onnx writes (2: SkipLayerNormalization split); cached fused files carry it in their name


def fused_path(path: Path) -> Path:
    """``student.int8.onnx`` -> ``student.int8.fused.onnx``."""
    path = Path(path)
    return path.with_name(path.name.removesuffix(".onnx") + SUFFIX)


def cached_fused_path(path: Path) -> Path:
    """Where a cache keeps ``path``'s fused graph: ``teacher.onnx`` -> ``teacher.v2.fused.onnx`` (:data:`VERSION`),
    so a file fused by an earlier version of this pass is never timed against one fused by this one."""
    path = Path(path)
    return path.with_name(path.name.removesuffix(".onnx") + f".v{VERSION}" + SUFFIX)


def fuse_onnx(path: Path, out_path: Path | None = None) -> Path:
    """Write the fused graph of ``path`` to ``out_path`` (default :func:`fused_path`), atomically."""
    with quiet_ort_logging():
        from onnxruntime.transformers.optimizer import optimize_model

        model = optimize_model(str(path), model_type="bert", num_heads=0, hidden_size=0, opt_level=0)
    split_skip_layernorm(model.model)
    out_path = Path(out_path or fused_path(path))
    with atomic_output(out_path) as tmp:
        model.save_model_to_file(str(tmp))
    return out_path


def check_fuse(fuse) -> bool:
    return check_bool(fuse, "export.fuse")


def fuse_all(fuse: bool, *paths: Path) -> tuple[Path, ...]:
    """``paths`` fused (each distinct file once) when ``fuse``, else unchanged."""
    if not check_fuse(fuse):
        return paths
    done: dict[Path, Path] = {}
    return tuple(done.setdefault(Path(p), fuse_onnx(p)) if Path(p) not in done else done[Path(p)] for p in paths)
