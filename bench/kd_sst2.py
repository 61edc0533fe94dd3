"""What the seeds claim, measured through the sweeper: KD table, temperature curve, student-size curve.

    python bench/kd_sst2.py                       # SST-2, MiniLM teacher (hours on 2 CPU cores)
    python bench/kd_sst2.py --smoke               # synthetic default, tiny: checks the wiring only

(1) KD table: 3-layer distil student with ce, kd, distilbert, intermediate, and a scratch student with
kd; seeds 0-2; mean ± std of dev accuracy and retention (Hydra multirun, one MLflow run per job).
(2) T curve: the Optuna sweeper's grid over loss.T in {1,2,3,4,6,8,12,20} (study kd_sst2_T).
(3) Size curve: scratch students of growing width/depth, kd vs ce (grid study kd_sst2_size); the
x axis is the student's parameters as a fraction of the teacher's.
Writes bench/results/kd_sst2{,_smoke}.md and .png; every number comes from the MLflow store in --root.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SST2 = ["data=sst2", f"data.path={ROOT.parent / 'shared/data/sst2'}", "teacher=minilm",
        f"teacher.name_or_path={ROOT.parent / 'shared/models/all-MiniLM-L6-v2'}"]
SMOKE = ["data.num_train=64", "data.num_dev=32", "data.num_test=32", "data.max_length=16", "data.batch_size=16", "teacher.num_layers=2",
         "teacher.hidden_size=32", "teacher.num_attention_heads=2", "teacher.intermediate_size=64", "teacher.vocab_size=200",
         "teacher.finetune.max_epochs=1", "trainer.max_epochs=1", "hardware.measure.batch_sizes=[1]", "hardware.measure.threads=1",
         "hardware.measure.warmup=1", "hardware.measure.min_samples=3", "hardware.measure.min_time_s=0"]
TEMPERATURES = [1, 2, 3, 4, 6, 8, 12, 20]


def train(root: Path, base: list[str], *args: str) -> None:
    cmd = [sys.executable, "-m", "train", "-m", f"paths.root_dir={root}", *base, *args]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True, env={**__import__("os").environ, "PYTHONPATH": str(ROOT / "src")})


def runs(root: Path, query: str):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
    found = mlflow.search_runs(search_all_experiments=True, filter_string=f"attributes.status = 'FINISHED' and {query}")
    return found.dropna(subset=["metrics.student/dev_acc"])  # a sweep's parent run has no metrics of its own


def mean_std(values) -> str:
    values = list(values)
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values) if len(values) > 1 else 0:.4f} (n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="synthetic default, tiny, one seed: the wiring only")
    parser.add_argument("--root", type=Path, default=None, help="paths.root_dir of the runs (default /tmp/distilkit-bench/kd_sst2[_smoke])")
    args = parser.parse_args()
    tag = "_smoke" if args.smoke else ""
    root = (args.root or Path(f"/tmp/distilkit-bench/kd_sst2{tag}")).resolve()
    base = SMOKE if args.smoke else SST2
    seeds = "0" if args.smoke else "0,1,2"
    layers = 1 if args.smoke else 3
    temps = TEMPERATURES[:2] if args.smoke else TEMPERATURES
    widths = [16, 32] if args.smoke else [32, 64, 128, 192, 256]

    # (1) KD table: basic multirun, tagged by a run-name-free tracking tag
    train(root, base, f"student.num_layers={layers}", f"loss=ce,kd,distilbert,intermediate", f"seed={seeds}", "tracking.tags={bench:kd_table}")
    train(root, base, "student=scratch", f"student.num_layers={layers}", "loss=kd", f"seed={seeds}", "tracking.tags={bench:kd_table_scratch}")
    # (2) T curve, (3) size curve: the Optuna sweeper, grid sampler
    train(root, base, "hydra/sweeper=optuna", "hydra/sweeper/sampler=grid", "hydra.sweeper.study_name=kd_sst2_T",
          f"hydra.sweeper.n_trials={len(temps)}", f"student.num_layers={layers}", "loss=kd", f"loss.T=choice({','.join(map(str, temps))})")
    train(root, base, "hydra/sweeper=optuna", "hydra/sweeper/sampler=grid", "hydra.sweeper.study_name=kd_sst2_size",
          f"hydra.sweeper.n_trials={2 * len(widths)}", "student=scratch", f"student.num_layers={layers}",
          f"student.hidden_size=choice({','.join(map(str, widths))})", "student.num_attention_heads=2", "loss=choice(kd,ce)")

    md = [f"# KD on {'the synthetic task (smoke, tiny: numbers mean nothing)' if args.smoke else 'SST-2, MiniLM teacher'}", "",
          f"Command: `python bench/kd_sst2.py{' --smoke' if args.smoke else ''}`; runs in `{root}/mlflow.db`.", "",
          "## KD table (dev accuracy, retention = student / teacher dev accuracy)", "", "| student | loss | dev acc | retention |", "|---|---|---|---|"]
    table = runs(root, "tags.bench LIKE 'kd_table%'")
    for (bench, loss), group in table.groupby(["tags.bench", "tags.loss"]):
        md.append(f"| {'scratch' if bench.endswith('scratch') else 'distil'}[{layers}] | {loss} | {mean_std(group['metrics.student/dev_acc'])} | {mean_std(group['metrics.student/retention_dev'])} |")
    md += ["", "Published: DistilBERT 97 % retention (SST-2 91.3 vs BERT-base 92.7), TinyBERT-4 96.8 %.", "",
           "## Temperature curve (study kd_sst2_T)", "", "| T | dev acc |", "|---|---|"]
    curve = runs(root, "tags.`optuna.study` = 'kd_sst2_T'").sort_values("params.loss.T", key=lambda s: s.astype(float))
    md += [f"| {r['params.loss.T']} | {r['metrics.student/dev_acc']:.4f} |" for _, r in curve.iterrows()]
    md += ["", "## Size curve (study kd_sst2_size)", "", "| loss | hidden | params / teacher | dev acc |", "|---|---|---|---|"]
    size = runs(root, "tags.`optuna.study` = 'kd_sst2_size'")
    size = size.assign(frac=size["metrics.student/params"] / size["metrics.teacher/params"]).sort_values(["tags.loss", "frac"])
    md += [f"| {r['tags.loss']} | {r['params.student.hidden_size']} | {r['frac']:.3f} | {r['metrics.student/dev_acc']:.4f} |" for _, r in size.iterrows()]
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"kd_sst2{tag}.md").write_text("\n".join(md) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(curve["params.loss.T"].astype(float), curve["metrics.student/dev_acc"], "o-")
    a.set_xscale("log"), a.set_xlabel("T"), a.set_ylabel("student dev acc")
    for loss, group in size.groupby("tags.loss"):
        b.plot(group["frac"], group["metrics.student/dev_acc"], "o-", label=loss)
    b.set_xscale("log"), b.set_xlabel("student params / teacher params"), b.legend()
    fig.tight_layout()
    fig.savefig(out / f"kd_sst2{tag}.png", dpi=100)
    print("\n".join(md))


if __name__ == "__main__":
    main()
