"""Per-row parity of a qat_int8 student: the fake-quantized model vs its deployed int8 ONNX (the run artifact), SST-2 dev.

    PYTHONPATH=src python bench/parity_rows.py RUN_ARTIFACTS/student

Prints the max logit and the per-row max |logit diff| quantiles, the five rows with the largest difference,
and how many rows exceed 5 % and 2 % of the max logit. A tool for the open qat_int8 parity question (README).
"""
import sys, torch
from pathlib import Path
from transformers import AutoTokenizer
from distilkit.prune import load_pruned
from distilkit.quantize import QATInt8Quantizer
from distilkit.measure import parity
torch.set_num_threads(2)
art = Path(sys.argv[1])
tok = AutoTokenizer.from_pretrained(art)
rows = [l.split(" ", 1) for l in (Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "sst2" / "dev.txt").read_text().splitlines()]
enc = tok([r[1] for r in rows], padding="max_length", truncation=True, max_length=64, return_tensors="pt")
inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
q = QATInt8Quantizer(); c = q.convert(q.prepare(load_pruned(art).eval()))
t, o = parity.torch_logits(c.reference, inputs), parity.onnx_logits(art / "student.int8.onnx", inputs)
d = (t - o).abs().max(1).values
qs = torch.quantile(d, torch.tensor([0.5, 0.9, 0.99, 1.0]))
print("max|logit|", float(t.abs().max()), "per-row max diff p50/p90/p99/max", [f"{x:.4f}" for x in qs.tolist()])
top = d.argsort(descending=True)[:5]
for i in top.tolist():
    print(i, f"{float(d[i]):.4f}", "len", int(enc['attention_mask'][i].sum()), "logits t", [f"{x:.3f}" for x in t[i].tolist()], "o", [f"{x:.3f}" for x in o[i].tolist()])
print("rows over 5% of max|logit|:", int((d > 0.05 * t.abs().max()).sum()), "over 2%:", int((d > 0.02 * t.abs().max()).sum()))
