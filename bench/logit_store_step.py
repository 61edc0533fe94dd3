"""The cost of switching the teacher-logit store off, per training step, on SST-2 (MiniLM teacher, 3-layer distil student, kd).

    python bench/logit_store_step.py [--steps 20] [--threads 2] [overrides...]   # e.g. paths.cache_dir=DIR

One process, threads fixed, the two modes interleaved step by step on the same training batches: a
full training step (forward, KD loss, backward, AdamW step) with the teacher's logits read from the
batch (``task.store_logits=true``) vs the frozen teacher run in the step (``false``). The teacher comes
from the teacher cache (no fine-tune here: a miss stops with a message). Prints a table; writes
bench/results/logit_store_step.json. Per-trial cost of the switch = steps per trial x the difference.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
BASE = ["data=sst2", f"data.path={SHARED / 'data/sst2'}", "teacher=minilm", f"teacher.name_or_path={SHARED / 'models/all-MiniLM-L6-v2'}",
        "student=distil", "student.num_layers=3", "loss=kd", f"paths.cache_dir={ROOT / '.cache/distilkit'}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per mode (after 2 warm-up steps each)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(ROOT / "src"))
    from distilkit.pipeline import Run
    from distilkit.training.module import DistillModule

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*BASE, "paths.root_dir=/tmp/distilkit-bench/logit_store_step", *args.overrides])
    run = Run(cfg, {})
    run.preflight()
    def miss(*_):  # called only when the teacher cache has no entry: this bench never fine-tunes
        raise SystemExit(f"teacher cache miss under {cfg.paths.cache_dir}: run one training with these settings first")

    run.task.build_teacher = miss
    teacher, _, key = run.teacher()
    outputs = run.teacher_outputs(teacher, key)
    run.task.attach(run.data, outputs)
    run.seed("student")
    student = run.student(teacher)
    modules = {mode: DistillModule(student if mode == "store" else __import__("copy").deepcopy(student), run.loss,
                                   optimizer=partial(torch.optim.AdamW, lr=2e-4), teacher=teacher, online_teacher=mode == "online")
               for mode in ("store", "online")}
    optims = {mode: m.optimizer_factory(list(m.student.parameters())) for mode, m in modules.items()}
    batches = []
    for i, batch in enumerate(run.data.train_dataloader()):
        batches.append(batch)
        if len(batches) == args.steps + 2:
            break
    times = {mode: [] for mode in modules}
    for i, batch in enumerate(batches):
        for mode, module in modules.items():
            module.train()
            b = batch if mode == "store" else {k: v for k, v in batch.items() if k != "teacher_logits"}
            start = time.perf_counter()
            loss = module.loss(module._run(module.student, b), module._teacher(b), b["labels"], b["attention_mask"])["loss"]
            loss.backward()
            optims[mode].step()
            optims[mode].zero_grad()
            if i >= 2:
                times[mode].append(time.perf_counter() - start)
    med = {mode: statistics.median(t) for mode, t in times.items()}
    steps_per_epoch = len(run.data.train_dataloader())
    result = {"median_step_s": med, "steps_per_epoch": steps_per_epoch, "timed_steps": args.steps, "threads": args.threads,
              "extra_s_per_epoch": (med["online"] - med["store"]) * steps_per_epoch, "command": " ".join(["python bench/logit_store_step.py", *sys.argv[1:]])}
    print(f"| mode | median step (s) |\n|---|---|\n| store on (logits in the batch) | {med['store']:.3f} |\n| store off (teacher online) | {med['online']:.3f} |")
    print(f"{steps_per_epoch} steps/epoch: store off costs {result['extra_s_per_epoch']:.0f} s more per epoch ({med['online'] / med['store']:.2f}x per step)")
    out = ROOT / "bench" / "results" / "logit_store_step.json"
    out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
