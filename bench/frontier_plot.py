"""Frontier plots from a compress_sst2 results file: dev accuracy vs onnxruntime latency and vs ONNX size.

    python bench/frontier_plot.py [bench/results/compress_sst2.json] [--out bench/results/frontier.png]

Two panels (latency at batch 1, full length, from the final interleaved timing session; ONNX MB on a
log scale), one point per row, the Pareto frontier (no other row both more accurate and smaller/faster)
joined by a line, and the teacher's 96 % accuracy line. Reads the numbers only; measures nothing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ACC = "deploy/onnx_dev_acc"
AXES = (("session/ort_latency_b1_p50_ms", "onnxruntime b1 p50 (ms, full length)"), ("deploy/onnx_size_mb", "ONNX MB"))


def pareto(points: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Points not dominated (lower cost and higher accuracy), by increasing cost."""
    front, best = [], -1.0
    for cost, acc, name in sorted(points, key=lambda p: (p[0], -p[1])):
        if acc > best:
            front.append((cost, acc, name))
            best = acc
    return front


def plot(rows: dict[str, dict[str, float]], out: Path, title: str = "") -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    teacher_acc = rows.get("teacher", {}).get(ACC)
    for ax, (key, label) in zip(axes, AXES):
        points = [(m[key], m[ACC], name) for name, m in rows.items() if key in m and ACC in m]
        for cost, acc, name in points:
            ax.scatter(cost, acc, color="tab:red" if name.startswith("teacher") else "tab:blue")
            ax.annotate(name, (cost, acc), fontsize=7, xytext=(3, 3), textcoords="offset points")
        front = pareto(points)
        ax.plot([p[0] for p in front], [p[1] for p in front], color="tab:green", lw=1, label="Pareto frontier")
        if teacher_acc:
            ax.axhline(0.96 * teacher_acc, color="gray", ls="--", lw=1, label="96 % of teacher")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("dev accuracy (deployed ONNX)")
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", type=Path, default=Path(__file__).parent / "results" / "compress_sst2.json")
    parser.add_argument("--out", type=Path, default=None, help="PNG path (default: frontier.png beside the results)")
    args = parser.parse_args()
    saved = json.loads(args.results.read_text())
    rows = dict(saved["rows"])
    if "teacher" in rows:  # the teacher's accuracy is its deploy column; latency from the session
        rows["teacher"] = {**rows["teacher"], ACC: rows["teacher"].get(ACC)}
    print(plot(rows, args.out or args.results.with_name("frontier.png"), saved.get("setup", "")[:160]))


if __name__ == "__main__":
    main()
