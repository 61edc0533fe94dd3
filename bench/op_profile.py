"""Benchmark: where an onnxruntime model's time goes, by operator type (fp32 vs int8, same graph optimizations).

    PYTHONPATH=src python bench/op_profile.py [--calls 200] [--threads 2] [--name op_profile] [MODEL.onnx ...]

Default models: the compression bench's 3-layer MiniLM students on this CPU kind
(``bench/results/vnni/onnx/``: ``distil_fp32``, ``qat_int8_rr`` and their ``export.fuse`` versions, kept there, not
committed, by the README's ``python bench/compress_sst2.py --results bench/results/vnni ...`` command). Each
model gets its own session (2 intra-op threads, ``allow_spinning=0``, all graph optimizations) with
onnxruntime's profiler on; after warm-up, ``--calls`` calls at batch 1 and ``--calls / 8`` at batch 32 of
random token ids, full length (64 tokens, the latency tables' setting). The profile's per-node kernel
times are summed by operator type and divided by the calls: microseconds per call, and each type's share.

Operator types are grouped: ``GEMM`` (every MatMul kernel, fp32 or int8, with its fused activation
quantization: MatMul, FusedMatMul, Gemm, FusedGemm, MatMulInteger, MatMulIntegerToFloat, DynamicQuantizeMatMul,
QLinearMatMul), ``quantize`` (DynamicQuantizeLinear, QuantizeLinear, DequantizeLinear), ``attention``
(MultiHeadAttention, Attention, Softmax) and ``other`` (LayerNorm, GELU, Add, reshapes, the mask, …). The
summary says how much of the fp32 model's time is GEMM, the int8 GEMMs' speed-up over fp32 GEMMs, and the
model's speed-up if everything but the GEMMs stayed as it is (Amdahl), which is what bounds int8 here.

Writes ``bench/results/NAME.{md,json}`` (default ``vnni/op_profile``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnxruntime as ort

from distilkit.export.onnx import ort_session
from distilkit.measure.session import cpu_description

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SEQ = 64
DEFAULT = [RESULTS / "vnni" / "onnx" / f"{name}.onnx" for name in ("distil_fp32", "qat_int8_rr", "fused_fp32", "fused_qat_int8_rr")]
GROUPS = {
    "GEMM": ("MatMul", "FusedMatMul", "Gemm", "FusedGemm", "MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QLinearMatMul"),
    "quantize": ("DynamicQuantizeLinear", "QuantizeLinear", "DequantizeLinear"),
    "attention": ("MultiHeadAttention", "Attention", "Softmax"),
}


def group_of(op: str) -> str:
    return next((g for g, ops in GROUPS.items() if op in ops), "other")


def inputs(batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"input_ids": rng.integers(1000, 2000, size=(batch, SEQ), dtype=np.int64), "attention_mask": np.ones((batch, SEQ), np.int64)}


def profile(path: Path, threads: int, calls: int, batch: int, tmp: Path) -> dict[str, float]:
    """Microseconds per call by operator type, from onnxruntime's profiler."""
    sess = ort_session(path, threads, profile_prefix=str(tmp / f"{path.stem}_b{batch}"))
    rng = np.random.default_rng(0)
    feed = inputs(batch, rng)
    warm = max(3, calls // 10)
    for _ in range(warm):  # warm-up, profiled too: dropped below by run index
        sess.run(["logits"], feed)
    for _ in range(calls):
        sess.run(["logits"], feed)
    events = json.loads(Path(sess.end_profiling()).read_text())
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    start = runs[warm]["ts"] if len(runs) > warm else 0
    per_op: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= start:
            per_op[e["args"]["op_name"]] += e["dur"]
    per_op = {op: us / calls for op, us in per_op.items()}
    per_op["(run total)"] = sum(e["dur"] for e in runs[warm:]) / calls
    return per_op


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="*", type=Path, default=DEFAULT)
    parser.add_argument("--calls", type=int, default=200, help="profiled batch-1 calls per model (batch 32: a eighth)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--name", default="vnni/op_profile")
    args = parser.parse_args()
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for batch, calls in ((1, args.calls), (32, max(4, args.calls // 8))):
            for path in args.models:
                results.setdefault(path.stem, {})[f"b{batch}"] = profile(path, args.threads, calls, batch, Path(tmp))
    lines = [f"`PYTHONPATH=src python bench/op_profile.py --calls {args.calls} --threads {args.threads} --name {args.name}"
             + ("" if args.models == DEFAULT else " " + " ".join(str(p) for p in args.models)) + "`",
             "", f"{cpu_description()}; onnxruntime {ort.__version__}, seq {SEQ}, {args.threads} threads, profiler on (its own overhead included).", ""]
    for batch in ("b1", "b32"):
        models = list(results)
        groups = ["GEMM", "quantize", "attention", "other"]
        lines += [f"**{batch}**, microseconds per call by group (share of the node time):", "",
                  "| group | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
        totals = {m: sum(v for op, v in results[m][batch].items() if not op.startswith("(")) for m in models}
        by_group = {m: {g: sum(v for op, v in results[m][batch].items() if not op.startswith("(") and group_of(op) == g) for g in groups}
                    for m in models}
        for g in groups:
            lines.append(f"| {g} | " + " | ".join(f"{by_group[m][g]:.0f} ({by_group[m][g] / totals[m]:.0%})" for m in models) + " |")
        lines.append("| nodes, total | " + " | ".join(f"{totals[m]:.0f}" for m in models) + " |")
        lines.append("| run, total | " + " | ".join(f"{results[m][batch]['(run total)']:.0f}" for m in models) + " |")
        lines.append("")
        for fp32, int8 in zip(models[0::2], models[1::2]):
            gemm = by_group[fp32]["GEMM"] / max(by_group[int8]["GEMM"] + by_group[int8]["quantize"], 1e-9)
            share = by_group[fp32]["GEMM"] / totals[fp32]
            lines.append(f"- {int8} vs {fp32}: the model {totals[fp32] / totals[int8]:.2f}× (node time); its GEMMs with their "
                         f"quantization {gemm:.2f}×; GEMM is {share:.0%} of the fp32 model's node time, so with the rest unchanged "
                         f"the model would be {1 / (1 - share + share / 4):.2f}× with GEMMs at 4× (VNNI's int8 vs fp32 peak) and at "
                         f"most {1 / (1 - share):.2f}× with GEMMs taking no time.")
        lines.append("")
        lines += ["Operator types (microseconds per call):", "", "| op | group | " + " | ".join(models) + " |", "|---|---|" + "---|" * len(models)]
        ops = sorted({op for m in models for op in results[m][batch] if not op.startswith("(")},
                     key=lambda op: -max(results[m][batch].get(op, 0) for m in models))
        for op in ops:
            lines.append(f"| {op} | {group_of(op)} | " + " | ".join(f"{results[m][batch].get(op, 0):.0f}" for m in models) + " |")
        lines.append("")
    out = RESULTS / args.name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
