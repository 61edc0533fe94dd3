"""Benchmark: compression options on SST-2 with the MiniLM teacher, each measured on the converted model.

    python bench/compress_sst2.py [--epochs 2] [--rows distil_fp32,qat_int8,...] [--time-only]
    python bench/compress_sst2.py --tiny --results /tmp/dk-bench/results --epochs 1   # smoke test, synthetic task

The frontier rows (issue 8) add each lever alone and combined: ``depth_2``, ``vocab`` (``vocab=train``),
``width`` (``pruner=width``), ``fused_*`` (``export.fuse=true``), ``ptq_static``, and ``frontier`` /
``frontier_static`` (depth 2 + vocab + width 50 % + int8 + fused), then ``budget_best`` (the SST-2 budget search's
chosen model, ``bench/budget_sst2.py``) trained 3 and 10 epochs, and ``budget_frontier_best`` (the choice of
``+sweep=budget_frontier`` on the AVX-512 VNNI host). The teacher is timed plain and fused
(``teacher_fused``), with speed-ups against both. Real-length cells use the teacher's tokenization of
the dev set for every row, ids clamped below the smallest vocabulary (latency depends on shapes).

Runs the real pipeline (Hydra compose + distilkit.pipeline.Run) once per row, with the teacher
fine-tuned once and cached, and keeps each row's deployable ONNX, the teacher's ONNX and the
tokenized dev set under ``bench/results/onnx/`` (gitignored). Then the teacher's ONNX and every kept row's ONNX are re-timed in ONE interleaved
onnxruntime session (``hardware.measure`` settings: threads fixed, >= min_samples per cell, full
length and the dev set's real lengths): every latency and speed-up cell of the table comes from that
session, so a speed-up is the teacher's ms over the row's ms as printed. Accuracy and sizes come from
each row's run. ``--time-only`` skips training and re-times the kept files (run it on a quiet CPU).
Writes ``bench/results/compress_sst2.{json,md}`` (rows from an earlier invocation are kept unless run
again) and prints the table. Needs ../shared/data/sst2 and ../shared/models/all-MiniLM-L6-v2.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import mlflow
import onnxruntime
import torch
from hydra import compose, initialize_config_dir

from distilkit.logs import quiet_libraries
from distilkit.measure.latency import LENGTHS, latency_name, speedup_name
from distilkit.measure.report import MeasureSpec
from distilkit.measure.session import cpu_description
from distilkit.pipeline import Run

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
RESULTS = ROOT / "bench" / "results"
ONNX_DIR = RESULTS / "onnx"  # each row's deployable ONNX, kept for the final timing session (gitignored)
TEACHER_ONNX = ONNX_DIR / "teacher.onnx"
TEACHER_FUSED = ONNX_DIR / "teacher.fused.onnx"  # the same graph fusions as export.fuse=true rows get
DEV_INPUTS = ONNX_DIR / "dev_inputs.pt"  # the dev set as the teacher's tokenizer encodes it, for the real-length cells
COMMON = [
    "data=sst2",
    f"data.path={SHARED / 'data' / 'sst2'}",
    "teacher=minilm",
    f"teacher.name_or_path={SHARED / 'models' / 'all-MiniLM-L6-v2'}",
    "student=distil",
    "loss=kd",
    "tracking.experiment_name=bench-compress-sst2",
]
ROWS = {  # in the order they run: the targets' rows first
    "distil_fp32": [],
    "qat_int8": ["quantizer=qat_int8"],
    "compound": ["pruner=heads", "pruner.amount=0.5", "quantizer=qat_int8"],
    "ptq_dynamic": ["quantizer=ptq_dynamic"],
    "heads_50": ["pruner=heads", "pruner.amount=0.5"],
    "qat_int4": ["quantizer=qat_int4"],
    "magnitude_50": ["pruner=magnitude", "pruner.sparsity=0.5"],
    # the frontier levers (issue 8), each alone, then combined
    "depth_2": ["student.num_layers=2"],
    "vocab": ["vocab=train"],
    "width": ["pruner=width"],  # hidden 25 %, FFN 25 % (conf/pruner/width.yaml)
    "fused_fp32": ["export.fuse=true"],
    "fused_qat_int8": ["export.fuse=true", "quantizer=qat_int8"],
    "ptq_static": ["quantizer=ptq_static"],
    "frontier": ["student.num_layers=2", "vocab=train", "pruner=width", "pruner.hidden=0.5", "pruner.ffn=0.5",
                 "quantizer=qat_int8", "export.fuse=true"],
    "frontier_static": ["student.num_layers=2", "vocab=train", "pruner=width", "pruner.hidden=0.5", "pruner.ffn=0.5",
                        "quantizer=ptq_static", "export.fuse=true"],
}
FRONTIER = ROWS["frontier"]
ROWS |= {  # the frontier trained longer (a row's own trainer.max_epochs wins over --epochs), with augmented text, and leaner
    "frontier_3ep": [*FRONTIER, "trainer.max_epochs=3"],
    "frontier_aug": [*FRONTIER, "augment=spans", "trainer.max_epochs=3"],
    "frontier_lean": [*FRONTIER, "pruner.heads=0.5", "trainer.max_epochs=3"],
}
BUDGET_BEST = [  # the budget search's choice (bench/results/budget_sst2.md, trial 20): 1 layer, its exact parameters
    "student.num_layers=1", "vocab=train", "pruner=width", "pruner.hidden=0.26051359427636284", "pruner.heads=0.3818825817540105",
    "pruner.ffn=0.3745650354733561", "quantizer=qat_int8", "loss.T=3.28040893912528", "loss.alpha=0.5466725716579401", "export.fuse=true"]
ROWS |= {  # timed beside the others at batch 1 and 32, and trained longer
    "budget_best": [*BUDGET_BEST, "trainer.max_epochs=3"],
    "budget_best_10ep": [*BUDGET_BEST, "trainer.max_epochs=10"],
}
REDUCE_RANGE = "quantizer.reduce_range=true"  # 7-bit int8 weights: onnxruntime's uint8 x int8 kernel, exact without VNNI
ROWS |= {  # the int8 rows again with reduce_range, and the budget model with it (batch-1 latency is its bound)
    "qat_int8_rr": ["quantizer=qat_int8", REDUCE_RANGE],
    "fused_qat_int8_rr": ["export.fuse=true", "quantizer=qat_int8", REDUCE_RANGE],
    "budget_best_rr": [*BUDGET_BEST, REDUCE_RANGE, "trainer.max_epochs=3"],
    # TinyBERT/Minitron: distilled on the teacher's hidden states and attention maps too (a width-pruned student's loss
    # is bound after pruning); loss.T/alpha keep the search's values for the logit term
    "budget_best_rr_intermediate": [*BUDGET_BEST, REDUCE_RANGE, "loss=intermediate", "trainer.max_epochs=3"],
}
ROWS |= {f"budget_best_rr_intermediate_seed{s}": [*ROWS["budget_best_rr_intermediate"], f"seed={s}"] for s in (1, 2)}  # seed noise
ROWS |= {  # the +sweep=budget_frontier study's choice on the VNNI host (bench/results/vnni/budget_frontier_sst2.md, trial 18)
    "budget_frontier_best": ["student.num_layers=1", "vocab=full", "pruner=width", "pruner.hidden=0.5400537552071392",
                             "pruner.heads=0.42661918827158063", "pruner.ffn=0.1543868119417483", "quantizer=qat_int8_rr",
                             "loss.T=1.9548114540218138", "loss.alpha=0.5035281100689694", "export.fuse=true", "trainer.max_epochs=3"],
}
ROWS |= {  # stop 24: the frontier model with a second layer, narrowed to stay within 10x at batch 1 (README: Eight-seed screens)
    "frontier_2layer": [*ROWS["budget_best_rr_intermediate"], "student.num_layers=2", "pruner.heads=0.5", "pruner.ffn=0.6"],
}
TINY = [  # --tiny: the synthetic task and a small scratch teacher, to smoke-test the rows in minutes
    "data=synthetic", "data.num_train=256", "data.num_dev=64", "data.num_test=64", "data.max_length=32",
    "teacher=scratch", "teacher.num_layers=4", "teacher.hidden_size=64", "teacher.num_attention_heads=4",
    "teacher.intermediate_size=128", "teacher.vocab_size=400", "teacher.finetune.max_epochs=1",
    "student=distil", "loss=kd", "tracking.experiment_name=bench-compress-tiny",
    "hardware.measure.min_samples=5", "hardware.measure.min_time_s=0", "hardware.measure.rewarm_ms=0", "hardware.measure.warmup=1",
]
SETUP = "SST-2 dev, MiniLM-L6 teacher, distil student"  # --tiny: the synthetic smoke setting
BATCH_SIZES = (1, 32)
SESSION = "session/"  # keys of the final timing session's cells (latency, speed-up) in a row's results
ORT = "onnxruntime"


def _timed(stat: str, fmt_b1: str, fmt_b32: str) -> list[tuple[str, str, str]]:
    return [
        (f"ort b{b}{' real' if lengths == 'real' else ''} {'ms' if stat == 'p50_ms' else 'p95 ms'}",
         SESSION + latency_name(ORT, lengths, b, stat), fmt_b1 if b == 1 else fmt_b32)
        for b in BATCH_SIZES for lengths in LENGTHS
        if stat == "p50_ms" or b == 1
    ]


COLUMNS = [  # (header, key in a row's results, format)
    ("epochs", "bench/epochs", "{:.0f}"),
    ("dev acc (onnx)", "deploy/onnx_dev_acc", "{:.4f}"),
    ("dev acc (torch)", "deploy/dev_acc", "{:.4f}"),
    ("ONNX MB", "deploy/onnx_size_mb", "{:.1f}"),
    ("sparse MB", "student/sparse_size_mb", "{:.1f}"),
    *_timed("p50_ms", "{:.2f}", "{:.1f}"),
    *_timed("p95_ms", "{:.2f}", "{:.1f}"),
    ("size x vs teacher", "deploy/size_ratio_vs_teacher", "{:.2f}"),
    *[(f"ort b{b}{' real' if lengths == 'real' else ''} x vs teacher", SESSION + speedup_name(ORT, lengths, b, "teacher"), "{:.2f}")
      for b in BATCH_SIZES for lengths in LENGTHS],
    *[(f"ort b{b} x vs fused teacher", SESSION + speedup_name(ORT, "full", b, "teacher_fused"), "{:.2f}") for b in BATCH_SIZES],
    ("vocab tokens", "vocab/tokens_kept", "{:.0f}"),
    ("word emb MB", "vocab/embedding_mb_after", "{:.2f}"),
    ("acc % of teacher", "retention", "{:.1%}"),
    ("parity max diff / max logit", "deploy/parity_rel_logit_diff", "{:.4f}"),  # deployed ONNX vs trained model (measure/parity.py)
    ("parity p99 row / max logit", "deploy/parity_p99_rel_logit_diff", "{:.4f}"),
    ("parity pass", "deploy/parity_pass", "{:.0f}"),
]
TEACHER_AS_DEPLOY = {  # the teacher row, in the same columns
    "deploy/onnx_dev_acc": "teacher/dev_acc", "deploy/dev_acc": "teacher/dev_acc", "deploy/onnx_size_mb": "teacher/onnx_size_mb",
    "student/sparse_size_mb": "teacher/sparse_size_mb",
}


def table(rows: dict[str, dict[str, float]]) -> str:
    lines = ["| row | " + " | ".join(h for h, _, _ in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, m in rows.items():
        cells = [fmt.format(m[key]) if key in m else "-" for _, key, fmt in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def retime(teacher_onnx: Path, row_onnx: dict[str, Path], spec: MeasureSpec, seq_len: int, vocab_size: int, dev_inputs,
           teacher_fused: Path | None = None) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """Time the teacher and every row's ONNX in one interleaved onnxruntime session; per row (and
    ``teacher``) its latency cells and speed-ups vs the teacher, all from that session; and the threads."""
    # ids valid for every model (vocab-pruned rows have smaller tables): latency depends on shapes, not on which ids
    dev_inputs = {**dev_inputs, "input_ids": dev_inputs["input_ids"].clamp(max=vocab_size - 1)}
    session = spec.session(seq_len, vocab_size, dev_inputs)
    session.add_onnx("teacher", teacher_onnx)
    names = ["teacher", *row_onnx]
    if teacher_fused is not None:  # the fused teacher, timed beside the plain one
        session.add_onnx("teacher_fused", teacher_fused)
        names.insert(1, "teacher_fused")
    for name, path in row_onnx.items():
        session.add_onnx(name, path)
    timings = session.run()
    metrics = timings.metrics() | timings.speedups([(name, base) for name in names for base in ("teacher", "teacher_fused")])
    cells = {name: {SESSION + k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith(f"{name}/")} for name in names}
    return cells, timings.threads


def keep_deploy_onnx(run: Run, name: str) -> Path:
    """Copy the row's deployable ONNX (the quantized file where there is one) from its MLflow artifacts."""
    files = [f.path for f in mlflow.artifacts.list_artifacts(run_id=run.tracker.run_id, artifact_path="student", tracking_uri=run.tracker.tracking_uri)]
    onnx_files = [f for f in files if f.endswith(".onnx")]
    # the deployable file: quantized over fp32, fused (export.fuse=true) over plain
    deploy = max(onnx_files, key=lambda f: (f.count(".") > 1 and not f.endswith("student.fused.onnx"), f.endswith(".fused.onnx")))
    ONNX_DIR.mkdir(parents=True, exist_ok=True)
    target = ONNX_DIR / f"{name}.onnx"
    with tempfile.TemporaryDirectory(dir=ONNX_DIR) as tmp:
        local = mlflow.artifacts.download_artifacts(run_id=run.tracker.run_id, artifact_path=deploy, dst_path=tmp, tracking_uri=run.tracker.tracking_uri)
        os.replace(local, target)
    return target


def keep_teacher(run: Run) -> None:
    """Keep the teacher's ONNX and the dev inputs (its tokenizer's) beside the rows' files: the final session
    (and ``--time-only``) needs no teacher, cache or training."""
    teacher, _, key = run.teacher()  # from the cache the row's run just used
    with tempfile.TemporaryDirectory(dir=ONNX_DIR) as tmp:
        for fuse, kept in ((False, TEACHER_ONNX), (True, TEACHER_FUSED)):  # the cached files, as export.fuse=false/true rows time them
            shutil.copyfile(run.task.teacher_onnx(run, teacher, key, fuse=fuse), Path(tmp) / kept.name)
        os.replace(Path(tmp) / TEACHER_FUSED.name, TEACHER_FUSED)
        dev = run.data.inputs("dev")
        torch.save({**dev, "vocab_size": teacher.config.vocab_size, "max_length": run.data.max_length}, Path(tmp) / DEV_INPUTS.name)
        os.replace(Path(tmp) / TEACHER_ONNX.name, TEACHER_ONNX)
        os.replace(Path(tmp) / DEV_INPUTS.name, DEV_INPUTS)


def main() -> None:
    global RESULTS, ONNX_DIR, TEACHER_ONNX, TEACHER_FUSED, DEV_INPUTS, SETUP
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2, help="student epochs per row (unless the row sets trainer.max_epochs)")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {list(ROWS)}")
    parser.add_argument("--time-only", action="store_true", help="train nothing; re-time the kept ONNX files of the saved rows")
    parser.add_argument("--train-only", action="store_true", help="train the rows, skip the timing session (run --time-only "
                        "later, on an idle machine)")
    parser.add_argument("--render", action="store_true", help="train and time nothing; rewrite the markdown table from the saved json")
    parser.add_argument("--reparity", action="store_true", help="train and time nothing; recompute each saved row's parity "
                        "(distilkit.measure.parity, SST-2 dev) from its newest MLflow run, update that run and the results")
    parser.add_argument("--tiny", action="store_true", help="smoke test: the synthetic task and a tiny scratch teacher instead of SST-2/MiniLM")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the results files and kept ONNX go (default bench/results)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run and the timing session, e.g. hardware.measure.threads=2")
    args = parser.parse_args()
    quiet_libraries()
    RESULTS = args.results.resolve()
    SETUP = "SMOKE TEST (--tiny): synthetic task, tiny scratch teacher, not a measurement" if args.tiny else SETUP
    ONNX_DIR = RESULTS / "onnx"
    TEACHER_ONNX, TEACHER_FUSED, DEV_INPUTS = ONNX_DIR / "teacher.onnx", ONNX_DIR / "teacher.fused.onnx", ONNX_DIR / "dev_inputs.pt"
    RESULTS.mkdir(parents=True, exist_ok=True)
    saved = RESULTS / "compress_sst2.json"
    # rows measured earlier (e.g. with --rows) are kept; the rows run now replace theirs
    previous = json.loads(saved.read_text()) if saved.is_file() else {}
    results: dict[str, dict[str, float]] = previous.get("rows", {})
    for name, row in results.items():  # rows saved before epochs were recorded per row: their MLflow runs say 1
        if name in ROWS:
            row.setdefault("bench/epochs", 1)
    if args.render:
        (RESULTS / "compress_sst2.md").write_text(f"{previous['setup']}\n\n{table(results)}\n")
        return
    common = [f"paths.root_dir={RESULTS.parent if args.tiny else ROOT}", *(TINY if args.tiny else COMMON), *args.overrides]
    if args.reparity:
        torch.set_num_threads(1)
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            for name in [n for n in ROWS if n in results]:
                results[name].update(reparity(name, compose(config_name="config", overrides=[*common, *ROWS[name]])))
        save(order(results), previous["setup"].split("latency: ", 1)[1])
        print(table(order(results)), flush=True)
        return
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        for name in [] if args.time_only else args.rows.split(","):
            start = time.perf_counter()
            run = Run(compose(config_name="config", overrides=[*common, f"trainer.max_epochs={args.epochs}", *ROWS[name]]), {"bench": name})
            metrics = run()
            keep_deploy_onnx(run, name)
            metrics["wall_s"] = time.perf_counter() - start
            metrics["bench/epochs"] = run.cfg.trainer.max_epochs
            metrics["retention"] = metrics["deploy/onnx_dev_acc"] / metrics["teacher/dev_acc"]  # of the row's own teacher
            if run.teacher_seed == 0:  # a row whose teacher has another seed (seed=N alone) has its own: the teacher row stays seed 0's
                keep_teacher(run)
                results["teacher"] = {**{d: metrics[t] for d, t in TEACHER_AS_DEPLOY.items()}, "deploy/size_ratio_vs_teacher": 1.0, "retention": 1.0}
            results[name] = metrics
            save(order(results), "rows trained; timing session pending")  # a stopped benchmark keeps what it measured
        spec = Run(compose(config_name="config", overrides=common), {}).measure_spec
    if args.train_only:
        return
    if not TEACHER_ONNX.is_file() or not DEV_INPUTS.is_file():
        raise SystemExit(f"error: no kept teacher ONNX / dev inputs under {ONNX_DIR}: run at least one row first")
    # the final session: the teacher and every kept row, interleaved
    for row in results.values():
        for key in [k for k in row if k.startswith(SESSION)]:
            del row[key]  # cells of an earlier session never mix with this one's
    kept = {name: ONNX_DIR / f"{name}.onnx" for name in ROWS if name in results and (ONNX_DIR / f"{name}.onnx").is_file()}
    missing = [name for name in ROWS if name in results and name not in kept]
    dev = torch.load(DEV_INPUTS)
    vocab_size = int(min([dev["vocab_size"], *[results[name].get("vocab/tokens_kept", dev["vocab_size"]) for name in kept]]))
    cells, threads = retime(TEACHER_ONNX, kept, spec, dev["max_length"], vocab_size, dev, TEACHER_FUSED if TEACHER_FUSED.is_file() else None)
    for name, row_cells in cells.items():
        results.setdefault(name, {}).update(row_cells)
    note = (f"onnxruntime {onnxruntime.__version__}, {threads.get(ORT)} intra-op threads (inter-op 1, no spinning), one interleaved "
            f"session, >= {spec.min_samples} samples and >= {spec.min_time_s:g} s per cell; full = {spec.seq_len or dev['max_length']} "
            "tokens, all-ones mask; real = SST-2 dev sentences (b32: consecutive sentences padded to their longest); "
            f"CPU: {cpu_description()}")
    if missing:
        note += f"; no kept ONNX (not timed): {', '.join(missing)}"
    save(order(results), note)
    print(table(order(results)), flush=True)


def reparity(name: str, cfg) -> dict[str, float]:
    """Parity of row ``name`` recomputed from its newest finished MLflow run (``bench`` tag): the trained student
    artifact under the row's quantizer (its parity reference, as the pipeline builds it) against the kept
    deployable ONNX, on the SST-2 dev rows as the student's tokenizer encodes them. The run gets the new parity
    metrics and tag."""
    from hydra.utils import instantiate
    from transformers import AutoTokenizer

    from distilkit.measure import parity
    from distilkit.prune import load_pruned

    uri = cfg.tracking.tracking_uri
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(cfg.tracking.experiment_name)
    [run] = client.search_runs([experiment.experiment_id], filter_string=f"tags.bench = '{name}' and attributes.status = 'FINISHED'",
                               order_by=["attributes.start_time DESC"], max_results=1)
    with tempfile.TemporaryDirectory() as tmp:
        art = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="student", dst_path=tmp, tracking_uri=uri))
        quantizer = instantiate(cfg.quantizer)
        converted = quantizer.convert(quantizer.prepare(load_pruned(art).eval()))
        tokenizer = AutoTokenizer.from_pretrained(art)
        sentences = [line.split(" ", 1)[1] for line in (Path(cfg.data.path) / "dev.txt").read_text().splitlines()]
        dev = dict(tokenizer(sentences, padding="max_length", truncation=True, max_length=cfg.data.max_length, return_tensors="pt"))
        metrics = parity.parity_metrics(parity.torch_logits(converted.reference, dev), parity.onnx_logits(ONNX_DIR / f"{name}.onnx", dev),
                                        converted.parity_key)
    for key, value in metrics.items():
        client.log_metric(run.info.run_id, key, value)
    for key, value in parity.parity_tags(metrics).items():
        client.set_tag(run.info.run_id, key, value)
    print(f"{name}: run {run.info.run_id} {parity.parity_summary(metrics)}", flush=True)
    return metrics


def order(results: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    return {row: results[row] for row in ("teacher", "teacher_fused", *ROWS) if row in results}


def save(results: dict[str, dict[str, float]], timing: str) -> None:
    header = f"{SETUP} (student epochs: the epochs column); latency: {timing}"
    (RESULTS / "compress_sst2.json").write_text(json.dumps({"setup": header, "rows": results}, indent=1))
    (RESULTS / "compress_sst2.md").write_text(f"{header}\n\n{table(results)}\n")


if __name__ == "__main__":
    main()
