"""The Lightning pruning callback a trial's student fit gets (``callbacks.optuna_pruning`` in its config).

It reads the study's storage, name, pruner and monitored metric from the sweeper's config, so a trial
stays an ordinary pipeline run that only knows its trial id.
"""

from __future__ import annotations

import optuna
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from optuna_integration import PyTorchLightningPruningCallback

from hydra_plugins.distilkit_optuna_sweeper.storage import open_storage


def pruning_callback(trial_id: int) -> PyTorchLightningPruningCallback:
    sweeper = HydraConfig.get().sweeper
    study = optuna.load_study(study_name=sweeper.study_name, storage=open_storage(sweeper.storage), pruner=instantiate(sweeper.pruner))
    return PyTorchLightningPruningCallback(optuna.Trial(study, trial_id), monitor=sweeper.monitor)
