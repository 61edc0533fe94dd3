"""Teacher recipe on SST-2: a plain PyTorch fine-tuning loop vs distilkit's teacher stage, dev accuracy.

The plain loop is written from scratch, the way one would by hand: ``LABEL SENTENCE`` files, the
teacher's tokenizer, random batches each padded to its longest member, AdamW, a linear schedule
(``transformers.get_linear_schedule_with_warmup``), dev accuracy after the last epoch. The framework
rows run the pipeline's own teacher stage (``Run.teacher``: config -> DataModule -> DistillModule ->
Lightning Trainer, exactly as ``python -m train`` does, untracked) with Hydra overrides.

    python bench/teacher_recipe.py                       # every setting, seed 0
    python bench/teacher_recipe.py --only plain fw_lr5e-5 --seeds 0 1 2
    python bench/teacher_recipe.py --device cuda          # same math on a GPU (fp32)

Each result is merged into ``bench/results/teacher_recipe.json`` (keyed by setting, seed, device) and
the table ``bench/results/teacher_recipe.md`` is rewritten from it.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import tempfile
import time
from pathlib import Path

import torch

from harness import RESULTS, SHARED, build_run

# name -> (kind, settings). Plain: keyword arguments of plain_loop. Framework: Hydra overrides.
SETTINGS = {
    "plain": ("plain", {"lr": 5e-5, "warmup": 0.0}),
    "plain_warmup10": ("plain", {"lr": 5e-5, "warmup": 0.1}),
    "fw_lr5e-5": ("framework", ["teacher.finetune.lr=5e-5", "data.bucket_by_length=false"]),
    "fw_lr1e-4": ("framework", ["teacher.finetune.lr=1e-4", "data.bucket_by_length=false"]),
    "fw_lr1e-4_bucket": ("framework", ["teacher.finetune.lr=1e-4", "data.bucket_by_length=true"]),
    "fw_lr5e-5_bucket": ("framework", ["teacher.finetune.lr=5e-5", "data.bucket_by_length=true"]),
    "fw_lr5e-5_bucket_warmup0": ("framework", ["teacher.finetune.lr=5e-5", "data.bucket_by_length=true", "teacher.finetune.warmup_fraction=0.0"]),
    "fw_lr3e-5_bucket": ("framework", ["teacher.finetune.lr=3e-5", "data.bucket_by_length=true"]),
}


def read_split(path: Path) -> tuple[list[str], list[int]]:
    texts, labels = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            label, _, text = line.partition(" ")
            texts.append(text.strip())
            labels.append(int(label))
    return texts, labels


def plain_loop(data: Path, model_dir: Path, seed: int, device: str, lr: float, warmup: float, epochs: int = 3,
               batch_size: int = 32, max_length: int = 64, weight_decay: float = 0.01) -> float:
    """Fine-tune ``model_dir`` on ``data`` by hand; dev accuracy after the last epoch."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

    random.seed(seed)
    torch.manual_seed(seed)
    train_x, train_y = read_split(data / "train.txt")
    dev_x, dev_y = read_split(data / "dev.txt")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * -(-len(train_x) // batch_size)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(warmup * steps), steps)
    generator = torch.Generator().manual_seed(seed)

    def encode(texts):
        enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        return {k: enc[k].to(device) for k in ("input_ids", "attention_mask")}

    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(train_x), generator=generator).tolist()
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            logits = model(**encode([train_x[i] for i in rows])).logits
            loss = torch.nn.functional.cross_entropy(logits, torch.tensor([train_y[i] for i in rows], device=device))
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
    model.eval()
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(dev_x), 64):
            pred = model(**encode(dev_x[start : start + 64])).logits.argmax(-1).cpu()
            correct += int((pred == torch.tensor(dev_y[start : start + 64])).sum())
    return correct / len(dev_x)


def framework(data: Path, model_dir: Path, seed: int, device: str, overrides: list[str]) -> float:
    """The pipeline's teacher stage with ``overrides``, in a fresh cache; dev accuracy of the teacher."""
    import lightning as L

    from distilkit.measure.accuracy import accuracy
    from distilkit.training.logit_store import predict_logits

    hardware = ["hardware=gpu", "hardware.precision=32-true", "hardware.devices=1"] if device == "cuda" else []
    with tempfile.TemporaryDirectory() as root:
        run = build_run(root, [
            "data=sst2", f"data.path={data}", "teacher=minilm", f"teacher.name_or_path={model_dir}",
            f"seed={seed}", *hardware, *overrides,
        ])
        L.seed_everything(seed, verbose=False)
        teacher, _, _ = run.teacher()
        return accuracy(predict_logits(teacher, run.data.inputs("dev")), run.data.labels("dev"))


def write_table(rows: list[dict], path: Path) -> None:
    lines = [
        "# Teacher recipe: SST-2, all-MiniLM-L6-v2, batch 32, max length 64, 3 epochs, AdamW wd 0.01, linear schedule",
        "",
        "Command: `python bench/teacher_recipe.py [--only NAME ...] [--seeds ...] [--device cpu|cuda] [--threads N]`",
        "(plain = a hand-written PyTorch loop; fw_* = distilkit's teacher stage with the listed overrides;",
        "every other setting is the config's: warm-up 0.1, weight decay 0.01, seeded by `seed`).",
        "",
        "| setting | what | device | seed | dev acc | wall s |",
        "|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["setting"], r["device"], r["seed"])):
        lines.append(f"| {r['setting']} | {r['what']} | {r['device']} | {r['seed']} | {r['dev_acc']:.4f} | {r['wall_s']:.0f} |")
    by = {}
    for r in rows:
        by.setdefault((r["setting"], r["device"]), []).append(r["dev_acc"])
    lines += ["", "| setting | device | seeds | mean dev acc |", "|---|---|---|---|"]
    for (setting, device), accs in sorted(by.items()):
        lines.append(f"| {setting} | {device} | {len(accs)} | {sum(accs) / len(accs):.4f} |")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=list(SETTINGS), help="settings to run (default: all)")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "sst2")
    parser.add_argument("--model", type=Path, default=SHARED / "models" / "all-MiniLM-L6-v2")
    parser.add_argument("--results", type=Path, default=RESULTS / "teacher_recipe.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = args.device if args.device == "cpu" else f"cuda ({torch.cuda.get_device_name()})"
    results = json.loads(args.results.read_text()) if args.results.is_file() else []
    for name in args.only or list(SETTINGS):
        kind, settings = SETTINGS[name]
        for seed in args.seeds:
            start = time.perf_counter()
            if kind == "plain":
                acc = plain_loop(args.data, args.model, seed, args.device, **settings)
                what = f"plain loop, lr {settings['lr']}, warm-up {settings['warmup']}"
            else:
                acc = framework(args.data, args.model, seed, args.device, settings)
                what = "distilkit " + " ".join(settings)
            wall = time.perf_counter() - start
            row = {"setting": name, "what": what, "device": device, "seed": seed, "dev_acc": acc, "wall_s": wall,
                   "threads": args.threads, "torch": torch.__version__, "host": platform.node()}
            print(f"{name:22s} seed {seed}  dev acc {acc:.4f}  {wall:.0f} s", flush=True)
            results = [r for r in results if (r["setting"], r["seed"], r["device"]) != (name, seed, device)] + [row]
            args.results.parent.mkdir(parents=True, exist_ok=True)
            args.results.write_text(json.dumps(results, indent=1))
            write_table(results, args.results.with_suffix(".md"))


if __name__ == "__main__":
    main()
