"""Causal-LM distillation benchmark: SmolLM2-135M teacher -> 10-layer layer-copy student on tinyshakespeare.

Rows (same tokens, same student init, same steps per seed): the student trained with next-token CE only
(``ce``), with each KD loss on the stored top-k teacher (``fkl``, ``rkl``, ``jsd``, ``skew``), forward KL on a
top-256 and a top-512 store (``fkl_k256``, ``fkl_k512``), on 32 teacher draws per token (``fkl_sampled``: ``task.teacher_store=sampled``,
random-sampling KD) and with the full-vocabulary teacher run online (``fkl_full``: stored forms vs the full
distribution, same seed),
and forward KL deployed quantized (``fkl_int8``: ``ptq_dynamic``; ``fkl_int4``: ``qat_int4``), whose
deployed torch model's perplexity and decode speed are measured beside the fp32 student in the same
run (interleaved, threads fixed). ``seqkd`` (sequence-level KD, Kim & Rush 2016: CE on the teacher's greedy
continuations of corpus prompts) is only run when asked (``--rows seqkd``): the teacher's generation is the
slow part. CE and forward KL run every seed (the KD-vs-CE claim), the other rows the first seed
(``--all-seeds``: all). The teacher's top-k is computed once (first run) and read from the store later.

Each (row, seed) is one ordinary pipeline run, tracked in MLflow under ``--root``; after each one the
results are written (``bench/results/lm_distill.json``, then the table ``.md``), so an interrupted bench
loses at most one run: ``--resume`` skips the (row, seed) pairs already in the json, ``--rows a,b`` runs only
those rows (the others are kept from the json).

    python bench/lm_distill.py                               # the real run (budget: <= 30 min on 2 cores; see REAL)
    python bench/lm_distill.py --resume                      # go on after an interruption
    python bench/lm_distill.py --rows seqkd                  # add the sequence-level KD row
    python bench/lm_distill.py --smoke --out /tmp/lm_smoke   # tiny embedded teacher and corpus, about a minute

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
# 40 steps of 8 blocks, lr 1e-3: at 1e-4 every student was still at dev ppl 3000-4500), 32 dev and 32 test blocks
# (2 k tokens each), generation 32 + 32 tokens.
REAL = [
    "task=causal_lm", "teacher=smollm2", "data.path=../shared/data/tinyshakespeare/input.txt",
    "data.max_length=64", "data.batch_size=8", "data.max_train_blocks=320", "data.max_eval_blocks=32",
    "student=distil", "student.num_layers=10", "trainer.max_epochs=1", "optimizer.lr=1e-3",
    "task.top_k=32", "task.generation.prompt_tokens=32", "task.generation.new_tokens=32", "task.generation.repeats=2",
    "hardware.measure.threads=2",
]
SMOKE = ["task=causal_lm", "data.num_lines=200", "data.max_length=16", "teacher.num_layers=2", "teacher.hidden_size=32",
         "teacher.num_attention_heads=2", "teacher.num_key_value_heads=1", "teacher.intermediate_size=64", "teacher.vocab_size=200",
         "teacher.finetune.max_epochs=2", "trainer.max_epochs=1", "task.top_k=8", "task.generation.prompt_tokens=4",
         "task.generation.new_tokens=4", "task.generation.repeats=1", "hardware.measure.threads=2",
         "task.sequence_kd.prompt_tokens=4", "task.sequence_kd.new_tokens=8"]
# id, label, overrides, every seed by default, run by default
ROWS = [
    ("ce", "CE only", ["loss=lm_ce"], True, True),
    ("fkl", "forward KL, top-k", ["loss=lm_fkl"], True, True),
    ("rkl", "reverse KL, top-k", ["loss=lm_rkl"], False, True),
    ("jsd", "JSD beta=0.5, top-k", ["loss=lm_jsd"], False, True),
    ("skew", "skew KL lam=0.1, top-k", ["loss=lm_skew_kl"], False, True),
    ("fkl_k256", "forward KL, top-256", ["loss=lm_fkl", "task.top_k=256"], False, True),
    ("fkl_k512", "forward KL, top-512", ["loss=lm_fkl", "task.top_k=512"], False, True),
    ("fkl_sampled", "forward KL, 32 teacher draws", ["loss=lm_fkl", "task.teacher_store=sampled"], False, True),
    ("fkl_full", "forward KL, full vocab online", ["loss=lm_fkl", "task.top_k=null"], False, True),
    ("fkl_int8", "forward KL + ptq_dynamic (int8)", ["loss=lm_fkl", "quantizer=ptq_dynamic"], False, True),
    ("fkl_int4", "forward KL + qat_int4", ["loss=lm_fkl", "quantizer=qat_int4"], False, True),
    ("seqkd", "sequence-level KD (CE on 320 teacher continuations)", ["loss=lm_ce", "task.sequence_kd.prompts=320"], False, False),
]
COLUMNS = [("dev ppl", "student/dev_ppl", "{:.2f}"), ("test ppl", "student/test_ppl", "{:.2f}"), ("agreement dev", "student/agreement_dev", "{:.3f}"),
           ("params M", "student/params", "{:.1f}"), ("size MB", "student/size_mb", "{:.1f}"), ("decode tok/s", "student/gen_decode_tokens_per_s", "{:.1f}"),
           ("TTFT ms", "student/gen_ttft_ms", "{:.0f}"), ("deployed dev ppl", "deploy/dev_ppl", "{:.2f}"),
           ("deployed MB", "deploy/state_dict_mb", "{:.1f}"), ("deployed decode tok/s", "deploy/gen_decode_tokens_per_s", "{:.1f}"),
           ("decode × vs fp32", "deploy/gen_decode_speedup_vs_student", "{:.2f}")]


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
    if not values:
        return "-"
    if len(values) == 1:
        return pattern.format(values[0])
    return f"{pattern.format(statistics.mean(values))} ± {pattern.format(statistics.stdev(values))}"


def dev_ppl(results: dict, row: str, seeds=None) -> list[float]:
    runs = results["rows"].get(row, {}).get("runs", {})
    return [r["metrics"]["student/dev_ppl"] for s, r in sorted(runs.items()) if seeds is None or int(s) in seeds]


def summary(results: dict) -> list[str]:
    lines, rows, teacher = [], results["rows"], results.get("teacher", {})
    ce = dev_ppl(results, "ce")
    if ce:
        for row in ("fkl", "rkl", "jsd", "skew", "seqkd"):
            seeds = [int(s) for s in rows.get(row, {}).get("runs", {})]
            kd, base = dev_ppl(results, row), dev_ppl(results, "ce", seeds)
            if kd and len(base) == len(kd):
                per_seed = ", ".join(f"{100 * (k / c - 1):+.1f} %" for k, c in zip(kd, base))
                lines.append(f"{rows[row]['label']} vs CE only, seeds {sorted(seeds)}: dev ppl {statistics.mean(kd):.3f} vs "
                             f"{statistics.mean(base):.3f} ({100 * (statistics.mean(kd) / statistics.mean(base) - 1):+.1f} %; per seed {per_seed})")
    full = rows.get("fkl_full", {}).get("runs", {})
    for row in ("fkl", "fkl_k256", "fkl_k512", "fkl_sampled") if full else ():
        seeds = [int(s) for s in full]
        topk, f = dev_ppl(results, row, seeds), dev_ppl(results, "fkl_full", seeds)
        if topk and len(topk) == len(f):
            first = rows[row]["runs"][str(seeds[0])]["metrics"]
            lines.append(f"{rows[row]['label']} (k={int(first['measure/teacher_topk'])}, {int(first['measure/teacher_store_bytes_per_token'])} bytes "
                         f"per token) vs full-vocabulary teacher online, forward KL, seeds {seeds}: dev ppl {statistics.mean(topk):.3f} "
                         f"vs {statistics.mean(f):.3f} ({100 * (statistics.mean(topk) / statistics.mean(f) - 1):+.2f} %)")
    for row in ("fkl_int8", "fkl_int4"):
        for seed, r in sorted(rows.get(row, {}).get("runs", {}).items()):
            m = r["metrics"]
            lines.append(f"{rows[row]['label']}, seed {seed}: deployed dev ppl {m['deploy/dev_ppl']:.3f} vs the float student's "
                         f"{m['student/dev_ppl']:.3f} ({100 * (m['deploy/ppl_ratio_vs_student_dev'] - 1):+.2f} %), decode "
                         f"{m['deploy/gen_decode_tokens_per_s']:.1f} vs {m['student/gen_decode_tokens_per_s']:.1f} tokens/s "
                         f"({m['deploy/gen_decode_speedup_vs_student']:.2f}×, same process, interleaved), state dict "
                         f"{m['deploy/state_dict_mb']:.1f} vs {m['student/state_dict_mb']:.1f} MB")
    if teacher:
        lines.append(f"teacher store: {int(teacher['measure/teacher_store_bytes_per_token'])} bytes per token; generation: batch 1, greedy, "
                     f"KV cache, prompt {int(teacher['measure/gen_prompt_tokens'])} tokens, {int(teacher['measure/gen_new_tokens'])} new, "
                     f"{int(teacher['measure/gen_threads'])} threads")
    walls = [r["wall_s"] for row in rows.values() for r in row["runs"].values()]
    lines.append(f"wall time: {sum(walls):.0f} s over {len(walls)} runs; commands: " + "; ".join(f"`{c}`" for c in results.get("commands", [])))
    return lines


def write(results: dict, out: Path, smoke: bool) -> str:
    head = "| student | seeds | " + " | ".join(c for c, _, _ in COLUMNS) + " | wall s / run |"
    lines = [head, "|---" * (len(COLUMNS) + 3) + "|"]
    teacher = results.get("teacher", {})
    tcells = [fmt([teacher[k.replace("student/", "teacher/")]], f, k) if k.replace("student/", "teacher/") in teacher else "-" for _, k, f in COLUMNS]
    lines.append("| teacher | | " + " | ".join(tcells) + " | |")
    for row_id, *_ in ROWS:
        row = results["rows"].get(row_id)
        if not row or not row["runs"]:
            continue
        runs = [row["runs"][s] for s in sorted(row["runs"])]
        cells = [fmt([r["metrics"][k] for r in runs if k in r["metrics"]], f, k) for _, k, f in COLUMNS]
        lines.append(f"| {row['label']} | {','.join(sorted(row['runs']))} | " + " | ".join(cells)
                     + f" | {statistics.mean(r['wall_s'] for r in runs):.0f} |")
    title = "# Causal-LM distillation" + (" (SMOKE: tiny embedded teacher, not a result)" if smoke else "")
    text = f"{title}\n\nbase overrides: `{' '.join(results['base'])}`\n\n" + "\n".join(lines) + "\n\n" + "\n".join(f"- {s}" for s in summary(results)) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "lm_distill.json.tmp"
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(out / "lm_distill.json")
    (out / "lm_distill.md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny embedded teacher and corpus (checks the script, no real numbers)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--all-seeds", action="store_true", help="every row over every seed (default: CE and forward KL only)")
    parser.add_argument("--rows", default=None, help=f"comma-separated row ids to run (default: all but seqkd): {', '.join(r[0] for r in ROWS)}")
    parser.add_argument("--resume", action="store_true", help="skip the (row, seed) runs already in the results json")
    parser.add_argument("--root", default=None, help="runs, caches, MLflow store (default: .bench/lm_distill or OUT/root)")
    parser.add_argument("--out", default=None, help="results directory (default: bench/results)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides added to every run's base (the results json then holds only runs with them)")
    args = parser.parse_args()
    out = Path(args.out) if args.out else RESULTS
    root = Path(args.root) if args.root else (out / "root" if args.out else ROOT / ".bench" / "lm_distill")
    base = [*(SMOKE if args.smoke else REAL), *args.overrides]
    known = {r[0]: r for r in ROWS}
    chosen = args.rows.split(",") if args.rows else [r[0] for r in ROWS if r[4]]
    unknown = [r for r in chosen if r not in known]
    if unknown:
        parser.error(f"--rows: unknown {', '.join(unknown)}; choose from {', '.join(known)}")
    path = out / "lm_distill.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    if results.get("base") != base:  # other settings: the old rows don't compare
        results = {"base": base, "rows": {}, "commands": []}
    results["commands"].append("python bench/lm_distill.py " + " ".join(sys.argv[1:]))
    for row_id in chosen:
        _, label, extra, every_seed, _ = known[row_id]
        row = results["rows"].setdefault(row_id, {"label": label, "overrides": extra, "runs": {}})
        for seed in (args.seeds if every_seed or args.all_seeds else args.seeds[:1]):
            if args.resume and str(seed) in row["runs"]:
                continue
            t0 = time.perf_counter()
            metrics = one_run(root, [*base, *extra, f"seed={seed}"])
            row["runs"][str(seed)] = {"metrics": metrics, "wall_s": time.perf_counter() - t0}
            results["teacher"] = results.get("teacher") or {k: v for k, v in metrics.items() if k.startswith(("teacher/", "measure/"))}
            write(results, out, args.smoke)
            print(f"{label} seed {seed}: dev ppl {metrics['student/dev_ppl']:.3f} ({row['runs'][str(seed)]['wall_s']:.0f} s)", flush=True)
    print(write(results, out, args.smoke))


if __name__ == "__main__":
    main()
