"""Benchmark: onnxruntime's SkipLayerNormalization vs the Sum + LayerNormalization that export.fuse writes instead.

    PYTHONPATH=src python bench/skip_layernorm.py [--name vnni/skip_layernorm] [--min-samples 200] [MODEL.onnx ...]

Each model (default: the fused files the VNNI compression bench keeps under ``bench/results/vnni/onnx/``: the
fused teacher, the fused 3-layer fp32 and int8 students, the ``budget_frontier_best`` model) is timed twice in ONE
interleaved session (:class:`distilkit.measure.session.TimingSession`: 2 intra-op threads, no spinning, all graph
optimizations, rounds in random order): ``skip``, every residual ``Sum`` + ``LayerNormalization`` joined into
one ``SkipLayerNormalization`` (the graph onnxruntime's transformer optimizer writes, and ``export.fuse`` wrote
before it split them), and ``split``, every ``SkipLayerNormalization`` split into ``Sum`` + ``LayerNormalization``
(:mod:`distilkit.export.skip_layernorm`, what ``export.fuse`` writes now). Inputs: the kept SST-2 dev ids at full
length (64 tokens, all-ones mask; ids clamped below the smallest vocabulary), batch 1 and batch 32. Each
variant's logits on 64 dev rows are compared with the other's. ``--pairs A:B`` prints A's latency over B's under
each variant (e.g. the teacher over a student: the speed-up; fp32 over int8).

Writes ``bench/results/NAME.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch

from distilkit.export.onnx import ort_logits, ort_session
from distilkit.export.skip_layernorm import join_skip_layernorm, split_skip_layernorm
from distilkit.measure.report import MeasureSpec
from distilkit.measure.session import TimingSession, cpu_description

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
KEPT = RESULTS / "vnni" / "onnx"
DEFAULT = [KEPT / f"{name}.onnx" for name in ("teacher.fused", "fused_fp32", "fused_qat_int8_rr", "budget_frontier_best")]
PAIRS = "teacher.fused:fused_fp32,teacher.fused:fused_qat_int8_rr,teacher.fused:budget_frontier_best,fused_fp32:fused_qat_int8_rr"
VARIANTS = {"skip": join_skip_layernorm, "split": split_skip_layernorm}


def variant(path: Path, rewrite, out: Path) -> tuple[int, int]:
    """Write ``path`` rewritten to ``out``; the nodes rewritten and the SkipLayerNormalization nodes left."""
    model = onnx.load(str(path))
    n = rewrite(model)
    onnx.save(model, str(out))
    return n, sum(node.op_type == "SkipLayerNormalization" for node in model.graph.node)


def vocab_size(path: Path) -> int:
    """Rows of the model's word-embedding table: the first Gather's data input (an initializer)."""
    model = onnx.load(str(path), load_external_data=False)
    shapes = {t.name: list(t.dims) for t in model.graph.initializer}
    return min(shapes[n.input[0]][0] for n in model.graph.node if n.op_type == "Gather" and n.input[0] in shapes and len(shapes[n.input[0]]) == 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path, default=DEFAULT)
    parser.add_argument("--name", default="vnni/skip_layernorm")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-samples", type=int, default=200)
    parser.add_argument("--min-time-s", type=float, default=2.0)
    parser.add_argument("--rewarm-ms", type=float, default=MeasureSpec.rewarm_ms, help="ms of untimed calls before each block of timed "
                        "calls (default: the product's, measure.rewarm_ms); 0: a block's first call runs cold, after the other models")
    parser.add_argument("--pairs", default=PAIRS, help="A:B,... latency of A over B under each variant (models by file stem)")
    parser.add_argument("--dev", type=Path, default=KEPT / "dev_inputs.pt")
    args = parser.parse_args()
    names = [p.name.removesuffix(".onnx") for p in args.models]
    dev = torch.load(args.dev)
    vocab = min(vocab_size(p) for p in args.models)
    ids = dev["input_ids"].clamp(max=vocab - 1)
    full = lambda rows: {"input_ids": ids[rows], "attention_mask": torch.ones_like(ids[rows])}  # noqa: E731
    inputs = {("full", 1): [full(slice(i, i + 1)) for i in range(64)], ("full", 32): [full(slice(i, i + 32)) for i in range(0, 256, 32)]}
    session = TimingSession(inputs, threads=args.threads, min_samples=args.min_samples, min_time_s=args.min_time_s, runtimes=("onnxruntime",),
                            rewarm_ms=args.rewarm_ms)
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for path, name in zip(args.models, names):
            rows[name] = {}
            logits = {}
            for v, rewrite in VARIANTS.items():
                out = Path(tmp) / f"{name}.{v}.onnx"
                rows[name][f"{v}_rewritten"], rows[name][f"{v}_skip_layernorm_nodes"] = variant(path, rewrite, out)
                logits[v] = ort_logits(ort_session(out, args.threads), **full(slice(0, 64)))
                session.add_onnx(f"{name}/{v}", out)
            rows[name]["max_abs_logit_diff"] = float(np.abs(logits["skip"] - logits["split"]).max())
            rows[name]["argmax_agree"] = float((logits["skip"].argmax(-1) == logits["split"].argmax(-1)).mean())
        timings = session.run()
    for (role, _, _, b), latency in timings.results.items():
        name, v = role.rsplit("/", 1)
        rows[name][f"{v}_b{b}_p50_ms"] = latency.p50_ms
    for row in rows.values():
        for b in (1, 32):
            row[f"speedup_b{b}"] = row[f"skip_b{b}_p50_ms"] / row[f"split_b{b}_p50_ms"]
    pairs = {}
    for pair in filter(None, args.pairs.split(",")):
        a, b = pair.split(":")
        if a in rows and b in rows:
            pairs[pair] = {f"{v}_b{n}": rows[a][f"{v}_b{n}_p50_ms"] / rows[b][f"{v}_b{n}_p50_ms"] for n in (1, 32) for v in VARIANTS}
    pause = f"{args.rewarm_ms:g} ms of untimed calls before each block of timed calls" if args.rewarm_ms else "no re-warm before a block"
    setup = (f"onnxruntime {onnxruntime.__version__}, {args.threads} intra-op threads (no spinning), one interleaved session, {pause}, "
             f">= {args.min_samples} samples and >= {args.min_time_s:g} s per cell, full length (64 tokens); CPU: {cpu_description()}")
    command = "PYTHONPATH=src python bench/skip_layernorm.py" + (f" --name {args.name}" if args.name != "vnni/skip_layernorm" else "") + (
        f" --rewarm-ms {args.rewarm_ms:g}" if args.rewarm_ms != MeasureSpec.rewarm_ms else "") + (
        f" --min-samples {args.min_samples} --min-time-s {args.min_time_s:g}" if (args.min_samples, args.min_time_s) != (200, 2.0) else "")
    lines = [f"`{command}`", "", setup, "",
             "| model | SkipLN nodes (skip / split) | b1 ms skip | b1 ms split | b1 × | b32 ms skip | b32 ms split | b32 × | max abs logit diff | argmax agree |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['skip_skip_layernorm_nodes']} / {r['split_skip_layernorm_nodes']} | {r['skip_b1_p50_ms']:.3f} | {r['split_b1_p50_ms']:.3f} | "
                     f"{r['speedup_b1']:.2f} | {r['skip_b32_p50_ms']:.2f} | {r['split_b32_p50_ms']:.2f} | {r['speedup_b32']:.2f} | "
                     f"{r['max_abs_logit_diff']:.2g} | {r['argmax_agree']:.3f} |")
    if pairs:
        lines += ["", "Latency ratios (A's p50 over B's, same session):", "",
                  "| A : B | b1 skip | b1 split | b32 skip | b32 split |", "|---|---|---|---|---|"]
        lines += [f"| {p} | {r['skip_b1']:.2f} | {r['split_b1']:.2f} | {r['skip_b32']:.2f} | {r['split_b32']:.2f} |" for p, r in pairs.items()]
    text = "\n".join(lines) + "\n"
    out = RESULTS / args.name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text)
    out.with_suffix(".json").write_text(json.dumps({"setup": setup, "rows": rows, "pairs": pairs}, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
