"""Unlabelled in-domain text for distillation, written by a small causal LM (a transfer set for ``augment=corpus``).

    python bench/generate_transfer_text.py --out DIR/sst2_generated.txt --n 5000

Each prompt shows ``--shots`` training sentences (text only, never a label) under a one-line heading and asks
for one more; the model samples until the end of the line. The examples and the sampling are seeded per batch,
so a rerun with the same arguments writes the same file, and a killed run continues where it stopped (the
sentences already written are kept; ``--n`` counts kept sentences). Kept: the first line of each sample, lower-
cased, with 3 or more words, not a repeat of a kept or a training sentence, and not a dev or test sentence
(decontamination: the count dropped is printed). The default model is the SmolLM2-135M-Instruct GGUF in
``../shared`` (it needs ``pip install -e '.[llm]'``: gguf, accelerate); any Hugging Face causal LM directory or hub
name works (``--gguf-file ''``).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
SHARED = ROOT.parent / "shared"

from distilkit.data.augment import same_text  # noqa: E402  (the checkout's src, as bench/budget_sst2.py)
from distilkit.data.text_lines import read_label_sentence_file  # noqa: E402
HEADING = "Sentences from movie reviews:\n"


def sentences(path: Path) -> list[str]:
    """The text of a ``LABEL SENTENCE`` file (the label dropped), read as the data sources read it."""
    return [ex.text for ex in read_label_sentence_file(path)]


def clean(sample: str) -> str:
    return " ".join(sample.split("\n", 1)[0].strip().lower().split())


def rejected(text: str, held: set[str], seen: set[str]) -> str | None:
    """Why a cleaned sample is not kept (``short``, ``dev/test``, ``repeat``), or None. ``held``: the dev/test texts
    as :func:`same_text` keys, the decontamination ``augment=corpus`` applies."""
    return "short" if len(text.split()) < 3 else "dev/test" if same_text(text) in held else "repeat" if text in seen else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="text file, one sentence a line (appended to on resume)")
    p.add_argument("--n", type=int, default=6000, help="sentences to keep in all")
    p.add_argument("--data", type=Path, default=SHARED / "data" / "sst2", help="train.txt (examples), dev.txt and test.txt (decontamination)")
    p.add_argument("--model", default=str(SHARED / "models" / "SmolLM2-135M-Instruct-Q4_1"))
    p.add_argument("--gguf-file", default="SmolLM2-135M-Instruct.Q4_1.gguf")
    p.add_argument("--shots", type=int, default=3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(a.threads)
    train = sentences(a.data / "train.txt")
    held = {same_text(t) for split in ("dev", "test") for t in sentences(a.data / f"{split}.txt")}
    gguf = {"gguf_file": a.gguf_file} if a.gguf_file else {}
    tok = AutoTokenizer.from_pretrained(a.model, **gguf)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32, **gguf).eval()
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    newline = tok("\n", add_special_tokens=False).input_ids  # a sample ends at the end of its line (if the vocabulary has one)
    stop = [*newline[-1:], tok.eos_token_id]

    progress = a.out.with_name(a.out.name + ".batches")   # batches done, so a resumed run draws the next ones
    kept = a.out.read_text(encoding="utf-8").splitlines() if a.out.exists() else []
    batch = int(progress.read_text()) if progress.exists() and kept else 0
    seen = set(train) | set(kept)
    dropped = {"short": 0, "repeat": 0, "dev/test": 0}
    start = time.time()
    with a.out.open("a", encoding="utf-8") as f:
        while len(kept) < a.n:
            rng = random.Random(f"{a.seed}/{batch}")
            prompts = [HEADING + "".join(f"- {s}\n" for s in rng.sample(train, a.shots)) + "-" for _ in range(a.batch)]
            enc = tok(prompts, return_tensors="pt", padding=True)
            torch.manual_seed(a.seed * 1_000_003 + batch)
            with torch.no_grad():
                out = model.generate(**enc, do_sample=True, temperature=a.temperature, top_p=a.top_p,
                                     max_new_tokens=a.max_new_tokens, pad_token_id=tok.pad_token_id,
                                     eos_token_id=stop)
            for sample in tok.batch_decode(out[:, enc.input_ids.shape[1]:], skip_special_tokens=True):
                s = clean(sample)
                why = rejected(s, held, seen)
                if why:
                    dropped[why] += 1
                    continue
                seen.add(s)
                kept.append(s)
                f.write(s + "\n")
                if len(kept) >= a.n:
                    break
            f.flush()
            batch += 1
            progress.write_text(str(batch))
            print(f"batch {batch}: {len(kept)}/{a.n} kept, dropped {dropped}, {time.time() - start:.0f} s", flush=True)
    print(f"{a.out}: {len(kept)} sentences; dropped this run: {dropped}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
