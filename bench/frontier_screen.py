"""Screen overrides of the frontier command over several seeds: mean ± std of dev/test accuracy per variant.

Each run is the README's frontier command (``python -m train``: 1 layer + vocab=train + width pruning +
qat_int8 with reduce_range + loss=intermediate + export.fuse, 3 epochs, ``+trial=light``, one teacher:
``teacher_seed=0 data.seed=0``) with a variant's overrides on top (an override replaces the base's
value of the same key, ``quantizer=none`` drops the base's ``quantizer.*`` keys) and ``seed=S``. Runs go
``--workers`` at a time, each in its own ``paths.root_dir`` (its own MLflow store) under ``--root``, all
sharing one teacher cache, so the teacher is fine-tuned once.

    python bench/frontier_screen.py --variants base= drop0=student.dropout=0.0 --seeds 0,1,2,3,4
    python bench/frontier_screen.py --set decomposition --hardware "hardware=gpu hardware.precision=32-true hardware.matmul_precision=highest" --workers 7
    python bench/frontier_screen.py --report bench/results/frontier_screen_gpu.tsv   # the table of a results file, nothing run

With a ``base`` variant, the table is followed by every other variant's paired difference from it (same seeds).

Each finished run appends a line to ``--out`` (TSV); the markdown table beside it (``.md``) is rewritten
from every line in it at the end. ``--teacher DIR`` uses an already fine-tuned teacher directory
(``teacher.finetuned=true``) instead of fine-tuning the MiniLM checkpoint; ``--cache .cache/distilkit`` shares the
checkout's own teacher and logit cache (the ``python -m train`` runs' default) instead of one under ``--root``.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
RESULTS = ROOT / "bench" / "results"

FRONTIER = [  # the README's frontier command (bench/compress_sst2.py: budget_best_rr_intermediate), one teacher
    "data=sst2", f"data.path={SHARED / 'data' / 'sst2'}", "teacher=minilm", f"teacher.name_or_path={SHARED / 'models' / 'all-MiniLM-L6-v2'}",
    "loss=intermediate", "student.num_layers=1", "vocab=train", "pruner=width", "pruner.hidden=0.26051359427636284",
    "pruner.heads=0.3818825817540105", "pruner.ffn=0.3745650354733561", "quantizer=qat_int8", "quantizer.reduce_range=true",
    "loss.T=3.28040893912528", "loss.alpha=0.5466725716579401", "export.fuse=true", "trainer.max_epochs=3", "+trial=light",
    "teacher_seed=0", "data.seed=0", "tracking.log_torch_model=false",
]
SETS = {  # named variant sets: name -> overrides
    "recipe": {
        "base": "", "drop0": "student.dropout=0.0", "hw3": "loss.hidden_weight=3.0 loss.attn_weight=3.0",
        "wd01": "optimizer.weight_decay=0.1", "bs16": "data.batch_size=16", "alpha09": "loss.alpha=0.9", "T1": "loss.T=1.0",
        "ep6_drop0": "trainer.max_epochs=6 student.dropout=0.0",
    },
    "decomposition": {
        "base": "", "fp32": "quantizer=none", "int8_8bit": "quantizer.reduce_range=false",
        "unpruned_int8": "pruner.hidden=0.0 pruner.heads=0.0 pruner.ffn=0.0", "vocab_full": "vocab=full",
        "unpruned_fp32": "quantizer=none pruner.hidden=0.0 pruner.heads=0.0 pruner.ffn=0.0",
    },
    "vocab": {"x5k": "vocab.extra_tokens=5000", "x10k": "vocab.extra_tokens=10000", "x13k": "vocab.extra_tokens=13000"},
}
COLUMNS = ["variant", "seed", "rc", "wall_s", "teacher/dev_acc", "teacher/test_acc", "student/dev_acc", "deploy/onnx_dev_acc",
           "deploy/onnx_test_acc", "status", "overrides", "deploy/onnx_holdout_acc"]  # held-out rows last: older lines have none


HELD = "deploy/onnx_holdout_acc"  # with data.holdout=N: the split a study selects on (dev and test only measured)


def key_of(token: str) -> str:
    return token.lstrip("+~").split("=", 1)[0]


def merge(base: list[str], extra: list[str]) -> list[str]:
    """``base`` with ``extra`` on top: an extra key replaces the base's; a group choice (``quantizer=none``)
    also drops the base's keys under that group (``quantizer.reduce_range``), which the new option may lack."""
    keys = {key_of(t) for t in extra}
    groups = {key_of(t) for t in extra if "." not in key_of(t)}
    kept = [t for t in base if key_of(t) not in keys and key_of(t).split(".", 1)[0] not in groups]
    return [*kept, *extra]


def metrics(db: Path) -> tuple[dict[str, float], str]:
    """The run's last value of every metric and its status, read from its own MLflow sqlite store."""
    if not db.is_file():
        return {}, ""
    con = sqlite3.connect(db)
    try:
        rows = con.execute("select key, value from metrics order by timestamp, step").fetchall()
        status = ",".join(s for (s,) in con.execute("select status from runs"))
    finally:
        con.close()
    return dict(rows), status


def measured(row: dict[str, str], key: str) -> bool:
    """The row has a value for ``key`` (older lines lack the held-out column; a run without the split logs nan)."""
    return row.get(key, "nan") != "nan"


def held_cell(rows: list[dict[str, str]]) -> str:
    """Mean ± std of the held-out accuracy over the rows that have it (and how many, when not all)."""
    vals = [float(r[HELD]) for r in rows if measured(r, HELD)]
    if not vals:
        return ""
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.mean(vals):.4f} ± {sd:.4f}" + (f" ({len(vals)} seeds)" if len(vals) < len(rows) else "")


def report(tsv: Path) -> str:
    lines = [ln.split("\t") for ln in tsv.read_text().splitlines() if ln and not ln.startswith("variant\t")]
    by: dict[str, list[dict[str, str]]] = {}
    seen: dict[tuple[str, str], tuple[str, str]] = {}
    repeats = same = 0
    for cells in lines:
        row = dict(zip(COLUMNS, cells))
        if row["rc"] != "0" or "nan" in (row["deploy/onnx_dev_acc"], row["deploy/onnx_test_acc"]):  # failed, or cut off
            continue
        acc = (row["deploy/onnx_dev_acc"], row["deploy/onnx_test_acc"])
        if (row["variant"], row["seed"]) in seen:  # a run repeated: counted once, checked for agreement
            repeats, same = repeats + 1, same + (seen[row["variant"], row["seed"]] == acc)
            continue
        seen[row["variant"], row["seed"]] = acc
        by.setdefault(row["variant"], []).append(row)

    def stat(rows, key):
        vals = [float(r[key]) for r in rows]
        return statistics.mean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0), vals

    held = any(measured(r, HELD) for rows in by.values() for r in rows)  # a column only where runs held rows out
    out = [f"# Frontier screen: `{tsv.name}`", "", "Each run: the frontier command (`bench/frontier_screen.py`) + the variant's overrides, `seed=S`. "
           "Accuracy of the deployed ONNX model; % of the teacher's dev/test accuracy.", "",
           "| variant | overrides | seeds | dev per seed | dev mean ± std | % of teacher | test mean ± std | % of teacher |"
           + (" held-out mean ± std |" if held else ""), "|---|---|---|---|---|---|---|---|" + ("---|" if held else "")]
    for name, rows in by.items():
        rows.sort(key=lambda r: int(r["seed"]))
        dev, dev_sd, devs = stat(rows, "deploy/onnx_dev_acc")
        test, test_sd, _ = stat(rows, "deploy/onnx_test_acc")
        t_dev, t_test = float(rows[0]["teacher/dev_acc"]), float(rows[0]["teacher/test_acc"])
        overrides = f"`{rows[0]['overrides']}`" if rows[0]["overrides"] else "(none)"
        out.append(f"| {name} | {overrides} | {','.join(r['seed'] for r in rows)} | {' / '.join(f'{v:.4f}' for v in devs)} | "
                   f"{dev:.4f} ± {dev_sd:.4f} | {100 * dev / t_dev:.1f} % | {test:.4f} ± {test_sd:.4f} | {100 * test / t_test:.1f} % |"
                   + (f" {held_cell(rows)} |" if held else ""))
    base = {r["seed"]: r for r in by.get("base", [])}
    paired = [(name, [(r, base[r["seed"]]) for r in rows if r["seed"] in base]) for name, rows in by.items() if name != "base"]
    paired = [(name, pairs) for name, pairs in paired if len(pairs) > 1]
    if paired:
        out += ["", "Paired by seed with `base` (the variant's run minus base's run of the same seed; mean ± standard error, in points):", "",
                "| variant | seeds | dev Δ pt | test Δ pt |" + (" held-out Δ pt |" if held else ""), "|---|---|---|---|" + ("---|" if held else "")]
        for name, pairs in paired:
            cells = []
            for key in ("deploy/onnx_dev_acc", "deploy/onnx_test_acc", *([HELD] if held else [])):
                d = [100 * (float(r[key]) - float(b[key])) for r, b in pairs if measured(r, key) and measured(b, key)]
                cells.append(f"{statistics.mean(d):+.2f} ± {statistics.stdev(d) / len(d) ** 0.5:.2f}" if len(d) > 1 else "")
            out.append(f"| {name} | {','.join(r['seed'] for r, _ in pairs)} | " + " | ".join(cells) + " |")
    if repeats:
        out += ["", f"{repeats} runs were repeated (same variant and seed, another process): {same} of them gave the same dev and test accuracy."]
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="*", default=[], help="NAME=OVERRIDES (space-separated overrides in one argument)")
    parser.add_argument("--set", choices=sorted(SETS), help="a named set of variants")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--hardware", default="", help="overrides for every run, e.g. 'hardware=gpu hardware.precision=32-true'")
    parser.add_argument("--teacher", type=Path, help="an already fine-tuned teacher directory (teacher.finetuned=true)")
    parser.add_argument("--root", type=Path, default=Path("/tmp/frontier_screen"), help="the runs' root dirs and shared cache")
    parser.add_argument("--cache", type=Path, help="the teacher and logit cache the runs share (default: ROOT/cache), e.g. .cache/distilkit")
    parser.add_argument("--out", type=Path, default=RESULTS / "frontier_screen.tsv")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per run (OMP_NUM_THREADS, hardware.measure.threads)")
    parser.add_argument("--report", type=Path, help="write the markdown table of this TSV beside it and exit")
    args = parser.parse_args()
    if args.report:
        md = args.report.with_suffix(".md")
        md.write_text(report(args.report))
        print(md.read_text())
        return
    variants = dict(SETS[args.set]) if args.set else {}
    variants |= dict(v.split("=", 1) if "=" in v else (v, "") for v in args.variants)
    if not variants:
        parser.error("name variants with --variants NAME=OVERRIDES or --set")
    base = [*FRONTIER, f"paths.cache_dir={(args.cache or args.root / 'cache').resolve()}", f"hardware.measure.threads={args.threads}", *args.hardware.split()]
    if args.teacher:
        base = merge(base, [f"teacher.name_or_path={args.teacher.resolve()}", "teacher.finetuned=true"])
    jobs = [(name, int(seed)) for seed in args.seeds.split(",") for name in variants]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not args.out.is_file():
        args.out.write_text("\t".join(COLUMNS) + "\n")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]))

    def launch(name: str, seed: int):
        root = args.root / f"{name}_s{seed}"
        root.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "train", *merge(base, [*variants[name].split(), f"seed={seed}", f"paths.root_dir={root}"])]
        log = open(root / "log.txt", "w")
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT), root, time.perf_counter()

    running = []
    while jobs or running:
        while jobs and len(running) < args.workers:
            name, seed = jobs.pop(0)
            running.append((name, seed, *launch(name, seed)))
        time.sleep(1)
        for item in [r for r in running if r[2].poll() is not None]:
            running.remove(item)
            name, seed, proc, root, start = item
            m, status = metrics(root / "mlflow.db")
            cells = [name, seed, proc.returncode, f"{time.perf_counter() - start:.0f}",
                     *(f"{m.get(k, float('nan')):.4f}" for k in COLUMNS[4:9]), status, variants[name],
                     f"{m.get(HELD, float('nan')):.4f}"]
            with args.out.open("a") as f:
                f.write("\t".join(map(str, cells)) + "\n")
            print(*cells, sep="\t", flush=True)
            if proc.returncode:
                print("\n".join((root / "log.txt").read_text().splitlines()[-15:]), flush=True)
    md = args.out.with_suffix(".md")
    md.write_text(report(args.out))
    print(md.read_text())


if __name__ == "__main__":
    main()
