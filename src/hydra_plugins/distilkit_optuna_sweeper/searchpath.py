"""Adds the repository's ``sweeps/`` to Hydra's search path: ``+sweep=kd_temperature`` etc."""

from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

SWEEPS = Path(__file__).resolve().parents[3] / "sweeps"


class DistilkitSweepsSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        if SWEEPS.is_dir():
            search_path.append(provider="distilkit-sweeps", path=f"file://{SWEEPS}")
