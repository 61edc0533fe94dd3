"""Causal-LM distillation benchmark: SmolLM2-135M teacher -> 10-layer layer-copy student on tinyshakespeare.

Rows, each over ``--seeds`` (same tokens, same student init, same steps): the student trained with
next-token CE only (``lm_ce``), with each KD loss on the stored top-k teacher (``lm_fkl``, ``lm_rkl``,
``lm_jsd``, ``lm_skew_kl``), and forward KL with the full-vocabulary teacher run online
(``task.top_k=null``), to compare top-k storage with the full distribution. The teacher's top-k is
computed once (first row) and read from the store by every later row. Each row is one ordinary
pipeline run, tracked in MLflow under ``--root``. Writes ``bench/results/lm_distill.{md,json}``.

    python bench/lm_distill.py                      # the real run (~30 min on 2 cores, an estimate)
    python bench/lm_distill.py --smoke --out /tmp/lm_smoke   # tiny embedded teacher and corpus, seconds

Needs ``pip install gguf accelerate`` for the GGUF teacher (not for ``--smoke``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
RESULTS = ROOT / "bench" / "results"

# The real run: 10 of 30 teacher layers, 64-token blocks, 320 training blocks (20 k tokens, one epoch:
# 40 steps of 8 blocks), 32 dev and 32 test blocks (2 k tokens each), generation 32+32 tokens.
# CE only and forward KL (top-k) run every seed (the KD-vs-CE claim); the other rows the first seed only.
REAL = [
    "task=causal_lm", "teacher=smollm2", "data.path=../shared/data/tinyshakespeare/input.txt",
    "data.max_length=64", "data.batch_size=8", "data.max_train_blocks=320", "data.max_eval_blocks=32",
    "student=distil", "student.num_layers=10", "trainer.max_epochs=1", "optimizer.lr=1e-4",
    "task.top_k=32", "task.generation.prompt_tokens=32", "task.generation.new_tokens=32", "task.generation.repeats=2",
]
SMOKE = ["task=causal_lm", "data.num_lines=200", "data.max_length=16", "teacher.num_layers=2", "teacher.hidden_size=32",
         "teacher.num_attention_heads=2", "teacher.num_key_value_heads=1", "teacher.intermediate_size=64", "teacher.vocab_size=200",
         "teacher.finetune.max_epochs=2", "trainer.max_epochs=1", "task.top_k=8", "task.generation.prompt_tokens=4",
         "task.generation.new_tokens=4", "task.generation.repeats=1"]
ROWS = [
    ("ce only", ["loss=lm_ce"]),
    ("forward KL, top-k", ["loss=lm_fkl"]),
    ("reverse KL, top-k", ["loss=lm_rkl"]),
    ("JSD beta=0.5, top-k", ["loss=lm_jsd"]),
    ("skew KL lam=0.1, top-k", ["loss=lm_skew_kl"]),
    ("forward KL, full vocab online", ["loss=lm_fkl", "task.top_k=null"]),
]
COLUMNS = [("dev ppl", "student/dev_ppl", "{:.2f}"), ("test ppl", "student/test_ppl", "{:.2f}"), ("agreement dev", "student/agreement_dev", "{:.3f}"),
           ("params M", "student/params", "{:.1f}"), ("size MB", "student/size_mb", "{:.1f}"), ("decode tok/s", "student/gen_decode_tokens_per_s", "{:.1f}"),
           ("TTFT ms", "student/gen_ttft_ms", "{:.0f}")]


def one_run(root: Path, overrides: list[str]) -> dict[str, float]:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    from distilkit.logs import quiet_libraries
    from distilkit.pipeline import run

    quiet_libraries()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"paths.root_dir={root}", *overrides], return_hydra_config=True)
    choices = {g: str(c) for g, c in cfg.hydra.runtime.choices.items() if "/" not in g}
    with open_dict(cfg):
        del cfg["hydra"]
    return run(cfg, choices, overrides)


def fmt(values: list[float], pattern: str, key: str = "") -> str:
    values = [v / 1e6 for v in values] if key.endswith("/params") else values
    if len(values) == 1:
        return pattern.format(values[0])
    return f"{pattern.format(statistics.mean(values))} ± {pattern.format(statistics.stdev(values))}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny embedded teacher and corpus (checks the script, no real numbers)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--all-seeds", action="store_true", help="every row over every seed (default: CE and forward KL only)")
    parser.add_argument("--root", default=None, help="runs, caches, MLflow store (default: .bench/lm_distill or OUT/root)")
    parser.add_argument("--out", default=None, help="results directory (default: bench/results)")
    args = parser.parse_args()
    out = Path(args.out) if args.out else RESULTS
    root = Path(args.root) if args.root else (out / "root" if args.out else ROOT / ".bench" / "lm_distill")
    base = SMOKE if args.smoke else REAL
    rows, teacher, started = [], None, time.perf_counter()
    for i, (label, extra) in enumerate(ROWS):
        per_seed, walls = [], []
        seeds = args.seeds if i < 2 or args.all_seeds else args.seeds[:1]
        for seed in seeds:
            t0 = time.perf_counter()
            metrics = one_run(root, [*base, *extra, f"seed={seed}"])
            walls.append(time.perf_counter() - t0)
            per_seed.append(metrics)
            teacher = teacher or metrics
            print(f"{label} seed {seed}: dev ppl {metrics['student/dev_ppl']:.3f} ({walls[-1]:.0f} s)", flush=True)
        rows.append({"row": label, "overrides": extra, "seeds": seeds, "wall_s": walls, "metrics": per_seed})
    total = time.perf_counter() - started
    lines = ["| student | seeds | " + " | ".join(c for c, _, _ in COLUMNS) + " | wall s / run |", "|---" * (len(COLUMNS) + 3) + "|"]
    tcells = [fmt([teacher[k.replace("student/", "teacher/")]], f, k) if k.replace("student/", "teacher/") in teacher else "-" for _, k, f in COLUMNS]
    lines.append("| teacher | | " + " | ".join(tcells) + " | |")
    for row in rows:
        cells = [fmt([m[k] for m in row["metrics"]], f, k) for _, k, f in COLUMNS]
        lines.append(f"| {row['row']} | {','.join(map(str, row['seeds']))} | " + " | ".join(cells) + f" | {statistics.mean(row['wall_s']):.0f} |")
    ce = statistics.mean(m["student/dev_ppl"] for m in rows[0]["metrics"])
    fkl_topk = statistics.mean(m["student/dev_ppl"] for m in rows[1]["metrics"])
    full = statistics.mean(m["student/dev_ppl"] for m in rows[-1]["metrics"])
    same_seeds = [m["student/dev_ppl"] for s, m in zip(rows[1]["seeds"], rows[1]["metrics"]) if s in rows[-1]["seeds"]]
    topk_same = statistics.mean(same_seeds)
    summary = [
        f"KD (forward KL, top-k) vs CE only: dev ppl {fkl_topk:.3f} vs {ce:.3f} ({100 * (fkl_topk / ce - 1):+.1f} %), mean of seeds {args.seeds}",
        f"top-k (k={int(teacher['measure/teacher_topk'])}) vs full-vocabulary teacher, forward KL, seeds {rows[-1]['seeds']}: dev ppl {topk_same:.3f} vs {full:.3f} ({100 * (topk_same / full - 1):+.2f} %)",
        f"teacher store: {int(teacher['measure/teacher_store_bytes_per_token'])} bytes per token; generation: batch 1, greedy, KV cache, "
        f"prompt {int(teacher['measure/gen_prompt_tokens'])} tokens, {int(teacher['measure/gen_new_tokens'])} new, {int(teacher['measure/gen_threads'])} threads",
        f"total wall time {total:.0f} s; command: python bench/lm_distill.py {' '.join(sys.argv[1:])}",
    ]
    text = "# Causal-LM distillation" + (" (SMOKE: tiny embedded teacher, not a result)" if args.smoke else "") + "\n\n" + "\n".join(lines) + "\n\n" + "\n".join(f"- {s}" for s in summary) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "lm_distill.md").write_text(text)
    (out / "lm_distill.json").write_text(json.dumps({"base": base, "rows": rows, "teacher": {k: v for k, v in teacher.items() if k.startswith(("teacher/", "measure/"))}, "total_s": total}, indent=1))
    print(text)


if __name__ == "__main__":
    main()
