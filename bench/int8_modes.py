"""Benchmark: onnxruntime int8 modes for the 3-layer MiniLM student: fp32 vs dynamic vs static QDQ.

    PYTHONPATH=src python bench/int8_modes.py [--rounds 5] [--threads 2]

The student is all-MiniLM-L6-v2 with encoder layers 0, 2, 4 copied (random classifier head, which
does not change the cost). Models, all from the same fp32 export, all with int8 word embeddings
except fp32:

* ``fp32``: the export itself;
* ``dynamic u8w``: the deployed path of ``quantizer=qat_int8|ptq_dynamic`` today
  (:func:`distilkit.quantize.int8.quantize_onnx_int8`: ``DynamicQuantizeLinear`` + ``MatMulInteger``,
  per-channel symmetric weights stored as uint8 with zero point 128);
* ``dynamic s8w reduce_range``: the same with ``quantizer.reduce_range=true`` (7-bit weights stored as
  int8: MLAS's uint8 x int8 kernel, exact because a pair of products can no longer saturate int16);
* ``static QDQ s8w`` / ``static QDQ s8w reduce_range`` / ``static QDQ u8w``: ``quantize_static``
  (QDQ format, per-tensor uint8 activations with MinMax-calibrated scales on 256 SST-2 training
  sentences, per-channel symmetric weights as int8, int8 with 7-bit range, or uint8 with zero point 128);
* ``fp32 fused`` / ``dynamic s8w reduce_range fused``: what ``export.fuse=true`` deploys: the export with
  each attention block as one ``MultiHeadAttention`` node (:mod:`distilkit.export.attention`), quantized
  like the row without ``fused``, then onnxruntime's offline LayerNorm/GELU fusions
  (:mod:`distilkit.export.fuse`). The speed-up column of a fused row is against ``fp32 fused``: equal
  graph optimizations on both sides.

Latency: one process, all sessions built first (2 intra-op threads, ``allow_spinning=0``, all graph
optimizations), then timed interleaved: in each round every model runs its b1 and b32 calls in
turn; p50 over all rounds. Error: max |logit difference| on 256 SST-2 dev rows (batches of 64,
padded to 64 tokens) against fp32, and, for QDQ models, against the same file run with graph
optimizations off (each ``QuantizeLinear``/``DequantizeLinear`` computed as written and an fp32
``MatMul``: the exact simulation of what the fused int8 kernels should compute).

Writes ``bench/results/int8_modes.{md,json}`` (``--name``: another name, e.g. per CPU kind). Needs ../shared/data/sst2 and ../shared/models/all-MiniLM-L6-v2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from transformers import AutoTokenizer, BertForSequenceClassification

from distilkit.export.fuse import fuse_onnx
from distilkit.export.onnx import export_onnx
from distilkit.models.student import copy_layers
from distilkit.measure.session import cpu_description
from distilkit.quantize.int8 import int8_embedding_nodes, quantize_onnx_int8
from distilkit.quantize.onnx_graph import load_for_quantization, quantize_word_embedding, quiet_ort_logging

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
RESULTS = ROOT / "bench" / "results"
SEQ = 64
KEEP = ("classifier",)


def session(path: Path, threads: int, optimize: bool = True) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def sst2(split: str, n: int, tokenizer) -> dict[str, np.ndarray]:
    lines = (SHARED / "data" / "sst2" / f"{split}.txt").read_text().splitlines()[:n]
    texts = [line.split(" ", 1)[1] for line in lines]
    enc = tokenizer(texts, padding="max_length", truncation=True, max_length=SEQ, return_tensors="np")
    return {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64)}


class Reader(CalibrationDataReader):
    def __init__(self, inputs: dict[str, np.ndarray], batch: int = 64):
        n = len(inputs["input_ids"])
        self.batches = iter([{k: v[i:i + batch] for k, v in inputs.items()} for i in range(0, n, batch)])

    def get_next(self):
        return next(self.batches, None)


def static_qdq(fp32: Path, out: Path, calibration: dict[str, np.ndarray], weight_type: QuantType, reduce_range: bool) -> Path:
    model, nodes = load_for_quantization(fp32, KEEP)
    quantize_word_embedding(model, KEEP, int8_embedding_nodes)
    with quiet_ort_logging():
        quantize_static(model, out, Reader(calibration), quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul"],
                        nodes_to_quantize=nodes, per_channel=True, reduce_range=reduce_range,
                        activation_type=QuantType.QUInt8, weight_type=weight_type, calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"WeightSymmetric": True, "MatMulConstBOnly": True})
    return out


def predict(sess: ort.InferenceSession, inputs: dict[str, np.ndarray], batch: int = 64) -> np.ndarray:
    n = len(inputs["input_ids"])
    return np.concatenate([sess.run(["logits"], {k: v[i:i + batch] for k, v in inputs.items()})[0] for i in range(0, n, batch)])


def fused_ops(path: Path, threads: int) -> dict[str, int]:
    """Op types of the optimized graph onnxruntime runs (to see which int8 kernels the QDQ nodes became)."""
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(Path(tmp) / "opt.onnx")
        options.intra_op_num_threads = threads
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        counts = Counter(n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node)
    keep = ("MatMulInteger", "DynamicQuantizeLinear", "QLinearMatMul", "MatMulIntegerToFloat", "DynamicQuantizeMatMul",
            "QuantizeLinear", "DequantizeLinear", "MatMul", "FusedMatMul", "QAttention", "Attention", "MultiHeadAttention")
    return {k: counts[k] for k in keep if counts[k]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--b1-calls", type=int, default=40, help="timed b1 calls per model per round")
    parser.add_argument("--b32-calls", type=int, default=6, help="timed b32 calls per model per round")
    parser.add_argument("--name", default="int8_modes", help="results files bench/results/NAME.{md,json} (one per CPU kind: "
                        "the AVX2-only host's are int8_modes, an AVX-512 VNNI host's int8_modes_vnni)")
    args = parser.parse_args()
    torch.manual_seed(0)
    minilm = SHARED / "models" / "all-MiniLM-L6-v2"
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    student = copy_layers(BertForSequenceClassification.from_pretrained(minilm, num_labels=2), [0, 2, 4]).eval()
    calibration, dev = sst2("train", 256, tokenizer), sst2("dev", 256, tokenizer)
    tmp = Path(tempfile.mkdtemp())
    fp32 = export_onnx(student, tmp / "fp32.onnx", SEQ)
    models = {
        "fp32": fp32,
        "dynamic u8w": quantize_onnx_int8(fp32, tmp / "dynamic.onnx", KEEP),
        "dynamic s8w reduce_range": quantize_onnx_int8(fp32, tmp / "dynamic_rr.onnx", KEEP, reduce_range=True),
        "static QDQ s8w": static_qdq(fp32, tmp / "qdq_s8.onnx", calibration, QuantType.QInt8, False),
        "static QDQ s8w reduce_range": static_qdq(fp32, tmp / "qdq_s8_rr.onnx", calibration, QuantType.QInt8, True),
        "static QDQ u8w": static_qdq(fp32, tmp / "qdq_u8.onnx", calibration, QuantType.QUInt8, False),
    }
    fp32_mha = export_onnx(student, tmp / "fp32_mha.onnx", SEQ, fuse_attention=True)
    models["fp32 fused"] = fuse_onnx(fp32_mha)
    models["dynamic s8w reduce_range fused"] = fuse_onnx(quantize_onnx_int8(fp32_mha, tmp / "dynamic_rr_mha.onnx", KEEP, reduce_range=True))
    baseline = {name: "fp32 fused" if name.endswith(" fused") else "fp32" for name in models}
    sessions = {name: session(path, args.threads) for name, path in models.items()}
    reference = predict(sessions["fp32"], dev)  # every row's error is against the plain fp32 export
    rows = {}
    for name, path in models.items():
        logits = predict(sessions[name], dev)
        row = {"ops": fused_ops(path, args.threads), "size_mb": path.stat().st_size / 1e6,
               "max_abs_diff_vs_fp32": float(np.abs(logits - reference).max())}
        if name.startswith("static"):
            simulated = predict(session(path, args.threads, optimize=False), dev)
            row["max_abs_diff_vs_exact_simulation"] = float(np.abs(logits - simulated).max())
            row["top1_agreement_vs_exact_simulation"] = float((logits.argmax(1) == simulated.argmax(1)).mean())
        rows[name] = row
    gen = np.random.default_rng(0)
    feeds = {}
    for b in (1, 32):
        ids = gen.integers(1000, tokenizer.vocab_size, (b, SEQ), dtype=np.int64)
        feeds[b] = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    calls = {1: args.b1_calls, 32: args.b32_calls}
    times = {(name, b): [] for name in models for b in (1, 32)}
    for name, sess in sessions.items():  # warm-up
        for b in (1, 32):
            for _ in range(3):
                sess.run(None, feeds[b])
    for _ in range(args.rounds):
        for name, sess in sessions.items():
            for b in (1, 32):
                for _ in range(calls[b]):
                    start = time.perf_counter()
                    sess.run(None, feeds[b])
                    times[(name, b)].append((time.perf_counter() - start) * 1000)
    for name in models:
        for b in (1, 32):
            rows[name][f"b{b}_p50_ms"] = statistics.median(times[(name, b)])
            rows[name][f"b{b}_speedup_vs_fp32"] = statistics.median(times[(baseline[name], b)]) / rows[name][f"b{b}_p50_ms"]
        rows[name]["speedup_baseline"] = baseline[name]
    result = {"command": "PYTHONPATH=src python bench/int8_modes.py " + " ".join(
                  f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
              "machine": f"{cpu_description()}; onnxruntime {ort.__version__}",
              "seq_len": SEQ, "threads": args.threads, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    header = "| model | ort b1 ms | b1 x fp32 (same fusion) | ort b32 ms | b32 x fp32 (same fusion) | MB | max abs logit diff vs fp32 | vs exact Q/DQ simulation | kernels |"
    lines = [f"`{result['command']}` ({result['machine']}, seq {SEQ}, {args.threads} threads, interleaved, p50)", "",
             header, "|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        sim = r.get("max_abs_diff_vs_exact_simulation")
        lines.append(f"| {name} | {r['b1_p50_ms']:.2f} | {r['b1_speedup_vs_fp32']:.2f} | {r['b32_p50_ms']:.1f} | "
                     f"{r['b32_speedup_vs_fp32']:.2f} | {r['size_mb']:.1f} | {r['max_abs_diff_vs_fp32']:.4f} | "
                     f"{'-' if sim is None else f'{sim:.4f}'} | {', '.join(f'{k} {v}' for k, v in r['ops'].items())} |")
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
