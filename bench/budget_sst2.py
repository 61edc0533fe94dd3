"""The budget search on SST-2: the most accurate deployable model within a latency and size budget, on this machine.

    python bench/budget_sst2.py                    # run the study (resumable: the same command goes on), then render
    python bench/budget_sst2.py --render           # markdown + PNG from the study and its MLflow runs, no training
    python bench/budget_sst2.py --sweep budget_frontier --results bench/results/vnni --latency-ms 0.735 --size-mb 8.7 --root DIR
    python bench/budget_sst2.py --sweep budget_frontier --holdout 692 --name budget_frontier_holdout ...   # select on held-out training rows

The study is one plain `python -m train -m hydra/sweeper=optuna +sweep=budget ...` (the command is printed and
written into the results): MiniLM-L6 teacher from ../shared, student epochs = trainer.max_epochs (3), fused
ONNX (export.fuse=true, as the frontier rows), latency = onnxruntime batch 1 at full length (the budget's
metric; the other timings are left out of each trial). Trials whose untrained copy is already over the budget
are PRUNED before training (budget.precheck). The result is compared with the best row of
RESULTS/compress_sst2.json that meets the same budget (its in-session latency and its ONNX size).
``--sweep``: the sweep config (``budget``, or ``budget_frontier``, which also searches the loss and 7-bit int8);
its study is named after it. Results: RESULTS/SWEEP_sst2.{md,png} (``--results``, default bench/results).
``--holdout N``: N training rows become split ``holdout`` (``data.holdout``), and the trials are ranked by the deployed
model's accuracy there (``deploy/onnx_holdout_acc``) instead of on dev: the chosen model's dev and test accuracy are then
not raised by the choice. ``--name``: the study's name and results' stem (default: the sweep's).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
SHARED = ROOT.parent / "shared"
RESULTS = ROOT / "bench" / "results"


HOLDOUT_ACC = "deploy/onnx_holdout_acc"


def command(sweep: str, latency_ms: float, size_mb: float, trials: int, root: Path, holdout: int = 0, name: str | None = None) -> list[str]:
    selection = [f"data.holdout={holdout}", f"hydra.sweeper.objectives=[{HOLDOUT_ACC}]"] if holdout else []
    return ["-m", "hydra/sweeper=optuna", f"+sweep={sweep}", *([f"hydra.sweeper.study_name={name}"] if name and name != sweep else []),
            f"budget.latency_ms={latency_ms:g}", f"budget.size_mb={size_mb:g}", *selection,
            f"hydra.sweeper.n_trials={trials}", "hydra.sweeper.sampler.seed=0", *([] if root == ROOT else [f"paths.root_dir={root}"]),
            "data=sst2", f"data.path={SHARED / 'data/sst2'}", "teacher=minilm", f"teacher.name_or_path={SHARED / 'models/all-MiniLM-L6-v2'}",
            "export.fuse=true", "hardware.measure.runtimes=[onnxruntime]", "hardware.measure.batch_sizes=[1]", "hardware.measure.lengths=[full]"]


def frontier_rows(results: Path, latency_ms: float, size_mb: float, own: str | None = "budget_") -> list[tuple[str, dict]]:
    """Rows of the compression bench within the budget, most accurate first (its session's b1 latency, ONNX MB); rows named
    ``own``* are left out (the ``budget`` study's own choice, retrained there: not a rival to that study)."""
    path = results / "compress_sst2.json"
    if not path.is_file():
        return []
    rows = json.loads(path.read_text())["rows"]
    ok = [(k, r) for k, r in rows.items() if not (own and k.startswith(own))
          and r.get("session/ort_latency_b1_p50_ms", 1e9) <= latency_ms
          and r.get("deploy/onnx_size_mb", 1e9) <= size_mb and "deploy/onnx_dev_acc" in r]
    return sorted(ok, key=lambda kv: -kv[1]["deploy/onnx_dev_acc"])


def render(sweep: str, results: Path, root: Path, latency_ms: float, size_mb: float, cmd: str, holdout: int, flags: str) -> str:
    """The page of study ``sweep`` (its name); ``flags``: this script's arguments that ran it."""
    import optuna
    from mlflow.tracking import MlflowClient

    from distilkit.measure.budget import LATENCY, PRECHECK, SIZE
    from distilkit.measure.session import cpu_description
    from distilkit.tracking.compare import ACC, plot, rows_of
    from distilkit.tracking.sweep import FEASIBLE_TAG, STUDY_TAG, TRIAL_TAG, best_trials

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    precheck_latency = PRECHECK + LATENCY.split("/", 1)[1]  # budget/precheck_ort_latency_b1_p50_ms
    study = optuna.load_study(study_name=sweep, storage=f"sqlite:///{root}/optuna.db")
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], filter_string=f"tags.`{STUDY_TAG}` = '{sweep}'", max_results=5000)
    by_trial = {int(r.data.tags[TRIAL_TAG]): r for r in runs if TRIAL_TAG in r.data.tags}
    best = best_trials(study)
    chosen = best[0] if best else None
    fmt = lambda v, f=".4f": "" if v is None else format(v, f)  # noqa: E731
    md = [f"# Budget search on SST-2: b1 latency ≤ {latency_ms:g} ms, ONNX ≤ {size_mb:g} MB", "",
          f"Written by `python bench/budget_sst2.py{flags}` from study `{sweep}` ({len(study.trials)} trials; `optuna.db`, `mlflow.db` in {'the checkout' if root == ROOT else f'`{root}`'}). The study, from the checkout:", "",
          f"    python -m train {cmd}", "",
          f"Latency: deployed ONNX, onnxruntime, batch 1, 64 tokens, measured in each trial on this machine (2 threads; CPU: {cpu_description()}).",
          "PRUNED: the untrained copy was already over the budget (`budget.precheck`), so the trial did not train.",
          *([f"Trials ranked by the deployed model's accuracy on {holdout} held-out training rows (`data.holdout={holdout}`, `{HOLDOUT_ACC}`); "
             "nothing trained on them, and dev and test played no part in the choice."] if holdout else []), "",
          f"| trial | state | feasible | layers | hidden cut | heads cut | FFN cut | vocab | quantizer | loss | T | alpha |{' holdout acc |' if holdout else ''} dev acc | test acc | b1 ms | MB | precheck b1 ms | wall s |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if holdout else "") + "---|---|---|---|---|---|"]
    walls = {"PRUNED": [], "COMPLETE": []}
    for t in study.trials:
        run = by_trial.get(t.number)
        m = run.data.metrics if run else {}
        wall = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else None
        if wall is not None and t.state.name in walls:
            walls[t.state.name].append(wall)
        p = t.params
        feasible = run.data.tags.get(FEASIBLE_TAG, "") if run else ""
        md.append(f"| {t.number}{' ★' if chosen and t.number == chosen.number else ''} | {t.state.name} | {feasible} | {p.get('student.num_layers', '')} | "
                  f"{fmt(p.get('pruner.hidden'), '.2f')} | {fmt(p.get('pruner.heads'), '.2f')} | {fmt(p.get('pruner.ffn'), '.2f')} | {p.get('vocab', '')} | "
                  f"{p.get('quantizer', '')} | {p.get('loss', 'kd')} | {fmt(p.get('loss.T'), '.2f')} | {fmt(p.get('loss.alpha'), '.2f')} |"
                  f"{f' {fmt(m.get(HOLDOUT_ACC))} |' if holdout else ''} {fmt(m.get(ACC))} | {fmt(m.get('deploy/onnx_test_acc'))} | "
                  f"{fmt(m.get(LATENCY), '.2f')} | {fmt(m.get(SIZE), '.2f')} | {fmt(m.get(precheck_latency), '.2f')} | {fmt(wall, '.0f')} |")
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    md += ["", f"Trials: {sum(1 for t in study.trials if t.state.name == 'COMPLETE')} trained, {len(walls['PRUNED'])} pruned over budget before training "
               f"(mean wall {mean(walls['PRUNED']):.0f} s vs {mean(walls['COMPLETE']):.0f} s for a trained trial)."]
    ratios = sorted(by_trial[t.number].data.metrics[LATENCY] / by_trial[t.number].data.metrics[precheck_latency]
                    for t in study.trials if t.state.name == "COMPLETE" and t.number in by_trial
                    and precheck_latency in by_trial[t.number].data.metrics)
    if ratios:
        md += ["", f"Trained model's b1 latency / its untrained copy's (same architecture, timed minutes apart): median "
                   f"{ratios[len(ratios) // 2]:.2f}, range {ratios[0]:.2f}–{ratios[-1]:.2f} over {len(ratios)} trials: the noise of one timing session "
                   "on this shared machine. So the precheck (stop only when over by more than `budget.margin`) can let through a model that "
                   "the final measurement finds over (then recorded infeasible), or, near the bound, stop one that would have fit; the "
                   "trained model's measurement is always the constraint."]
    frontier = frontier_rows(results, latency_ms, size_mb, "budget_" if sweep == "budget" else None)
    if chosen is not None:
        run = by_trial[chosen.number]
        m = run.data.metrics
        selected = (f"deployed accuracy {chosen.value:.4f} on the held-out rows ({100 * chosen.value / m['teacher/holdout_acc']:.1f} % of the "
                    f"teacher's {m['teacher/holdout_acc']:.4f}), dev accuracy {m[ACC]:.4f} " if holdout else f"deployed dev accuracy {chosen.value:.4f} ")
        md += ["", f"**Chosen: trial {chosen.number}** — {selected}"
                   f"({100 * m[ACC] / m['teacher/dev_acc']:.1f} % of the teacher's {m['teacher/dev_acc']:.4f}), "
                   f"{m[LATENCY]:.2f} ms at batch 1, {m[SIZE]:.2f} MB; test accuracy {m.get('deploy/onnx_test_acc', float('nan')):.4f}. Parameters: "
                   + ", ".join(f"{k}={fmt(v, '.3g') if isinstance(v, float) else v}" for k, v in chosen.params.items()) + "."]
        if frontier:
            name, row = frontier[0]
            where = results.relative_to(ROOT) if results.is_relative_to(ROOT) else results
            head = f"Best row of `{where}/compress_sst2.md` within the same budget: `{name}` — dev {row['deploy/onnx_dev_acc']:.4f}, "
            cost = f"{row['session/ort_latency_b1_p50_ms']:.2f} ms, {row['deploy/onnx_size_mb']:.2f} MB."
            if holdout:  # the bench's rows distil the teacher fine-tuned on every training row; this study's teacher lacks the held-out ones
                theirs, ours = 100 * row["deploy/onnx_dev_acc"] / row["teacher/dev_acc"], 100 * m[ACC] / m["teacher/dev_acc"]
                md += ["", f"{head}{theirs:.1f} % of its teacher (fine-tuned on every training row, dev {row['teacher/dev_acc']:.4f}; chosen on dev), "
                           f"{cost} Its teacher is not this study's, so the comparison is in retention: the search's model keeps {ours:.1f} %, "
                           f"{abs(theirs - ours):.1f} pt {'below' if theirs > ours else 'above'} it."]
            else:
                gap = 100 * (row["deploy/onnx_dev_acc"] - m[ACC])
                md += ["", f"{head}{cost} The search's model is {abs(gap):.2f} pt {'below' if gap > 0 else 'above'} it (target: within 1 pt)."]
    rows = rows_of(runs)
    name = f"{sweep}_sst2"  # the study's name
    plot(rows, str(results / f"{name}.png"), bounds={LATENCY: latency_ms, SIZE: size_mb},
         chosen=by_trial[chosen.number].info.run_id if chosen else None)
    md += ["", f"![accuracy vs latency and size, budget lines, chosen model starred]({name}.png)"]
    text = "\n".join(md) + "\n"
    (results / f"{name}.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=2.5)
    parser.add_argument("--size-mb", type=float, default=5.0)
    parser.add_argument("--trials", type=int, default=24, help="the study's total (hydra.sweeper.n_trials)")
    parser.add_argument("--root", type=Path, default=ROOT, help="paths.root_dir: where optuna.db and mlflow.db are")
    parser.add_argument("--render", action="store_true", help="only write the markdown and PNG")
    parser.add_argument("--sweep", default="budget", help="the sweep config (sweeps/sweep/NAME.yaml) and its study's name")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where compress_sst2.json is read and SWEEP_sst2.{md,png} written")
    parser.add_argument("--holdout", type=int, default=0, help="data.holdout: rank trials on that many held-out training rows, not on dev")
    parser.add_argument("--name", help="the study's name and the results' stem (default: --sweep)")
    args = parser.parse_args(argv)
    cmd = command(args.sweep, args.latency_ms, args.size_mb, args.trials, args.root.resolve(), args.holdout, args.name)
    if not args.render:
        subprocess.run([sys.executable, "-m", "train", *cmd], cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    shown = " ".join(c.replace(str(SHARED), "../shared") for c in cmd)  # run from the checkout (cwd ROOT)
    flags = "".join([f" --sweep {args.sweep}" if args.sweep != "budget" else "", f" --holdout {args.holdout}" if args.holdout else "",
                     f" --name {args.name}" if args.name else ""])
    print(render(args.name or args.sweep, args.results.resolve(), args.root.resolve(), args.latency_ms, args.size_mb, shown, args.holdout, flags))


if __name__ == "__main__":
    main()
