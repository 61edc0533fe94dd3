"""Entry point: ``python -m train key=option a.b=value`` (``-m`` for a Hydra multirun).

It only wires: Hydra composes the config (its sweep syntax, ``--config-dir`` and ``hydra.searchpath``
work as usual), the pipeline runs it, and every kind of bad input becomes one line and a non-zero
exit: ``error: KEY: what is wrong and what is allowed``.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def hydra_error_line(err: Exception) -> str:
    """Hydra's (multi-line) composition errors as one line; an unknown option lists the options."""
    from hydra.errors import MissingConfigException

    if isinstance(err, MissingConfigException) and err.missing_cfg_file and err.options is not None:
        group, _, option = err.missing_cfg_file.rpartition("/")
        return f"{group}={option} is not an option of group '{group}'; available: {', '.join(sorted(err.options))}"
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip())


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from distilkit.errors import ConfigError, TrainingDiverged
    from distilkit.logs import quiet_libraries
    from distilkit.measure.budget import OverBudget
    from distilkit.pipeline import GROUPS, run
    from distilkit.training.distributed import check_multirun

    quiet_libraries()
    hydra_cfg = HydraConfig.get()
    choices = {g: str(c) for g, c in hydra_cfg.runtime.choices.items() if g in GROUPS}
    overrides = list(hydra_cfg.overrides.task)
    command = " ".join(["python -m train", *map(shlex.quote, overrides)])
    if hydra_cfg.mode.name == "MULTIRUN":
        command += f"   (job {hydra_cfg.job.num} of: python -m train {' '.join(map(shlex.quote, sys.argv[1:]))})"
    try:
        check_multirun(cfg.hardware, hydra_cfg.mode.name == "MULTIRUN")  # scale-out: ranks > 0 must not re-run a sweep
        metrics = run(cfg, choices, overrides, command)
    except (ConfigError, TrainingDiverged, OverBudget) as err:
        if hydra_cfg.mode.name == "MULTIRUN" and hydra_cfg.sweeper.get("catch"):
            raise  # a sweeper that catches (hydra/sweeper=optuna) records the trial FAILED and goes on
        fail(str(err), EXIT_BAD_INPUT if isinstance(err, ConfigError) else EXIT_FAILED)
    return metrics  # every logged metric: the sweeper reads its objectives and constraints by name


if __name__ == "__main__":
    from hydra.errors import HydraException

    from distilkit.errors import ConfigError
    from distilkit.tracking.mlflow_run import RunInterrupted

    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises its errors here, where they become one line
    try:
        main()
    except HydraException as err:
        fail(hydra_error_line(err))
    except ConfigError as err:  # a sweeper's settings (hydra.sweeper.*)
        fail(str(err))
    except RuntimeError as err:
        if type(err).__name__ != "TrialsFailed":  # the Optuna sweeper: every trial failed
            raise
        fail(str(err), EXIT_FAILED)
    except RunInterrupted as err:
        fail(f"{err}; the MLflow run is marked KILLED", EXIT_INTERRUPTED)
