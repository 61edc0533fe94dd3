"""A sweep in MLflow: one parent run per Optuna study, each trial's run nested under it.

The parent run's id is kept in the study (user attr), so a resumed study goes on in the same parent.
At the end the parent holds, under ``sweep/``: the trials table (CSV and markdown), the best
parameters, the Pareto front (multi-objective), Optuna's plots (optimization history, parameter
importances, slice) and, for a study with constraints (a budget), ``budget_frontier.png``: accuracy vs
latency and vs size of every trial with the budget lines and the chosen model; all drawn with matplotlib.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import optuna  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

log = logging.getLogger(__name__)
PARENT_ATTR = "mlflow_parent_run_id"
STATE_TAG = "optuna.state"
TRIAL_TAG = "optuna.trial"
STUDY_TAG = "optuna.study"
FEASIBLE_TAG = "feasible"


def feasible(trial: optuna.trial.FrozenTrial) -> bool:
    """All constraint values <= 0 (Optuna's convention: ``Trial.set_constraint`` stores ``constraints:NAME``)."""
    values = [v for k, v in trial.system_attrs.items() if k.startswith("constraints:")]
    return all(c <= 0 for c in [*values, *(trial.system_attrs.get("constraints") or ())])


def best_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The best feasible completed trial (single objective) or the feasible Pareto front."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if feasible(t)]
    if not done:
        return []
    if len(study.directions) == 1:
        sign = 1 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1
        return [max(done, key=lambda t: sign * t.value)]
    signs = [1 if d == optuna.study.StudyDirection.MAXIMIZE else -1 for d in study.directions]
    def dominated(a, b):  # b dominates a
        return all(s * vb >= s * va for s, va, vb in zip(signs, a.values, b.values)) and any(s * vb > s * va for s, va, vb in zip(signs, a.values, b.values))
    return [t for t in done if not any(dominated(t, o) for o in done if o is not t)]


class SweepTracker:
    def __init__(self, tracking_cfg, study: optuna.Study, objectives: list[str], directions: list[str], constraints: dict[str, float]):
        tracker = instantiate(tracking_cfg, parent_run_id=None, tags={})
        self.client = MlflowClient(tracker.tracking_uri)
        self.experiment_id = tracker._experiment_id()
        self.study, self.objectives, self.directions, self.constraints = study, objectives, directions, constraints
        run_id = study.user_attrs.get(PARENT_ATTR)
        if run_id and self._exists(run_id):
            self.client.update_run(run_id, status="RUNNING")
        else:
            run = self.client.create_run(self.experiment_id, run_name=f"sweep {study.study_name}",
                                         tags={STUDY_TAG: study.study_name, "sweep": "parent", "mlflow.note.content":
                                               f"Optuna study {study.study_name}: {', '.join(f'{o} {d}' for o, d in zip(objectives, directions))}"})
            run_id = run.info.run_id
            study.set_user_attr(PARENT_ATTR, run_id)
        self.parent_run_id = run_id

    def _exists(self, run_id: str) -> bool:
        try:
            return self.client.get_run(run_id).info.lifecycle_stage == "active"
        except Exception:  # noqa: BLE001
            return False

    def child(self, number: int):
        runs = self.client.search_runs([self.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{self.parent_run_id}' and tags.`{TRIAL_TAG}` = '{number}'")
        return runs[0] if runs else None

    def children(self):
        return self.client.search_runs([self.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{self.parent_run_id}'", max_results=5000)

    def trial_done(self, trial: optuna.trial.FrozenTrial) -> None:
        run = self.child(trial.number)
        if run is None:
            return
        self.client.set_tag(run.info.run_id, STATE_TAG, trial.state.name)
        if self.constraints and (trial.state == TrialState.COMPLETE or any(k.startswith("constraints") for k in trial.system_attrs)):
            self.client.set_tag(run.info.run_id, FEASIBLE_TAG, str(feasible(trial)).lower())  # pruned over budget: false
        if trial.state == TrialState.PRUNED and run.info.status != "KILLED":
            self.client.set_terminated(run.info.run_id, "KILLED")

    def table(self) -> list[dict]:
        best = {t.number for t in best_trials(self.study)}
        rows = []
        for t in self.study.get_trials(deepcopy=False):
            row = {"trial": t.number, "state": t.state.name}
            for i, name in enumerate(self.objectives):
                row[name] = t.values[i] if t.values else None
            row |= {k: v for k, v in t.params.items()}
            if self.constraints:
                row["feasible"] = feasible(t) if t.state == TrialState.COMPLETE else None
            row["best"] = t.number in best
            rows.append(row)
        return rows

    def summarize(self, out_dir: Path) -> None:
        """Write the trials table, best params and plots to ``out_dir/sweep`` and log them on the parent run."""
        out = Path(out_dir) / "sweep"
        out.mkdir(parents=True, exist_ok=True)
        rows = self.table()
        columns = list(dict.fromkeys(k for r in rows for k in r))
        import csv

        with open(out / "trials.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, columns)
            writer.writeheader()
            writer.writerows(rows)
        fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))  # noqa: E731
        md = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        md += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
        (out / "trials.md").write_text("\n".join(md) + "\n")
        best = [{"trial": t.number, "values": dict(zip(self.objectives, t.values)), "params": t.params} for t in best_trials(self.study)]
        (out / "best_params.json").write_text(json.dumps(best, indent=2) + "\n")
        self.plots(out)
        if self.constraints:
            self.budget_plot(out / "budget_frontier.png")
        if best:
            self.client.log_param(self.parent_run_id, "best_trials", ",".join(str(b["trial"]) for b in best)[:6000]) if not self._has_param("best_trials") else None
            if len(best) == 1:
                for k, v in best[0]["values"].items():
                    self.client.log_metric(self.parent_run_id, f"best/{k}", float(v))
        self.client.log_artifacts(self.parent_run_id, str(out), "sweep")

    def _has_param(self, name: str) -> bool:
        return name in self.client.get_run(self.parent_run_id).data.params

    def plots(self, out: Path) -> None:
        import matplotlib.pyplot as plt
        from optuna.visualization import matplotlib as vis

        done = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        multi = len(self.objectives) > 1
        first = {"target": (lambda t: t.values[0]), "target_name": self.objectives[0]} if multi else {"target_name": self.objectives[0]}
        figures = {"optimization_history.png": lambda: vis.plot_optimization_history(self.study, **first),
                   "slice.png": lambda: vis.plot_slice(self.study, **first)}
        if len(done) >= 2:
            figures["param_importances.png"] = lambda: vis.plot_param_importances(self.study, **first)
        if multi:
            figures["pareto_front.png"] = lambda: vis.plot_pareto_front(self.study, target_names=self.objectives)
        for name, draw in figures.items():
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    draw()
                plt.gcf().savefig(out / name, dpi=100, bbox_inches="tight")
            except Exception as err:  # noqa: BLE001 - a plot Optuna cannot draw (e.g. one trial) is left out
                log.warning("sweep plot %s left out: %s", name, str(err).splitlines()[0] if str(err) else type(err).__name__)
            finally:
                plt.close("all")

    def budget_plot(self, path: Path) -> None:
        """Accuracy vs latency and vs size of every trial, the budget lines and the chosen (best feasible) trial."""
        from distilkit.tracking.compare import plot, rows_of

        rows = rows_of(self.children())
        best = best_trials(self.study)
        chosen = self.child(best[0].number) if best else None
        if rows:
            plot(rows, str(path), bounds=self.constraints, chosen=chosen.info.run_id if chosen else None)

    def delete(self) -> None:
        for run in self.children():
            self.client.delete_run(run.info.run_id)
        self.client.delete_run(self.parent_run_id)

    def end(self, status: str) -> None:
        if self._exists(self.parent_run_id):
            self.client.set_terminated(self.parent_run_id, status)
