"""Decode-step kernels of the causal-LM student in torch at batch 1: fp32 vs the deployed int8 and int4 layers.

Why ``deploy/gen_decode_speedup_vs_student`` is what it is: one token of greedy decoding multiplies a
``[1, in]`` activation by every weight matrix. This times that product for SmolLM2-135M's shapes (q/o
576x576, k/v 192x576, gate/up 1536x576, down 576x1536, lm_head 49152x576) with the modules the LM
quantizers deploy: ``nn.Linear`` (fp32), ``ptq_dynamic``'s dynamic int8 Linear (weights per channel,
activations quantized at run time) and ``qat_int4``'s ``Int4Linear`` (packed 4-bit weights, run by
onnxruntime's ``MatMulNBits`` kernel with int8 activations, the ONNX deploy's kernel). All cells in one
process, interleaved round by round, threads fixed; the median per cell.
Writes ``bench/results/lm_kernels.{md,json}``.

    python bench/lm_kernels.py --threads 2 --rounds 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

SHAPES = {"k/v 576->192": (576, 192), "q/o 576->576": (576, 576), "gate/up 576->1536": (576, 1536), "down 1536->576": (1536, 576),
          "lm_head 576->49152": (576, 49152)}


def main() -> None:
    from distilkit.quantize.int4 import Int4Linear
    from distilkit.quantize.int8 import dynamic_int8_linear

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--calls", type=int, default=20, help="calls per cell per round")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cells = {}
    for name, (n_in, n_out) in SHAPES.items():
        linear = torch.nn.Linear(n_in, n_out, bias=False).eval()
        cells[name] = {"fp32": linear, "int8 (ptq_dynamic)": dynamic_int8_linear(linear), "int4 (qat_int4)": Int4Linear(linear, 32)}
    x = {name: torch.randn(1, 1, n_in) for name, (n_in, _) in SHAPES.items()}
    times = {(name, kind): [] for name, kinds in cells.items() for kind in kinds}
    with torch.inference_mode():
        for name, kinds in cells.items():  # warm-up
            for module in kinds.values():
                module(x[name])
        for _ in range(args.rounds):
            for (name, kind) in times:
                module, inp = cells[name][kind], x[name]
                start = time.perf_counter()
                for _ in range(args.calls):
                    module(inp)
                times[(name, kind)].append((time.perf_counter() - start) / args.calls * 1e6)
    kinds = list(next(iter(cells.values())))
    rows = {name: {kind: statistics.median(times[(name, kind)]) for kind in kinds} for name in cells}
    lines = ["| layer (batch 1, one token) | " + " | ".join(f"{k} µs" for k in kinds) + " | int8 × | int4 × |", "|---" * (len(kinds) + 3) + "|"]
    for name, row in rows.items():
        fp32 = row["fp32"]
        lines.append(f"| {name} | " + " | ".join(f"{row[k]:.1f}" for k in kinds)
                     + f" | {fp32 / row[kinds[1]]:.2f} | {fp32 / row[kinds[2]]:.2f} |")
    text = (f"# Decode-step kernels (torch {torch.__version__}, {args.threads} threads, median of {args.rounds} interleaved rounds "
            f"of {args.calls} calls)\n\n" + "\n".join(lines) + f"\n\ncommand: `python bench/lm_kernels.py {' '.join(sys.argv[1:])}`\n")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "lm_kernels.json").write_text(json.dumps({"threads": args.threads, "rounds": args.rounds, "calls": args.calls, "us": rows}, indent=1))
    (out / "lm_kernels.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
