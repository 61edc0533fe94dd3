"""Parity of every quantizer's deploy path on one trained student directory (a run's `student` artifact), SST-2 dev.

    PYTHONPATH=src python bench/parity_quantizers.py DIR

Each quantizer prepares the trained weights as in training (QAT: fake quantization; PTQ: its emulation),
converts, quantizes the fp32 export, and the parity reference and the deployable ONNX model are compared
on all 872 dev rows, each row alone at its own length, with distilkit.measure.parity. A last row compares the
qat_int8 ONNX file with the same int8 weights but fp32 activations: what a deployment that quantizes
activations differently from training would score. (``ptq_static`` is checked per run, from its
calibration on training batches: ``bench/compress_sst2.py --reparity``.) Prints the table and writes bench/results/parity_quantizers.md.
"""
import sys, tempfile, torch
from pathlib import Path
from torch import nn
from transformers import AutoTokenizer
from distilkit.prune import load_pruned
from distilkit.quantize import NoQuantizer, PTQDynamicQuantizer, QATInt8Quantizer, QATInt4Quantizer
from distilkit.quantize.qat import QATLinear
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
acc = lambda z: float((z.argmax(1) == labels).float().mean())
lines = [f"Student: {art} ({len(rows)} SST-2 dev rows, each alone at its own length; torch 1 thread).", "",
         "| quantizer | max abs logit diff | max rel to max logit | p99 row rel | top-1 agreement | checked row | tolerance (rel) | verdict | ONNX dev acc | reference torch dev acc |",
         "|---|---|---|---|---|---|---|---|---|---|"]
print("\n".join(lines), flush=True)
deployed = {}
for name, q in [("none", NoQuantizer()), ("ptq_dynamic", PTQDynamicQuantizer()), ("qat_int8", QATInt8Quantizer()),
                ("qat_int4", QATInt4Quantizer())]:
    model = q.prepare(load_pruned(art).eval())  # QAT: the trained weights with the quantizer's fake quant, as in training
    c = q.convert(model)
    dep = deployed[name] = q.quantize_onnx(fp32, d / f"{name}.onnx") or fp32
    t, o = parity.torch_logits(c.reference, inputs), parity.onnx_logits(dep, inputs)
    m = parity.parity_metrics(t, o, c.parity_key)
    lines.append(f"| {name} | {m[parity.MAX_ABS]:.2e} | {m[parity.REL]:.4f} | {m[parity.P99_REL]:.4f} | {m[parity.TOP1]:.4f} | {'max' if m[parity.QUANTILE] == 1 else 'p99'} | {parity.RTOL[c.parity_key]:g} | {'pass' if m[parity.PASS] else 'FAIL'} | {acc(o):.4f} | {acc(t):.4f} |")
    print(lines[-1], flush=True)
q = QATInt8Quantizer(); wrong = q.prepare(load_pruned(art).eval())
for module in wrong.modules():
    if isinstance(module, QATLinear):
        module.input_fq = nn.Identity()  # int8 weights, fp32 activations: not what the ONNX file computes
t, o = parity.torch_logits(wrong, inputs), parity.onnx_logits(deployed["qat_int8"], inputs)
m = parity.parity_metrics(t, o, "int8")
lines.append(f"| qat_int8 ONNX vs fp32 activations (wrong emulation) | {m[parity.MAX_ABS]:.2e} | {m[parity.REL]:.4f} | {m[parity.P99_REL]:.4f} | {m[parity.TOP1]:.4f} | p99 | {parity.RTOL['int8']:g} | {'pass' if m[parity.PASS] else 'FAIL'} | {acc(o):.4f} | {acc(t):.4f} |")
print(lines[-1], flush=True)
out = Path(__file__).resolve().parent / "results" / "parity_quantizers.md"
out.write_text("\n".join(lines) + f"\n\nCommand: `PYTHONPATH=src python bench/parity_quantizers.py {art}`\n")
