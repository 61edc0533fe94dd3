"""What the seeds claim, measured: the KD table, the temperature curve and the student-size curve on SST-2.

    python bench/kd_sst2.py                       # SST-2, MiniLM teacher from ../shared (hours on 2 CPU cores)
    python bench/kd_sst2.py --only table          # one part: table, T, size (repeatable)
    python bench/kd_sst2.py --render              # markdown + PNG from the json, no training
    python bench/kd_sst2.py --smoke               # tiny synthetic default, 1-2 runs per part: the wiring only

(1) KD table: 3-layer distil student with ce, kd, distilbert, intermediate, and a scratch-initialized
    student of the same shape (3 layers, h384, 12 heads, FFN 1536) with kd; seeds 0, 1, 2; mean ± std.
    One teacher and one data split for all: seeds 1 and 2 run with teacher_seed=0 data.seed=0, so the spread
    is the student's (its init, dropout and data order), and no seed fine-tunes a teacher of its own.
(2) T curve: the Optuna sweeper, grid over loss.T in {1, 2, 3, 4, 6, 8, 12, 20} (study kd_sst2_T), 3-layer distil, kd.
(3) Size curve: the sweeper, grid over scratch students of hidden 32/64/128/256/384 (2 layers, 4 heads,
    FFN 512: about 5/10/20/40/60 % of the teacher's parameters; the word embeddings dominate) x loss kd/ce
    (study kd_sst2_size); the x axis is the measured parameter fraction.
Every run is a plain `python -m train` (each trial of a sweep too) with `+trial=light` (latency measured
coarsely: accuracy is what is compared); the student trains 3 epochs (trainer.max_epochs, the default).

Results go to bench/results/kd_sst2{,_smoke}.json after EVERY run (metrics read back from the run's MLflow
record, with the command); a rerun skips what the json already has (a sweep is resumed one trial at a
time: `hydra.sweeper.n_trials` is the study's total), so a killed bench continues where it stopped.
The teacher comes from --cache-dir (default: this checkout's .cache/distilkit, where the fine-tuned
MiniLM teacher is cached); a miss there fine-tunes it (about 20 min on 2 cores) before the first run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
SST2 = ["data=sst2", f"data.path={SHARED / 'data/sst2'}", "teacher=minilm", f"teacher.name_or_path={SHARED / 'models/all-MiniLM-L6-v2'}"]
SMOKE = ["data.num_train=64", "data.num_dev=32", "data.num_test=32", "data.max_length=16", "data.batch_size=16", "teacher.num_layers=2",
         "teacher.hidden_size=32", "teacher.num_attention_heads=2", "teacher.intermediate_size=64", "teacher.vocab_size=200",
         "teacher.finetune.max_epochs=1", "trainer.max_epochs=1"]
LIGHT = ["+trial=light"]  # sweeps/trial/light.yaml: same student and accuracy, coarse latency
TEMPERATURES = [1, 2, 3, 4, 6, 8, 12, 20]
HIDDEN = [32, 64, 128, 256, 384]
KEPT = ("student/dev_acc", "student/test_acc", "student/retention_dev", "student/dev_nll", "student/agreement_dev", "teacher/dev_acc",
        "teacher/test_acc", "student/params", "teacher/params", "deploy/onnx_dev_acc")


def student_seed(seed: int) -> list[str]:
    """The overrides of the table's seed ``seed``: the student's seed, on seed 0's teacher and data split."""
    return [f"seed={seed}"] if seed == 0 else [f"seed={seed}", "teacher_seed=0", "data.seed=0"]


class Bench:
    def __init__(self, smoke: bool, root: Path, cache_dir: Path, results: Path):
        self.smoke, self.root, self.cache_dir, self.results = smoke, root, cache_dir, results
        self.base = [f"paths.root_dir={root}", f"paths.cache_dir={cache_dir}", *(SMOKE if smoke else SST2), *LIGHT]
        self.data = json.loads(results.read_text()) if results.is_file() else {"rows": {}}
        self.layers = 1 if smoke else 3
        scratch_shape = ["student.hidden_size=32", "student.num_attention_heads=2", "student.intermediate_size=64"] if smoke else \
            ["student.hidden_size=384", "student.num_attention_heads=12", "student.intermediate_size=1536"]
        # (key, overrides) of the KD table: one plain run each
        seeds = [0] if smoke else [0, 1, 2]
        losses = ["kd"] if smoke else ["ce", "kd", "distilbert", "intermediate"]
        # seed by seed (every row's seed 0 first): a bench stopped part-way has every row, with fewer seeds
        self.table = [row for s in seeds for row in (
            *((f"table/distil/{loss}/seed{s}", ["student=distil", f"student.num_layers={self.layers}", f"loss={loss}", *student_seed(s)]) for loss in losses),
            (f"table/scratch/kd/seed{s}", ["student=scratch", f"student.num_layers={self.layers}", *scratch_shape, "loss=kd", *student_seed(s)]))]
        self.temps = TEMPERATURES[:2] if smoke else TEMPERATURES
        self.hidden = [16] if smoke else HIDDEN

    # --- running ----------------------------------------------------------------------------------
    def save(self) -> None:
        self.results.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.results.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, self.results)  # never half-written

    def train(self, *args: str) -> tuple[list[str], float]:
        cmd = [sys.executable, "-m", "train", *args]
        print("$", " ".join(cmd), flush=True)
        start = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        return cmd, time.perf_counter() - start

    def runs(self, query: str):
        import mlflow

        mlflow.set_tracking_uri(f"sqlite:///{self.root}/mlflow.db")
        found = mlflow.search_runs(search_all_experiments=True, filter_string=f"attributes.status = 'FINISHED' and {query}")
        return found.dropna(subset=["metrics.student/dev_acc"]) if len(found) else found  # a sweep's parent run has no metrics

    def record(self, key: str, run, command: str, **extra) -> None:
        self.data["rows"][key] = {"run_id": run["run_id"], "command": command, **extra,
                                  **{name: float(run[f"metrics.{name}"]) for name in KEPT if f"metrics.{name}" in run and run[f"metrics.{name}"] == run[f"metrics.{name}"]}}
        self.save()
        print(f"  {key}: dev acc {self.data['rows'][key]['student/dev_acc']:.4f} -> {self.results}", flush=True)

    def run_table(self) -> None:
        for key, overrides in self.table:
            if key in self.data["rows"]:
                continue
            cmd, wall = self.train(*self.base, *overrides, f"tracking.tags={{bench_key:'{key}'}}")
            found = self.runs(f"tags.bench_key = '{key}'").sort_values("start_time")
            self.record(key, found.iloc[-1], " ".join(cmd[1:]), wall_s=wall)

    def run_sweep(self, study: str, keys: dict[tuple, str], space: list[str], fixed: list[str], key_of) -> None:
        """Grid study ``study`` one trial per call (n_trials = done + 1: the sweeper resumes it), json after each."""
        base = ["-m", *self.base, "hydra/sweeper=optuna", "hydra/sweeper/sampler=grid", f"hydra.sweeper.study_name={study}", *fixed, *space]
        for _ in range(len(keys) + 2):  # + a failed trial or two
            self.collect(study, key_of)
            missing = [k for k in keys.values() if k not in self.data["rows"]]
            if not missing:
                return
            self.train(*base, f"hydra.sweeper.n_trials={self.trials(study) + 1}")
        self.collect(study, key_of)

    def trials(self, study: str) -> int:
        """Trials the study has (any state): the sweeper's n_trials counts them all."""
        import optuna

        db = self.root / "optuna.db"
        names = {s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{db}")} if db.is_file() else set()
        return len(optuna.load_study(study_name=study, storage=f"sqlite:///{db}").trials) if study in names else 0

    def collect(self, study: str, key_of) -> None:
        found = self.runs(f"tags.`optuna.study` = '{study}'")
        for _, run in found.sort_values("start_time").iterrows():
            key = key_of(run)
            if key not in self.data["rows"]:
                wall = (run["end_time"] - run["start_time"]).total_seconds()
                self.record(key, run, run.get("tags.mlflow.note.content", ""), wall_s=wall, **{p: run[f"params.{p}"] for p in ("loss.T", "student.hidden_size") if f"params.{p}" in run})

    def run_T(self) -> None:
        keys = {(t,): f"T/{float(t):g}" for t in self.temps}
        self.run_sweep("kd_sst2_T", keys, [f"loss.T=choice({','.join(map(str, self.temps))})"],
                       ["student=distil", f"student.num_layers={self.layers}", "loss=kd"], lambda r: f"T/{float(r['params.loss.T']):g}")

    def run_size(self) -> None:
        keys = {(h, loss): f"size/{loss}/h{h}" for h in self.hidden for loss in ("kd", "ce")}
        heads = 2 if self.smoke else 4
        self.run_sweep("kd_sst2_size", keys, [f"student.hidden_size=choice({','.join(map(str, self.hidden))})", "loss=choice(kd,ce)"],
                       ["student=scratch", "student.num_layers=2", f"student.num_attention_heads={heads}", "student.intermediate_size=512" if not self.smoke else "student.intermediate_size=64"],
                       lambda r: f"size/{r['tags.loss']}/h{r['params.student.hidden_size']}")

    # --- rendering --------------------------------------------------------------------------------
    def render(self) -> str:
        rows = self.data["rows"]
        md = [f"# KD on {'the synthetic task (smoke: tiny, numbers mean nothing)' if self.smoke else 'SST-2, MiniLM-L6 teacher'}", "",
              f"Written by `python bench/kd_sst2.py{' --smoke' if self.smoke else ''}` from `{self.results.name}` ({len(rows)} runs; "
              "each row's command is in the json). Student: 3 epochs; `+trial=light` (coarse latency).", "",
              "## KD table (dev accuracy; retention = student / teacher dev accuracy)", "",
              "| student | loss | runs | dev acc | test acc | retention (dev) |", "|---|---|---|---|---|---|"]
        groups: dict[tuple[str, str], list[dict]] = {}
        for key, row in rows.items():
            if key.startswith("table/"):
                _, student, loss, _ = key.split("/")
                groups.setdefault((student, loss), []).append(row)
        for (student, loss), group in sorted(groups.items(), key=lambda kv: (kv[0][0] != "distil", kv[0][1])):
            cells = [mean_std([r[m] for r in group if m in r]) for m in ("student/dev_acc", "student/test_acc", "student/retention_dev")]
            md.append(f"| {student}[{self.layers}] | {loss} | {len(group)} | " + " | ".join(cells) + " |")
        teacher = [r["teacher/dev_acc"] for r in rows.values() if "teacher/dev_acc" in r]
        if teacher:
            md += ["", f"Teacher dev accuracy {teacher[0]:.4f}: one teacher for every run (seeds 1 and 2 with teacher_seed=0 data.seed=0). Published: DistilBERT 97 % retention (SST-2 91.3 vs BERT-base 92.7), TinyBERT-4 96.8 %."]
        curve = sorted(((float(k.split("/")[1]), r) for k, r in rows.items() if k.startswith("T/")), key=lambda kv: kv[0])
        md += ["", "## Temperature curve (study kd_sst2_T; 3-layer distil, kd)", "", "| T | dev acc | retention (dev) |", "|---|---|---|"]
        md += [f"| {t:g} | {r['student/dev_acc']:.4f} | {r.get('student/retention_dev', float('nan')):.4f} |" for t, r in curve]
        size = sorted(((k.split("/")[1], r["student/params"] / r["teacher/params"], r) for k, r in rows.items() if k.startswith("size/")),
                      key=lambda kv: (kv[0], kv[1]))
        md += ["", "## Size curve (study kd_sst2_size; scratch students, 2 layers)", "", "| loss | hidden | params / teacher | dev acc |", "|---|---|---|---|"]
        md += [f"| {loss} | {r.get('student.hidden_size', '?')} | {frac:.3f} | {r['student/dev_acc']:.4f} |" for loss, frac, r in size]
        text = "\n".join(md) + "\n"
        self.results.with_suffix(".md").write_text(text)
        self.plot(curve, size)
        return text

    def plot(self, curve, size) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
        if curve:
            a.plot([t for t, _ in curve], [r["student/dev_acc"] for _, r in curve], "o-")
        a.set_xscale("log"), a.set_xlabel("T"), a.set_ylabel("student dev acc"), a.set_title("temperature (kd)")
        for loss in sorted({loss for loss, _, _ in size}):
            points = [(frac, r["student/dev_acc"]) for l, frac, r in size if l == loss]
            b.plot(*zip(*points), "o-", label=loss)
        b.set_xscale("log"), b.set_xlabel("student params / teacher params"), b.set_title("student size")
        if size:
            b.legend()
        fig.tight_layout()
        fig.savefig(self.results.with_suffix(".png"), dpi=100)
        plt.close(fig)


def mean_std(values) -> str:
    values = list(values)
    if not values:
        return "–"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values) if len(values) > 1 else 0:.4f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny synthetic default, 1-2 runs per part: the wiring only")
    parser.add_argument("--render", action="store_true", help="only write the markdown and PNG from the json")
    parser.add_argument("--only", choices=("table", "T", "size"), action="append", help="run only these parts (repeatable)")
    parser.add_argument("--root", type=Path, default=None, help="paths.root_dir of the runs (default /tmp/distilkit-bench/kd_sst2[_smoke])")
    parser.add_argument("--cache-dir", type=Path, default=None, help="paths.cache_dir (default: this checkout's .cache/distilkit; smoke: under --root)")
    parser.add_argument("--results", type=Path, default=None, help="json file (default bench/results/kd_sst2[_smoke].json)")
    args = parser.parse_args(argv)
    tag = "_smoke" if args.smoke else ""
    root = (args.root or Path(f"/tmp/distilkit-bench/kd_sst2{tag}")).resolve()
    cache = (args.cache_dir or (root / ".cache/distilkit" if args.smoke else ROOT / ".cache/distilkit")).resolve()
    bench = Bench(args.smoke, root, cache, (args.results or ROOT / "bench" / "results" / f"kd_sst2{tag}.json").resolve())
    if not args.render:
        parts = args.only or ["table", "T", "size"]
        for part in parts:
            {"table": bench.run_table, "T": bench.run_T, "size": bench.run_size}[part]()
    print(bench.render())


if __name__ == "__main__":
    main()
