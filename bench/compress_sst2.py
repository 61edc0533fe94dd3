"""Benchmark: compression options on SST-2 with the MiniLM teacher, each measured on the converted model.

    python bench/compress_sst2.py [--epochs 2] [--rows distil_fp32,qat_int8,...]

Runs the real pipeline (Hydra compose + distilkit.pipeline.run) once per row, with the teacher
fine-tuned once and cached, and writes ``bench/results/compress_sst2.{json,md}`` (rows from an
earlier invocation are kept unless run again); prints the table.
Needs ../shared/data/sst2 and ../shared/models/all-MiniLM-L6-v2.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from distilkit.logs import quiet_libraries
from distilkit.pipeline import run

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
RESULTS = ROOT / "bench" / "results"
COMMON = [
    "data=sst2",
    f"data.path={SHARED / 'data' / 'sst2'}",
    "teacher=minilm",
    f"teacher.name_or_path={SHARED / 'models' / 'all-MiniLM-L6-v2'}",
    "student=distil",
    "loss=kd",
    "tracking.experiment_name=bench-compress-sst2",
]
ROWS = {  # in the order they run: the targets' rows first
    "distil_fp32": [],
    "qat_int8": ["quantizer=qat_int8"],
    "compound": ["pruner=heads", "pruner.amount=0.5", "quantizer=qat_int8"],
    "ptq_dynamic": ["quantizer=ptq_dynamic"],
    "heads_50": ["pruner=heads", "pruner.amount=0.5"],
    "qat_int4": ["quantizer=qat_int4"],
    "magnitude_50": ["pruner=magnitude", "pruner.sparsity=0.5"],
}
COLUMNS = [  # (header, metric, format)
    ("dev acc (onnx)", "deploy/onnx_dev_acc", "{:.4f}"),
    ("dev acc (torch)", "deploy/dev_acc", "{:.4f}"),
    ("size MB (onnx)", "deploy/onnx_size_mb", "{:.1f}"),
    ("sparse MB", "student/sparse_size_mb", "{:.1f}"),
    ("torch b1 ms", "deploy/latency_b1_p50_ms", "{:.2f}"),
    ("torch b32 ms", "deploy/latency_b32_p50_ms", "{:.1f}"),
    ("ort b1 ms", "deploy/ort_latency_b1_p50_ms", "{:.2f}"),
    ("ort b32 ms", "deploy/ort_latency_b32_p50_ms", "{:.1f}"),
    ("size x vs teacher", "deploy/size_ratio_vs_teacher", "{:.2f}"),
    ("ort b1 x vs teacher", "deploy/ort_speedup_b1_vs_teacher", "{:.2f}"),
    ("ort b32 x vs teacher", "deploy/ort_speedup_b32_vs_teacher", "{:.2f}"),
    ("acc % of teacher", "retention", "{:.1%}"),
]
TEACHER_AS_DEPLOY = {  # the teacher row, in the same columns
    "deploy/onnx_dev_acc": "teacher/dev_acc", "deploy/dev_acc": "teacher/dev_acc", "deploy/onnx_size_mb": "teacher/onnx_size_mb",
    "student/sparse_size_mb": "teacher/sparse_size_mb", "deploy/latency_b1_p50_ms": "teacher/latency_b1_p50_ms",
    "deploy/latency_b32_p50_ms": "teacher/latency_b32_p50_ms", "deploy/ort_latency_b1_p50_ms": "teacher/ort_latency_b1_p50_ms",
    "deploy/ort_latency_b32_p50_ms": "teacher/ort_latency_b32_p50_ms",
}


def table(rows: dict[str, dict[str, float]]) -> str:
    lines = ["| row | " + " | ".join(h for h, _, _ in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, m in rows.items():
        cells = [fmt.format(m[key]) if key in m else "-" for _, key, fmt in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2, help="student epochs per row")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {list(ROWS)}")
    args = parser.parse_args()
    quiet_libraries()
    RESULTS.mkdir(parents=True, exist_ok=True)
    saved = RESULTS / "compress_sst2.json"
    # rows measured earlier (e.g. with --rows) are kept; the rows run now replace theirs
    results: dict[str, dict[str, float]] = json.loads(saved.read_text())["rows"] if saved.is_file() else {}
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        for name in args.rows.split(","):
            overrides = [f"paths.root_dir={ROOT}", *COMMON, f"trainer.max_epochs={args.epochs}", *ROWS[name]]
            start = time.perf_counter()
            metrics = run(compose(config_name="config", overrides=overrides), {"bench": name})
            metrics["wall_s"] = time.perf_counter() - start
            if "teacher" not in results:
                results["teacher"] = {**{d: metrics[t] for d, t in TEACHER_AS_DEPLOY.items()}, "deploy/size_ratio_vs_teacher": 1.0,
                                      "deploy/ort_speedup_b1_vs_teacher": 1.0, "deploy/ort_speedup_b32_vs_teacher": 1.0, "retention": 1.0}
            metrics["retention"] = metrics["deploy/onnx_dev_acc"] / metrics["teacher/dev_acc"]
            results[name] = metrics
            results = {row: results[row] for row in ("teacher", *ROWS) if row in results}
            save(results, args.epochs)  # after every row: a stopped benchmark keeps what it measured
            print(table(results), flush=True)


def save(results: dict[str, dict[str, float]], epochs: int) -> None:
    header = f"SST-2 dev, MiniLM-L6 teacher, distil student ({epochs} epoch(s)), {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
    (RESULTS / "compress_sst2.json").write_text(json.dumps({"setup": header, "rows": results}, indent=1))
    (RESULTS / "compress_sst2.md").write_text(f"{header}\n\n{table(results)}\n")


if __name__ == "__main__":
    main()
