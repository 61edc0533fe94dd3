"""Optuna search over KD temperature, alpha and student depth: accuracy vs deployed size.

    python sweeps/kd_search.py --trials 20 [--study kd-search] [--storage sqlite:///optuna.db] [overrides ...]

Multi-objective (maximize student dev accuracy, minimize deployable ONNX size in MB); the study
lives in ``--storage`` and is resumed by name, so a killed sweep continues where it stopped. Each
trial is one ordinary pipeline run — one MLflow run, tagged with the trial number — so trials
compare side by side in the MLflow UI. Extra arguments are Hydra overrides applied to every trial
(e.g. ``data=sst2 data.path=../shared/data/sst2``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import optuna
from hydra import compose, initialize_config_dir

from distilkit.logs import quiet_libraries
from distilkit.pipeline import run

ROOT = Path(__file__).resolve().parent.parent
OBJECTIVES = ("student/dev_acc", "deploy/onnx_size_mb")
DIRECTIONS = ("maximize", "minimize")


def suggest(trial: optuna.Trial) -> list[str]:
    """The search space, as Hydra overrides."""
    return [
        f"loss.T={trial.suggest_float('T', 1.0, 8.0, log=True)}",
        f"loss.alpha={trial.suggest_float('alpha', 0.1, 0.9)}",
        f"student.num_layers={trial.suggest_int('num_layers', 1, 2)}",
    ]


def search(trials: int, study_name: str, storage: str, overrides: list[str]) -> optuna.Study:
    study = optuna.create_study(study_name=study_name, storage=storage, directions=list(DIRECTIONS), load_if_exists=True)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):

        def objective(trial: optuna.Trial) -> tuple[float, ...]:
            cfg = compose(config_name="config", overrides=["loss=kd", *overrides, *suggest(trial)])
            metrics = run(cfg, {"loss": "kd", "sweep": study_name, "trial": str(trial.number)})
            return tuple(metrics[key] for key in OBJECTIVES)

        remaining = trials - len([t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE])
        if remaining > 0:
            study.optimize(objective, n_trials=remaining)
    return study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="completed trials wanted in the study")
    parser.add_argument("--study", default="kd-search")
    parser.add_argument("--storage", default=f"sqlite:///{ROOT / 'optuna.db'}")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    quiet_libraries()
    study = search(args.trials, args.study, args.storage, args.overrides)
    print("Pareto front (dev acc, ONNX MB):")
    for trial in study.best_trials:
        print(f"  trial {trial.number}: {trial.values} {trial.params}")


if __name__ == "__main__":
    main()
