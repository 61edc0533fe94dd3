"""Per-row parity of a qat_int8 student: the fake-quantized model vs its deployed int8 ONNX (the run artifact), SST-2 dev.

    PYTHONPATH=src python bench/parity_rows.py RUN_ARTIFACTS/student

Two ways of feeding the 872 dev rows to both sides: in batches of 64 padded to 64 tokens (one dynamic
activation scale per Linear per *batch*), and row by row at each row's own length (what
distilkit.measure.parity does). For each: the per-row max |logit diff| quantiles, the rows over 5 % and
2 % of the max |logit|, rows within 1e-5; then the five worst batched rows and their row-by-row difference.
"""
import sys, torch
from pathlib import Path
from transformers import AutoTokenizer
from distilkit.export.onnx import ort_logits, ort_session
from distilkit.prune import load_pruned
from distilkit.quantize import QATInt8Quantizer
from distilkit.measure import parity
torch.set_num_threads(2)
art = Path(sys.argv[1])
tok = AutoTokenizer.from_pretrained(art)
rows = [l.split(" ", 1) for l in (Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "sst2" / "dev.txt").read_text().splitlines()]
enc = tok([r[1] for r in rows], padding="max_length", truncation=True, max_length=64, return_tensors="pt")
inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
q = QATInt8Quantizer(); ref = q.convert(q.prepare(load_pruned(art).eval())).reference.eval()
session = ort_session(art / "student.int8.onnx")
batches = [{k: v[i:i + 64] for k, v in inputs.items()} for i in range(0, len(rows), 64)]
with torch.inference_mode():
    batched = (torch.cat([ref(**b).logits for b in batches]), torch.cat([torch.from_numpy(ort_logits(session, **b)) for b in batches]))
per_row = (parity.torch_logits(ref, inputs), parity.onnx_logits(art / "student.int8.onnx", inputs))
scale = float(per_row[0].abs().max())
diffs = {}
for name, (t, o) in [("batches of 64, padded", batched), ("row by row, own length", per_row)]:
    d = diffs[name] = (t - o).abs().max(1).values
    qs = torch.quantile(d, torch.tensor([0.5, 0.9, 0.99, 1.0]))
    print(f"{name}: max|logit| {float(t.abs().max()):.4f}; per-row max diff p50/p90/p99/max", [f"{x:.4f}" for x in qs.tolist()],
          f"= {float(d.max()) / scale:.2%} of max|logit|; rows over 5 %: {int((d > 0.05 * scale).sum())}, over 2 %: "
          f"{int((d > 0.02 * scale).sum())}, within 1e-5: {int((d <= 1e-5).sum())}/{len(d)};",
          f"top-1 agreement {float((t.argmax(1) == o.argmax(1)).float().mean()):.4f}")
for i in diffs["batches of 64, padded"].argsort(descending=True)[:5].tolist():
    print(f"row {i} (len {int(enc['attention_mask'][i].sum())}): batched diff {float(diffs['batches of 64, padded'][i]):.4f} "
          f"(torch {[round(x, 3) for x in batched[0][i].tolist()]}, onnx {[round(x, 3) for x in batched[1][i].tolist()]}); "
          f"row by row {float(diffs['row by row, own length'][i]):.4f}")
