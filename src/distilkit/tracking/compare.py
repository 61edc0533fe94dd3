"""Compare runs: an experiment's or a sweep's runs side by side, Pareto-optimal ones marked.

Columns are the metrics the pipeline logs (names from ``distilkit.measure``): the deployed model's
dev accuracy, the student's retention of the teacher's accuracy, the deployable ONNX size, its
onnxruntime latency at batch 1 (full length) and the speed-up and size ratio against the teacher.
A run is Pareto-optimal when no other run is at least as good on accuracy, latency and size and
better on one.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from mlflow.tracking import MlflowClient

from distilkit.measure.budget import LATENCY, SIZE  # the deployed model's b1 latency and ONNX size: the budget's metrics
from distilkit.measure.latency import speedup_name
from distilkit.tracking.sweep import FEASIBLE_TAG, STUDY_TAG

ACC = "deploy/onnx_dev_acc"
COLUMNS = {  # header -> metric
    "dev acc": ACC,
    "retention": "student/retention_dev",
    "ONNX MB": SIZE,
    "ort b1 ms": LATENCY,
    "speed-up b1": f"deploy/{speedup_name('onnxruntime', 'full', 1, 'teacher')}",
    "size ratio": "deploy/size_ratio_vs_teacher",
}
OBJECTIVES = ((ACC, 1), (LATENCY, -1), (SIZE, -1))  # (metric, +1 maximize / -1 minimize)


@dataclass
class Row:
    run_id: str
    name: str
    metrics: dict[str, float]
    pareto: bool = False
    feasible: bool = True  # False: the trial broke its sweep's constraints (a budget); never Pareto-optimal


def load_runs(tracking_uri: str, experiment_name: str, sweep: str | None = None) -> list[Row]:
    """FINISHED runs of ``experiment_name``; with ``sweep`` (a study name or a parent run id) only its trials."""
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        raise LookupError(f"no experiment {experiment_name!r} in {tracking_uri}")
    query = "attributes.status = 'FINISHED'"
    if sweep:
        is_run_id = len(sweep) == 32 and all(c in "0123456789abcdef" for c in sweep)
        query += f" and tags.mlflow.parentRunId = '{sweep}'" if is_run_id else f" and tags.`{STUDY_TAG}` = '{sweep}'"
    return rows_of(client.search_runs([experiment.experiment_id], filter_string=query, max_results=5000))


def rows_of(runs) -> list[Row]:
    """MLflow runs (those that logged the deployed accuracy) as rows, most accurate first, Pareto marked."""
    rows = [Row(r.info.run_id, r.info.run_name or r.info.run_id[:8], dict(r.data.metrics), feasible=r.data.tags.get(FEASIBLE_TAG) != "false")
            for r in runs if ACC in r.data.metrics and r.info.status == "FINISHED"]
    return mark_pareto(sorted(rows, key=lambda r: -r.metrics[ACC]))


def mark_pareto(rows: list[Row]) -> list[Row]:
    def key(row):
        return [sign * row.metrics.get(m, float("nan")) for m, sign in OBJECTIVES]

    candidates = [row for row in rows if row.feasible]
    for row in rows:
        mine = key(row)
        row.pareto = row.feasible and not any(
            all(o >= m for o, m in zip(key(other), mine)) and key(other) != mine for other in candidates if other is not row)
    return rows


def table(rows: list[Row], fmt: str = "md") -> str:
    header = ["pareto", "run", *COLUMNS]
    body = [["*" if r.pareto else ("" if r.feasible else "infeasible"), r.name, *(f"{r.metrics[m]:.4g}" if m in r.metrics else "" for m in COLUMNS.values())] for r in rows]
    if fmt == "csv":
        out = io.StringIO()
        csv.writer(out).writerows([header, *body])
        return out.getvalue()
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in body]) + "\n"


def frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (cost, accuracy) points no other point beats: cheaper-or-equal and at least as accurate; by cost."""
    best, out = float("-inf"), []
    for cost, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if acc > best:
            out.append((cost, acc))
            best = acc
    return out


def plot(rows: list[Row], path: str, bounds: dict[str, float | None] | None = None, chosen: str | None = None) -> None:
    """:func:`draw` saved to ``path`` (PNG)."""
    import matplotlib.pyplot as plt

    fig = draw(rows, bounds, chosen)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def draw(rows: list[Row], bounds: dict[str, float | None] | None = None, chosen: str | None = None):
    """Accuracy vs latency and accuracy vs size: Pareto-optimal runs filled, infeasible ones crossed, each
    panel's accuracy-cost frontier (every run, feasible or not) as a step line; with ``bounds`` (metric ->
    upper bound, a budget) the bound as a vertical line, and ``chosen`` (a run id) starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bounds = bounds or {}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, (metric, label) in zip(axes, ((LATENCY, "ort latency b1 p50 (ms)"), (SIZE, "ONNX size (MB)"))):
        have = [r for r in rows if metric in r.metrics]
        for kind, pick, style in (("other", lambda r: r.feasible and not r.pareto, {"marker": "o", "facecolors": "none", "edgecolors": "C0"}),
                                  ("Pareto-optimal", lambda r: r.pareto, {"marker": "o", "color": "C0"}),
                                  ("over budget", lambda r: not r.feasible, {"marker": "x", "color": "C3"})):
            pts = [r for r in have if pick(r)]
            if pts:
                ax.scatter([r.metrics[metric] for r in pts], [r.metrics[ACC] for r in pts], label=kind, **style)
        line = frontier([(r.metrics[metric], r.metrics[ACC]) for r in have])
        if len(line) > 1:
            ax.step(*zip(*line), where="post", color="C0", alpha=0.4, label="frontier")
        if bounds.get(metric) is not None:
            ax.axvline(bounds[metric], color="C3", linestyle="--", label=f"budget {bounds[metric]:g}")
        best = [r for r in have if r.run_id == chosen]
        if best:
            ax.scatter([best[0].metrics[metric]], [best[0].metrics[ACC]], marker="*", s=250, color="C1", zorder=5,
                       label=f"chosen: {best[0].metrics[ACC]:.4f}")
        ax.set_xlabel(label)
        ax.set_ylabel("deployed dev accuracy")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
