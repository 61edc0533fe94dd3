"""Parity of every quantizer's deploy path on one trained student directory (a run's `student` artifact), SST-2 dev.

    PYTHONPATH=src python bench/parity_quantizers.py DIR

Each quantizer prepares the trained weights as in training (QAT: fake quantization; PTQ: its emulation),
converts, quantizes the fp32 export, and the parity reference and the deployable ONNX model are compared
on all 872 dev rows (padded to 64 tokens, batches of 64) with distilkit.measure.parity. Prints a table.
"""
import sys, tempfile, torch
from pathlib import Path
from transformers import AutoTokenizer
from distilkit.prune import load_pruned
from distilkit.quantize import NoQuantizer, PTQDynamicQuantizer, QATInt8Quantizer, QATInt4Quantizer
from distilkit.export.onnx import export_onnx
from distilkit.measure import parity
torch.set_num_threads(1)
art = Path(sys.argv[1])
tok = AutoTokenizer.from_pretrained(art)
rows = [l.split(" ", 1) for l in (Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "sst2" / "dev.txt").read_text().splitlines()]
labels = torch.tensor([int(r[0]) for r in rows])
enc = tok([r[1] for r in rows], padding="max_length", truncation=True, max_length=64, return_tensors="pt")
inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
d = Path(tempfile.mkdtemp())
fp32 = export_onnx(load_pruned(art).eval(), d / "fp32.onnx", 64)
print("| quantizer | max abs logit diff | rel to max logit | top-1 agreement | tolerance | verdict | ONNX dev acc | reference torch dev acc |")
print("|---|---|---|---|---|---|---|---|")
for name, q in [("none", NoQuantizer()), ("ptq_dynamic", PTQDynamicQuantizer()), ("qat_int8", QATInt8Quantizer()), ("qat_int4", QATInt4Quantizer())]:
    model = q.prepare(load_pruned(art).eval())  # QAT: the trained weights with the quantizer's fake quant, as in training
    c = q.convert(model)
    dep = q.quantize_onnx(fp32, d / f"{name}.onnx") or fp32
    t, o = parity.torch_logits(c.reference, inputs), parity.onnx_logits(dep, inputs)
    m = parity.parity_metrics(t, o, c.precision)
    acc = lambda z: float((z.argmax(1) == labels).float().mean())
    print(f"| {name} | {m[parity.MAX_ABS]:.2e} | {m[parity.REL]:.4f} | {m[parity.TOP1]:.4f} | {m[parity.TOLERANCE]:.2e} | {'pass' if m[parity.PASS] else 'FAIL'} | {acc(o):.4f} | {acc(t):.4f} |", flush=True)
