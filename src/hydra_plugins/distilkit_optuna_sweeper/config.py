"""The sweeper's config (``hydra/sweeper=optuna``), registered in Hydra's ConfigStore on import.

Same surface as hydra-optuna-sweeper: ``sampler`` and ``pruner`` are ``_target_`` configs (groups
``hydra/sweeper/sampler``: tpe, nsgaii, random, grid; ``hydra/sweeper/pruner``: none, median,
successive_halving), ``direction`` (one or a list), ``n_trials``, ``n_jobs``, ``storage``,
``study_name``, ``params`` (Hydra's sweep syntax). distilkit adds ``objectives`` (the logged metrics
the directions apply to), ``constraints`` (metric -> upper bound), ``catch``, heartbeat and retry.
"""


from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class TPESamplerConfig:
    _target_: str = "optuna.samplers.TPESampler"
    seed: Optional[int] = None
    n_startup_trials: int = 10
    multivariate: bool = False
    constant_liar: bool = True  # several workers on one study don't all try the same point


@dataclass
class NSGAIISamplerConfig:
    _target_: str = "optuna.samplers.NSGAIISampler"
    seed: Optional[int] = None
    population_size: int = 50


@dataclass
class RandomSamplerConfig:
    _target_: str = "optuna.samplers.RandomSampler"
    seed: Optional[int] = None


@dataclass
class GridSamplerConfig:
    """The grid is the ``params`` (choice and range sweeps); ``search_space`` is filled in by the sweeper."""

    _target_: str = "optuna.samplers.GridSampler"
    seed: Optional[int] = None
    search_space: Optional[dict] = None


@dataclass
class MedianPrunerConfig:
    _target_: str = "optuna.pruners.MedianPruner"
    n_startup_trials: int = 2
    n_warmup_steps: int = 0
    interval_steps: int = 1


@dataclass
class SuccessiveHalvingPrunerConfig:
    _target_: str = "optuna.pruners.SuccessiveHalvingPruner"
    min_resource: Any = "auto"
    reduction_factor: int = 4
    min_early_stopping_rate: int = 0


@dataclass
class NopPrunerConfig:
    _target_: str = "optuna.pruners.NopPruner"


@dataclass
class DistilkitOptunaSweeperConf:
    _target_: str = "hydra_plugins.distilkit_optuna_sweeper.sweeper.DistilkitOptunaSweeper"
    _recursive_: bool = False  # sampler and pruner are instantiated by the sweeper (constraints, grid)
    defaults: list = field(default_factory=lambda: ["_self_", {"sampler": "tpe"}, {"pruner": "none"}])
    sampler: Any = None
    pruner: Any = None
    direction: Any = "maximize"  # or a list, one per objective
    objectives: Any = field(default_factory=lambda: ["student/dev_acc"])  # logged metric names
    n_trials: int = 20  # trials in the study in total (a rerun of the command resumes up to this)
    n_jobs: int = 1  # trials asked and launched per batch (in parallel with a parallel launcher)
    storage: Optional[str] = "sqlite:///${paths.root_dir}/optuna.db"  # any RDB URL, or journal:FILE
    study_name: str = "distilkit"
    params: Optional[dict] = None  # key -> Hydra sweep syntax, e.g. {loss.T: "tag(log, interval(1, 20))"}
    constraints: dict = field(default_factory=dict)  # metric -> upper bound; infeasible trials never best
    catch: bool = True  # a failing trial is recorded FAIL and the study goes on
    monitor: str = "val/acc"  # the per-epoch metric the pruner watches (single objective only)
    heartbeat_interval: Optional[int] = 60  # seconds (RDB storage): a trial whose process died is failed...
    grace_period: Optional[int] = None  # ...after this long without a heartbeat (default 2 intervals)
    max_retry: int = 2  # ...and retried with the same parameters up to this many times


cs = ConfigStore.instance()
cs.store(group="hydra/sweeper", name="optuna", node=DistilkitOptunaSweeperConf, provider="distilkit")
for name, node in (("tpe", TPESamplerConfig), ("nsgaii", NSGAIISamplerConfig), ("random", RandomSamplerConfig), ("grid", GridSamplerConfig)):
    cs.store(group="hydra/sweeper/sampler", name=name, node=node, provider="distilkit")
for name, node in (("none", NopPrunerConfig), ("median", MedianPrunerConfig), ("successive_halving", SuccessiveHalvingPrunerConfig)):
    cs.store(group="hydra/sweeper/pruner", name=name, node=node, provider="distilkit")
