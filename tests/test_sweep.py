"""The Optuna sweeper (hydra/sweeper=optuna): search space, constraints, nested MLflow runs, resume, bad input."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import mlflow
import optuna
import pytest
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from conftest import ROOT, TINY
from distilkit.errors import ConfigError
from distilkit.tracking.sweep import best_trials, feasible
from hydra_plugins.distilkit_optuna_sweeper.space import parse
from hydra_plugins.distilkit_optuna_sweeper.storage import open_storage
from hydra_plugins.distilkit_optuna_sweeper.sweeper import DistilkitOptunaSweeper

CONFIG = OmegaConf.create({"loss": {"T": 2.0, "alpha": 0.5}, "student": {"num_layers": None}, "quantizer": {"_target_": "x"}})


def sweeper(**kw) -> DistilkitOptunaSweeper:
    args = dict(sampler=OmegaConf.create({"_target_": "optuna.samplers.TPESampler", "seed": 0}), pruner=None, direction="maximize",
                objectives=["student/dev_acc"], n_trials=2, n_jobs=1, storage="sqlite:///:memory:", study_name="s", params=None,
                constraints={}, catch=True, monitor="val/acc", heartbeat_interval=None, grace_period=None, max_retry=1)
    return DistilkitOptunaSweeper(**(args | kw))


def test_search_space_from_hydra_sweep_syntax():
    space, fixed = parse({"loss.T": "tag(log, interval(1, 20.0))"}, ["loss.alpha=interval(0,1)", "student.num_layers=range(1,4)",
                                                                     "quantizer=choice(none,qat_int8)", "+extra=3"], CONFIG, None)
    assert space["loss.T"] == FloatDistribution(1.0, 20.0, log=True)
    assert space["loss.alpha"] == IntDistribution(0, 1) or space["loss.alpha"] == FloatDistribution(0, 1)
    assert space["student.num_layers"] == IntDistribution(1, 3)  # Hydra's range: the stop is excluded
    assert space["quantizer"] == CategoricalDistribution(["none", "qat_int8"])
    assert fixed == {"+extra": "3"}


@pytest.mark.parametrize("override, key, words", [
    ("loss.TT=interval(1,2)", "loss.TT", "did you mean loss.T"),
    ("student.num_layers=range(5,1)", "student.num_layers", "is empty"),
    ("loss.T=interval(3,1)", "loss.T", "is empty"),
    ("loss.T=tag(log, interval(0,1))", "loss.T", "above 0"),
])
def test_bad_search_space_is_one_config_error(override, key, words):
    with pytest.raises(ConfigError) as err:
        parse(None, [override], CONFIG, None)
    assert err.value.key == key and words in str(err.value) and "\n" not in str(err.value)


def test_bad_sweeper_settings_and_storage():
    with pytest.raises(ConfigError, match="n_trials: must be > 0"):
        sweeper(n_trials=0).check_settings()
    with pytest.raises(ConfigError, match="1 direction.*2 objective"):
        sweeper(objectives=["a", "b"]).check_settings()
    with pytest.raises(ConfigError, match=r"storage: cannot open 'sqlite:////proc/no/x.db'"):
        open_storage("sqlite:////proc/no/x.db")
    with pytest.raises(ConfigError, match="storage: cannot open 'nosuchdb://x'"):
        open_storage("nosuchdb://x")


def test_constraints_mark_infeasible_trials_never_best():
    """A fake budget metric: the trial over its bound is infeasible (Optuna's constraints) and not the best."""
    s = sweeper(constraints={"deploy/fake_ms": 5.0})
    study = optuna.create_study(sampler=s.sampler({"loss.T": FloatDistribution(1, 2)}), direction="maximize")

    class Tracker:
        done = []

        def trial_done(self, trial):
            self.done.append((trial.number, trial.state.name, feasible(trial)))

    for acc, ms in ((0.9, 7.0), (0.8, 3.0)):  # the more accurate one is over budget
        trial = study.ask({"loss.T": FloatDistribution(1, 2)})
        ret = JobReturn(overrides=[], status=JobStatus.COMPLETED, _return_value={"student/dev_acc": acc, "deploy/fake_ms": ms})
        s.tell(study, trial, ret, Tracker())
    assert Tracker.done == [(0, "COMPLETE", False), (1, "COMPLETE", True)]
    assert [t.number for t in best_trials(study)] == [1]
    # a failed trial is recorded FAIL (catch) and the study goes on; a pruned one PRUNED
    trial = study.ask({"loss.T": FloatDistribution(1, 2)})
    s.tell(study, trial, JobReturn(status=JobStatus.FAILED, _return_value=RuntimeError("boom")), Tracker())
    trial = study.ask({"loss.T": FloatDistribution(1, 2)})
    s.tell(study, trial, JobReturn(status=JobStatus.FAILED, _return_value=optuna.TrialPruned("epoch 0")), Tracker())
    assert [t[1] for t in Tracker.done[2:]] == ["FAIL", "PRUNED"]


# --- through python -m train ----------------------------------------------------------------------

def sweep(root: Path, cache: Path, *args: str, timeout=900) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "train", "-m", "hydra/sweeper=optuna", f"paths.root_dir={root}", f"paths.cache_dir={cache}", *TINY, *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def runs(root: Path):
    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
    return mlflow.search_runs(search_all_experiments=True)


TRADEOFF = ["+sweep=kd_tradeoff", "hydra.sweeper.sampler.seed=0", "student.num_layers=int(interval(1,2))", "hydra.sweeper.objectives=[deploy/onnx_dev_acc,deploy/onnx_size_mb]",
            "+hydra.sweeper.constraints={deploy/onnx_size_mb:1000}"]  # a budget every trial meets: the budget page is drawn


def test_sweep_nested_runs_resume_teacher_once_pareto_and_compare(tmp_path, shared_cache_dir, capsys):
    first = sweep(tmp_path, shared_cache_dir, "hydra.sweeper.n_trials=1", *TRADEOFF)
    assert first.returncode == 0, first.stderr[-3000:]
    again = sweep(tmp_path, shared_cache_dir, "hydra.sweeper.n_trials=2", *TRADEOFF)  # resumes: one trial more
    assert again.returncode == 0, again.stderr[-3000:]
    study = optuna.load_study(study_name="kd_tradeoff", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    found = runs(tmp_path)
    parent = found[found["tags.sweep"] == "parent"]
    children = found[found["tags.sweep"] != "parent"].sort_values("tags.optuna.trial")
    assert len(parent) == 1 and parent["status"].iloc[0] == "FINISHED"  # one parent for the study, resumed
    assert list(children["tags.optuna.trial"]) == ["0", "1"] and set(children["tags.optuna.state"]) == {"COMPLETE"}
    assert set(children["tags.mlflow.parentRunId"]) == {parent["run_id"].iloc[0]}
    for trial, (_, row) in zip(study.trials, children.iterrows()):  # the study's values are the runs' metrics
        assert trial.values == [row["metrics.deploy/onnx_dev_acc"], row["metrics.deploy/onnx_size_mb"]]
        assert row["params.student.num_layers"] == str(trial.params["student.num_layers"])
    child = mlflow.get_run(children["run_id"].iloc[0])  # the data set as the run's input; the ONNX as an MLflow model
    assert [d.dataset.name for d in child.inputs.dataset_inputs] == ["synthetic"]
    assert mlflow.search_logged_models(experiment_ids=[child.info.experiment_id], filter_string=f"source_run_id = '{child.info.run_id}'", output_format="list")
    names = {a.path for a in mlflow.artifacts.list_artifacts(run_id=parent["run_id"].iloc[0], artifact_path="sweep")}
    assert {"sweep/trials.csv", "sweep/trials.md", "sweep/best_params.json", "sweep/pareto_front.png", "sweep/budget_frontier.png"} <= names
    assert set(children["tags.feasible"]) == {"true"}
    # the teacher's logits were stored by trial 0 and only read by trial 1
    stored = list((shared_cache_dir / "teacher_logits").rglob("*.pt"))
    second_start = children["start_time"].iloc[1].timestamp()
    assert stored and all(p.stat().st_mtime < second_start for p in stored)
    # python -m compare: both trials, Pareto-optimal ones marked
    from compare import main as compare_main

    assert compare_main(["--root", str(tmp_path), "--sweep", "kd_tradeoff", "--format", "csv", "--plot", str(tmp_path / "c.png")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("pareto,run,dev acc") and len(lines) == 3 and any(l.startswith("*,") for l in lines[1:])
    assert (tmp_path / "c.png").stat().st_size > 0


def test_bad_search_key_is_one_line_and_leaves_nothing(tmp_path, shared_cache_dir):
    proc = sweep(tmp_path, shared_cache_dir, "hydra.sweeper.n_trials=2", "loss.temperature=interval(1,2)")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: loss.temperature: is not a key of the config (search space)")
    assert not (tmp_path / "optuna.db").exists() or not optuna.get_all_study_summaries(f"sqlite:///{tmp_path}/optuna.db")
    assert not (tmp_path / "mlflow.db").exists() or runs(tmp_path).empty


@pytest.mark.slow
def test_pruned_trial_is_pruned_in_optuna_and_mlflow(tmp_path, shared_cache_dir):
    proc = sweep(tmp_path, shared_cache_dir, "hydra.sweeper.n_trials=1", "loss.T=interval(1,4)",
                 "hydra.sweeper.pruner._target_=optuna.pruners.ThresholdPruner", "+hydra.sweeper.pruner.lower=2.0")  # val/acc < 2: pruned
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(study_name="distilkit", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert [t.state.name for t in study.trials] == ["PRUNED"]
    child = runs(tmp_path).query("`tags.sweep` != 'parent'")
    assert list(child["status"]) == ["KILLED"] and list(child["tags.optuna.state"]) == ["PRUNED"]


@pytest.mark.slow
def test_two_workers_share_one_study_and_a_killed_trial_is_retried(tmp_path, shared_cache_dir):
    args = ["hydra.sweeper.n_trials=4", "loss.T=interval(1,4)", "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=3"]
    cmd = [sys.executable, "-m", "train", "-m", "hydra/sweeper=optuna", f"paths.root_dir={tmp_path}", f"paths.cache_dir={shared_cache_dir}", *TINY, *args]
    # one worker killed (SIGKILL) while its first trial runs, then two workers finish the study together
    victim = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = tmp_path / "optuna.db"
    deadline = time.time() + 300
    while time.time() < deadline:
        time.sleep(1)
        if db.exists() and any(t.state.name == "RUNNING" for s in optuna.get_all_study_summaries(f"sqlite:///{db}")
                               for t in optuna.load_study(study_name=s.study_name, storage=f"sqlite:///{db}").trials):
            break
    victim.kill()
    victim.wait()
    time.sleep(4)  # past the grace period: the trial's heartbeat is stale
    workers = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for w in workers:
        assert w.wait(timeout=900) == 0, w.stderr.read()[-3000:]
    study = optuna.load_study(study_name="distilkit", storage=f"sqlite:///{db}")
    states = [t.state.name for t in study.trials]
    assert states.count("FAIL") == 1 and states.count("COMPLETE") == 4  # the killed trial failed, retried: 4 in total
    done = runs(tmp_path).query("status == 'FINISHED' and `tags.sweep` != 'parent'")
    assert sorted(done["tags.optuna.trial"].astype(int)) == [t.number for t in study.trials if t.state.name == "COMPLETE"]  # none twice


def test_objective_naming_no_logged_metric_lists_near_matches():
    with pytest.raises(ConfigError) as err:
        sweeper(objectives=["student/dev_ac"]).check_metric_names({"student/dev_acc": 0.9, "deploy/onnx_size_mb": 1.0})
    assert err.value.key == "hydra.sweeper.objectives" and "names no logged metric; did you mean student/dev_acc" in str(err.value)


def test_compare_never_marks_an_infeasible_run_pareto_optimal():
    from distilkit.tracking.compare import ACC, LATENCY, SIZE, Row, mark_pareto, table

    fast = Row("a", "over budget", {ACC: 0.9, LATENCY: 1.0, SIZE: 1.0}, feasible=False)  # dominates the others
    ok = Row("b", "within budget", {ACC: 0.8, LATENCY: 2.0, SIZE: 2.0})
    worse = Row("c", "dominated", {ACC: 0.7, LATENCY: 3.0, SIZE: 3.0})
    mark_pareto([fast, ok, worse])
    assert (fast.pareto, ok.pareto, worse.pareto) == (False, True, False)
    assert "| infeasible | over budget |" in table([fast, ok, worse])


def test_a_seeded_sampler_resuming_a_study_does_not_repeat_its_first_parameters():
    """Each resume is a new process: seed + trials done, so trial n of a resumed study is not trial 0 again."""
    space = {"loss.T": FloatDistribution(1, 20, log=True)}
    s = sweeper()
    study = optuna.create_study(sampler=s.sampler(space), direction="maximize")
    first = study.ask(space).params
    again = optuna.create_study(sampler=s.sampler(space), direction="maximize").ask(space).params
    resumed = optuna.create_study(sampler=s.sampler(space, done=1), direction="maximize").ask(space).params
    assert again == first and resumed != first  # same seed: same draw (reproducible); resumed: a new one


def test_budget_page_draws_each_frontier_the_budget_lines_and_the_chosen_model():
    import matplotlib.pyplot as plt

    from distilkit.tracking.compare import ACC, LATENCY, SIZE, Row, draw, frontier, mark_pareto

    assert frontier([(3, 0.8), (1, 0.7), (2, 0.6), (4, 0.8), (5, 0.9)]) == [(1, 0.7), (3, 0.8), (5, 0.9)]
    rows = mark_pareto([Row("a", "fast", {ACC: 0.70, LATENCY: 1.0, SIZE: 4.0}), Row("b", "chosen", {ACC: 0.80, LATENCY: 2.0, SIZE: 3.0}),
                        Row("c", "over", {ACC: 0.90, LATENCY: 5.0, SIZE: 9.0}, feasible=False)])
    fig = draw(rows, bounds={LATENCY: 4.0, SIZE: None}, chosen="b")
    latency, size = fig.axes
    assert [list(line.get_xdata()) for line in latency.lines if line.get_linestyle() == "--"] == [[4.0, 4.0]]  # the budget line
    assert not [line for line in size.lines if line.get_linestyle() == "--"]  # no size budget: no line
    for ax, cost in ((latency, {"a": 1.0, "b": 2.0, "c": 5.0}), (size, {"a": 4.0, "b": 3.0, "c": 9.0})):
        marks = {c.get_label(): c.get_offsets().tolist() for c in ax.collections}
        assert marks["chosen: 0.8000"] == [[cost["b"], 0.8]] and marks["over budget"] == [[cost["c"], 0.9]]
    step = [line for line in latency.lines if line.get_label() == "frontier"][0]
    assert list(step.get_xdata()) == [1.0, 2.0, 5.0]  # every run is on the latency frontier here
    plt.close(fig)


@pytest.mark.parametrize("sweep", sorted(p.stem for p in (ROOT / "sweeps" / "sweep").glob("*.yaml")))
def test_every_sweep_config_composes_with_each_of_its_group_choices(sweep, compose_cfg):
    """Each ``+sweep=NAME`` composes, and every option its space chooses for a whole group (``quantizer: choice(...)``)
    is an option that composes and builds with it: a trial can't fail on a name the space offers."""
    from hydra import compose
    from hydra.utils import instantiate

    hydra_cfg = compose(config_name="config", overrides=["hydra/sweeper=optuna", f"+sweep={sweep}"], return_hydra_config=True)
    assert hydra_cfg.hydra.sweeper.study_name == sweep
    space, _ = parse(OmegaConf.to_container(hydra_cfg.hydra.sweeper.params, resolve=True), [], hydra_cfg)
    groups = {key: dist.choices for key, dist in space.items() if "." not in key and isinstance(dist, CategoricalDistribution)}
    for group, options in groups.items():
        for option in options:
            cfg = compose_cfg("hydra/sweeper=optuna", f"+sweep={sweep}", f"{group}={option}")
            assert instantiate(cfg[group]) is not None, (group, option)
    if sweep == "budget_frontier":
        assert groups == {"vocab": ("full", "train"), "quantizer": ("none", "qat_int8", "qat_int8_rr"), "loss": ("kd", "intermediate")}
        rr = instantiate(compose_cfg("hydra/sweeper=optuna", f"+sweep={sweep}", "quantizer=qat_int8_rr").quantizer)
        assert rr.reduce_range is True and type(rr).__name__ == "QATInt8Quantizer"
