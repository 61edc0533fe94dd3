"""Benchmark: the KD training step through distilkit vs a plain PyTorch loop doing the same job.

Both sides train the same student (copies of one initial model) with the same loss module, optimizer
and schedule (built from the same config) on the same batches (the DataModule's training loader,
seeded alike; checked by hashing every batch). distilkit runs it as the pipeline does
(``Run.fit``: DistillModule + the configured Lightning Trainer); the plain loop is forward, loss,
backward, optimizer step, scheduler step, zero_grad. Rounds alternate which side goes first.

    python bench/train_step.py                   # SST-2, MiniLM teacher, 3-layer distil student, 50 steps x 3 rounds
    python bench/train_step.py --steps 20 --rounds 1 --threads 2

Throughput counts the steps after ``--warmup`` steps (steady state); "fit wall" is the whole call,
set-up included. Teacher logits are random (seeded): the step's cost does not depend on their values.
Writes ``bench/results/train_step.{json,md}`` and prints the table.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import platform
import tempfile
import time

import torch
from lightning.pytorch.callbacks import Callback

from harness import RESULTS, SHARED, build_run


class StepClock(Callback):
    """Times training steps ``warmup``.. and hashes every batch (to check both sides saw the same ones)."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.end, self.steps = warmup, None, None, 0
        self.digest = hashlib.sha256()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.digest.update(batch["input_ids"].numpy().tobytes())
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.steps = batch_idx + 1
        self.end = time.perf_counter()


def distilkit_fit(run, student, teacher, warmup: int) -> dict:
    clock = StepClock(warmup)
    make_trainer = run.trainer

    def trainer_with_clock(**overrides):
        trainer = make_trainer(**overrides)
        trainer.callbacks.append(clock)
        return trainer

    run.trainer = trainer_with_clock
    try:
        start = time.perf_counter()
        run.fit(student, teacher)
        wall = time.perf_counter() - start
    finally:
        run.trainer = make_trainer
    return {"steps": clock.steps, "timed_s": clock.end - clock.start, "fit_wall_s": wall, "batches": clock.digest.hexdigest()[:16]}


def plain_fit(run, student, steps: int, warmup: int) -> dict:
    """The same step by hand: forward, the run's loss, backward, AdamW step, schedule step, zero_grad."""
    from hydra.utils import instantiate

    from distilkit.losses.outputs import Outputs

    start = time.perf_counter()
    student.train()
    loss_fn = run.loss
    params = [p for m in (student, loss_fn) for p in m.parameters() if p.requires_grad]
    optimizer = instantiate(run.cfg.optimizer)(params)
    scheduler = instantiate(run.cfg.scheduler)(optimizer, total_steps=steps)
    digest, timed_from, done = hashlib.sha256(), None, 0
    for i, batch in enumerate(run.data.train_dataloader()):
        if i == steps:
            break
        digest.update(batch["input_ids"].numpy().tobytes())
        if i == warmup:
            timed_from = time.perf_counter()
        out = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        parts = loss_fn(Outputs.of(out), Outputs(batch["teacher_logits"]), batch["labels"], batch["attention_mask"])
        parts["loss"].backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        done = i + 1
    end = time.perf_counter()
    return {"steps": done, "timed_s": end - timed_from, "fit_wall_s": end - start, "batches": digest.hexdigest()[:16]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=str(SHARED / "data" / "sst2"))
    parser.add_argument("--model", default=str(SHARED / "models" / "all-MiniLM-L6-v2"))
    parser.add_argument("--bucket-by-length", default="false", choices=["true", "false"])
    parser.add_argument("--results", default=str(RESULTS / "train_step.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import lightning as L

    overrides = [
        "data=sst2", f"data.path={args.data}", f"data.bucket_by_length={args.bucket_by_length}",
        "teacher=minilm", f"teacher.name_or_path={args.model}", "teacher.finetune.max_epochs=0",  # no fine-tune: logits are random
        "student=distil", "loss=kd", f"seed={args.seed}",
        "trainer.max_epochs=1", f"trainer.limit_train_batches={args.steps}", "trainer.limit_val_batches=0",
    ]
    with tempfile.TemporaryDirectory() as root:
        run = build_run(root, overrides)
        teacher, _, _ = run.teacher()
        n = len(run.data.splits["train"])
        run.data.attach_teacher_logits(torch.randn(n, run.data.num_classes, generator=torch.Generator().manual_seed(args.seed)))
        initial = run.student(teacher)
        sides = {"distilkit": lambda s: distilkit_fit(run, s, teacher, args.warmup), "plain": lambda s: plain_fit(run, s, args.steps, args.warmup)}
        rows = []
        for r in range(args.rounds):
            order = list(sides) if r % 2 == 0 else list(reversed(sides))
            for side in order:
                L.seed_everything(args.seed, verbose=False)
                result = sides[side](copy.deepcopy(initial))
                rows.append({"round": r, "side": side, **result, "steps_per_s": (result["steps"] - args.warmup) / result["timed_s"]})
                print(f"round {r} {side:9s} {rows[-1]['steps_per_s']:.3f} steps/s  fit wall {result['fit_wall_s']:.1f} s  batches {result['batches']}", flush=True)
    summary = {}
    for side in sides:
        mine = [x for x in rows if x["side"] == side]
        summary[side] = {
            "steps_per_s": sum(x["steps"] - args.warmup for x in mine) / sum(x["timed_s"] for x in mine),
            "fit_wall_s": sum(x["fit_wall_s"] for x in mine) / len(mine),
        }
    ratio = summary["distilkit"]["steps_per_s"] / summary["plain"]["steps_per_s"]
    ratio_wall = summary["plain"]["fit_wall_s"] / summary["distilkit"]["fit_wall_s"]
    same = len({x["batches"] for x in rows}) == 1
    command = "python bench/train_step.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("data", "model", "results"))
    meta = {"command": command, "host": platform.node(), "cpu": platform.processor() or platform.machine(), "threads": args.threads,
            "torch": torch.__version__, "batch_size": run.data.batch_size, "bucket_by_length": args.bucket_by_length, "same_batches": same}
    result = {"meta": meta, "rows": rows, "summary": summary, "ratio_steady": ratio, "ratio_fit_wall": ratio_wall}
    out = __import__("pathlib").Path(args.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    table = [
        "# KD training step: distilkit (Run.fit: DistillModule + Lightning Trainer) vs a plain PyTorch loop",
        "",
        f"SST-2, MiniLM-L6 teacher (logits stored), 3-layer distil student, loss=kd, batch {meta['batch_size']}, "
        f"bucket_by_length={args.bucket_by_length}, {args.steps} steps x {args.rounds} rounds (alternating), "
        f"{args.threads} threads, torch {torch.__version__}. Same batches on both sides: {'yes' if same else 'NO'}.",
        "",
        f"Command: `{command}`",
        "",
        "| side | steps/s (after warm-up) | fit wall s (incl. set-up) |",
        "|---|---|---|",
        *[f"| {side} | {s['steps_per_s']:.3f} | {s['fit_wall_s']:.1f} |" for side, s in summary.items()],
        "",
        f"distilkit / plain throughput: **{ratio:.3f}** (steady), {ratio_wall:.3f} (whole fit incl. set-up).",
    ]
    out.with_suffix(".md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
