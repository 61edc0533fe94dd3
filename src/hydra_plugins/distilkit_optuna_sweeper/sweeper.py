"""The sweeper: ask Optuna for trials, launch each as an ordinary ``python -m train`` job, tell the result.

A trial's job gets ``tracking.parent_run_id`` (its MLflow run is nested under the sweep's parent run),
``tracking.tags`` (study and trial number) and, with a pruner on a single-objective study,
``callbacks.optuna_pruning`` (the Lightning pruning callback). The job returns its metrics; the
objectives and constraints are read from them by name.

``n_trials`` is the study's total: the same command again resumes the study and runs only what is
missing (trials finished, running in another worker, or waiting count; a trial whose process died
is failed by its missing heartbeat and retried once the grace period has passed).
"""

from __future__ import annotations

import difflib
import logging
import threading
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.storages import RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import TrialState

from distilkit.errors import ConfigError, check
from distilkit.tracking.sweep import SweepTracker
from hydra_plugins.distilkit_optuna_sweeper.space import parse
from hydra_plugins.distilkit_optuna_sweeper.storage import open_storage, retry_callback

log = logging.getLogger(__name__)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
KEY = "hydra.sweeper"


class DistilkitOptunaSweeper(Sweeper):
    def __init__(self, sampler: Any, pruner: Any, direction: Any, objectives: Any, n_trials: int, n_jobs: int, storage: str | None,
                 study_name: str, params: dict | None, constraints: dict, catch: bool, monitor: str,
                 heartbeat_interval: int | None, grace_period: int | None, max_retry: int):
        self.sampler_cfg, self.pruner_cfg = sampler, pruner
        self.objectives = [objectives] if isinstance(objectives, str) else list(objectives or [])
        self.directions = [direction] if isinstance(direction, str) else list(direction or [])
        self.n_trials, self.n_jobs = n_trials, n_jobs
        self.storage_url, self.study_name = storage, study_name
        self.params = dict(params or {})
        self.constraints = {str(k): float(v) for k, v in (constraints or {}).items() if v is not None}  # a null bound: no constraint
        self.catch, self.monitor = catch, monitor
        self.heartbeat_interval, self.grace_period, self.max_retry = heartbeat_interval, grace_period, max_retry

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context, task_function=task_function, config=config)
        self.job_idx = 0

    # ------------------------------------------------------------------------------------------
    def check_settings(self) -> None:
        check(self.n_trials > 0, f"{KEY}.n_trials", f"must be > 0 (the study's total number of trials), got {self.n_trials}")
        check(self.n_jobs > 0, f"{KEY}.n_jobs", f"must be > 0, got {self.n_jobs}")
        check(bool(self.objectives), f"{KEY}.objectives", "give one or more logged metric names, e.g. [student/dev_acc]")
        check(all(d in ("maximize", "minimize") for d in self.directions), f"{KEY}.direction", f"each must be maximize or minimize, got {self.directions}")
        check(len(self.directions) == len(self.objectives), f"{KEY}.direction",
              f"{len(self.directions)} direction(s) for {len(self.objectives)} objective(s) {self.objectives}; give one per objective")
        check(bool(self.storage_url), f"{KEY}.storage", "is required: an RDB URL (sqlite:///FILE) or journal:FILE")

    def sampler(self, space: dict, done: int = 0) -> optuna.samplers.BaseSampler:
        """The sampler; a seeded one resuming a study of ``done`` trials is seeded ``seed + done`` (a seeded
        sampler in a new process would otherwise draw the same first parameters again on every resume)."""
        kwargs = {}
        if done and self.sampler_cfg.get("seed") is not None:
            kwargs["seed"] = int(self.sampler_cfg.seed) + done
        if self.sampler_cfg._target_.endswith("GridSampler") and not self.sampler_cfg.get("search_space"):
            bad = [k for k, d in space.items() if not isinstance(d, (CategoricalDistribution, IntDistribution))]
            check(not bad, f"{KEY}.sampler", f"grid needs choice or range params; {bad} are intervals")
            kwargs["search_space"] = {k: list(d.choices) if isinstance(d, CategoricalDistribution) else list(range(d.low, d.high + 1, d.step))
                                      for k, d in space.items()}
        try:
            return instantiate(self.sampler_cfg, **kwargs)
        except Exception as err:  # noqa: BLE001
            raise ConfigError(f"{KEY}.sampler", f"{self.sampler_cfg._target_}: {str(err).splitlines()[0]}") from None

    def sweep(self, arguments: list[str]) -> None:
        self.check_settings()
        space, fixed = parse(self.params, arguments, self.config, self.hydra_context.config_loader)
        check(bool(space), f"{KEY}.params", "the search space is empty; give e.g. 'loss.T=interval(1,20)' or hydra.sweeper.params")
        storage = open_storage(self.storage_url, self.heartbeat_interval, self.grace_period, self.max_retry)
        existing = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)}
        sampler = self.sampler(space, existing.get(self.study_name, 0))
        pruner = instantiate(self.pruner_cfg) if self.pruner_cfg is not None else optuna.pruners.NopPruner()
        prune = len(self.objectives) == 1 and not isinstance(pruner, optuna.pruners.NopPruner)
        new = self.study_name not in existing
        study = optuna.create_study(study_name=self.study_name, storage=storage, sampler=sampler, pruner=pruner,
                                    directions=self.directions, load_if_exists=True)
        check(new or [d.name.lower() for d in study.directions] == self.directions, f"{KEY}.direction",
              f"study {self.study_name!r} exists with directions {[d.name.lower() for d in study.directions]}; use another study_name")
        tracker = SweepTracker(self.config.tracking, study, self.objectives, self.directions, self.constraints)
        if new:
            study.set_user_attr("objectives", self.objectives)
            study.set_user_attr("constraints", self.constraints)
        try:
            self.optimize(study, space, fixed, tracker, prune)
        except ConfigError:
            if new:  # nothing half-written: the study and its runs go
                optuna.delete_study(study_name=self.study_name, storage=storage)
                tracker.delete()
            raise
        except BaseException:
            tracker.end("KILLED")
            raise
        done = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        tracker.summarize(self.sweep_dir())
        if not done:
            tracker.end("FAILED")
            raise TrialsFailed(f"no trial of study {self.study_name!r} completed or was pruned: every one failed (see above)")
        tracker.end("FINISHED")

    def sweep_dir(self):
        from pathlib import Path

        return Path(self.config.hydra.sweep.dir)

    # ------------------------------------------------------------------------------------------
    def remaining(self, study: optuna.Study) -> int:
        """Trials still to ask for: n_trials minus those finished, running or waiting (a trial failed by
        its missing heartbeat and retried counts once, through its retry)."""
        trials = study.get_trials(deepcopy=False)
        retried = {RetryHeartbeatStaleTrialCallback.retried_trial_number(t) for t in trials} - {None}
        counted = [t for t in trials if t.state in (*FINISHED, TrialState.RUNNING) and t.number not in retried]
        waiting = [t for t in trials if t.state == TrialState.WAITING]
        return self.n_trials - len(counted) - len(waiting)

    def optimize(self, study, space, fixed, tracker: "SweepTracker", prune: bool) -> None:
        checked = False
        while True:
            if heartbeat_on(study._storage):
                fail_stale_trials(study)
            batch = min(self.n_jobs, self.remaining(study) + sum(t.state == TrialState.WAITING for t in study.get_trials(deepcopy=False)))
            if batch <= 0:
                return
            trials = [study.ask(space) for _ in range(batch)]
            overrides = [self.overrides(study, trial, fixed, tracker, prune) for trial in trials]
            with _Heartbeat(study, trials, self.heartbeat_interval):
                try:
                    returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
                except BaseException:  # Ctrl-C / SIGTERM: the trials fail and are retried on resume
                    for trial in trials:
                        frozen = study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
                        retry_callback(self.max_retry)(study, frozen)
                    raise
            self.job_idx += len(returns)
            for trial, ret in zip(trials, returns):
                if not checked and ret.status == JobStatus.COMPLETED:
                    checked = True  # the objective and constraint names, against what the first run logged
                    try:
                        self.check_metric_names(ret._return_value or {})
                    except ConfigError:
                        for t in trials:
                            study.tell(t, state=TrialState.FAIL)
                        raise
                self.tell(study, trial, ret, tracker)

    def overrides(self, study, trial: optuna.Trial, fixed: dict, tracker: "SweepTracker", prune: bool) -> tuple[str, ...]:
        params = {k: v for k, v in trial.params.items()}
        lines = [f"{k}={v}" for k, v in {**fixed, **params}.items()]
        lines += [f"tracking.parent_run_id={tracker.parent_run_id}",
                  f"tracking.tags={{optuna.study:'{study.study_name}',optuna.trial:{trial.number}}}"]
        if prune:
            lines.append(f"+callbacks.optuna_pruning={{_target_:hydra_plugins.distilkit_optuna_sweeper.pruning.pruning_callback,trial_id:{trial._trial_id}}}")
        return tuple(lines)

    def check_metric_names(self, metrics: dict) -> None:
        for key, names in ((f"{KEY}.objectives", self.objectives), (f"{KEY}.constraints", list(self.constraints))):
            for name in names:
                if name not in metrics:
                    near = difflib.get_close_matches(name, list(metrics), n=3, cutoff=0.5)
                    raise ConfigError(key, f"{name!r} names no logged metric" + (f"; did you mean {', '.join(near)}?" if near else ""))

    def tell(self, study: optuna.Study, trial: optuna.Trial, ret, tracker: "SweepTracker") -> None:
        # GridSampler calls study.stop() once the grid is done, which Optuna allows inside optimize() only
        study._thread_local.in_optimize_loop, outside = True, study._thread_local.in_optimize_loop
        try:
            self._tell(study, trial, ret, tracker)
        finally:
            study._thread_local.in_optimize_loop = outside

    def _tell(self, study: optuna.Study, trial: optuna.Trial, ret, tracker: "SweepTracker") -> None:
        if ret.status == JobStatus.COMPLETED:
            metrics = ret._return_value or {}
            if not all(o in metrics for o in self.objectives):
                study.tell(trial, state=TrialState.FAIL)
                return
            for name, bound in self.constraints.items():  # Optuna 5's constraints (feasible when <= 0): TPE, NSGA-II use them
                trial.set_constraint(name, float(metrics[name]) - bound)
            frozen = study.tell(trial, [float(metrics[o]) for o in self.objectives])
        else:
            err = ret._return_value
            if isinstance(err, optuna.TrialPruned):
                measured = getattr(err, "metrics", {})  # OverBudget (distilkit.measure.budget): infeasible before training
                for name, bound in self.constraints.items():
                    if name in measured:
                        trial.set_constraint(name, float(measured[name]) - bound)
                frozen = study.tell(trial, state=TrialState.PRUNED)
                log.info("trial %d pruned: %s", trial.number, err)
            else:
                if isinstance(err, ConfigError) and not self.catch:
                    raise err
                frozen = study.tell(trial, state=TrialState.FAIL)
                print(f"trial {trial.number} failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}", flush=True)
                if not self.catch:
                    raise err
        tracker.trial_done(frozen)


class TrialsFailed(RuntimeError):
    """Every trial of the study failed."""


def heartbeat_on(storage) -> bool:
    """The storage (maybe Optuna's cache around an RDBStorage) records heartbeats."""
    return isinstance(storage, BaseHeartbeat) and storage.get_heartbeat_interval() is not None


class _Heartbeat:
    """Record a heartbeat for the running trials every ``interval`` s (RDB storage), like study.optimize does."""

    def __init__(self, study: optuna.Study, trials: list, interval: int | None):
        self.storage, self.ids, self.interval = study._storage, [t._trial_id for t in trials], interval
        self.stop = threading.Event()

    def beat(self) -> None:
        while True:
            for trial_id in self.ids:
                self.storage.record_heartbeat(trial_id)
            if self.stop.wait(self.interval):
                return

    def __enter__(self):
        if heartbeat_on(self.storage):
            self.thread = threading.Thread(target=self.beat, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        return False
