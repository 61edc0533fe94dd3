"""What the benchmarks share: the pipeline's ``Run`` built from Hydra overrides, untracked."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
SHARED = ROOT.parent / "shared"
RESULTS = ROOT / "bench" / "results"


class NoTracking:
    """Stands in for the MLflow tracker where a benchmark runs pipeline stages, not whole runs."""

    def __init__(self, **_):
        pass

    def lightning_logger(self):
        return False


def build_run(root: str, overrides: list[str]):
    """``distilkit.pipeline.Run`` for ``conf/`` composed with ``overrides``, writing under ``root``, untracked."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from distilkit.logs import quiet_libraries
    from distilkit.pipeline import Run

    quiet_libraries()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"paths.root_dir={root}", *overrides, "++tracking._target_=harness.NoTracking"])
    return Run(cfg, {})
