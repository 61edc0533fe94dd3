"""Entry point: ``python -m train key=option a.b=value`` (``-m`` for a Hydra multirun).

It only wires: checks the group options named on the command line, composes the config with Hydra,
hands it to :mod:`distilkit.pipeline`, and turns bad input into one line and a non-zero exit.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
EXIT_BAD_INPUT = 2


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


def check_group_options(argv: list[str], conf_dir: Path = CONF_DIR) -> None:
    """``loss=foo`` for a group with no ``foo.yaml``: one line listing the options (Hydra's own is longer)."""
    for arg in argv:
        key, sep, value = arg.lstrip("+").partition("=")
        if not sep or "." in key or not (conf_dir / key).is_dir():
            continue
        options = sorted(p.stem for p in (conf_dir / key).glob("*.yaml"))
        for option in value.split(","):
            if option and option not in options:
                fail(f"{key}={option} is not an option of group '{key}'; available: {', '.join(options)}")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from distilkit.errors import ConfigError
    from distilkit.logs import quiet_libraries
    from distilkit.pipeline import GROUPS, run

    quiet_libraries()
    choices = {g: str(c) for g, c in HydraConfig.get().runtime.choices.items() if g in GROUPS}
    try:
        metrics = run(cfg, choices)
    except ConfigError as err:
        fail(str(err))
    return metrics.get(cfg.get("objective") or "student/dev_acc")


if __name__ == "__main__":
    check_group_options(sys.argv[1:])
    main()
