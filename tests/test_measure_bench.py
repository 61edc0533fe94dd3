"""The compression benchmark's final timing session and table: every latency and speed-up cell comes from one
session, so each printed speed-up is the teacher's printed ms over the row's printed ms."""

from __future__ import annotations

import importlib.util

import torch

from conftest import ROOT
from distilkit.measure.report import MeasureSpec
from test_measure_session import tiny_onnx

spec = importlib.util.spec_from_file_location("compress_sst2", ROOT / "bench" / "compress_sst2.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def cells_of(markdown: str) -> dict[str, dict[str, str]]:
    header, _, *rows = markdown.splitlines()
    names = [h.strip() for h in header.strip("|").split("|")]
    return {cells[0]: dict(zip(names, cells)) for cells in ([c.strip() for c in row.strip("|").split("|")] for row in rows)}


def test_final_session_speedups_are_ratios_of_printed_cells(tmp_path):
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(3, 17, (40,), generator=gen)
    dev = {"input_ids": torch.randint(5, 100, (40, 16), generator=gen), "attention_mask": (torch.arange(16) < lengths[:, None]).long()}
    rows = {"qat_int8": tiny_onnx(tmp_path / "a.onnx"), "heads_50": tiny_onnx(tmp_path / "b.onnx")}
    measure = MeasureSpec(threads=1, batch_sizes=list(bench.BATCH_SIZES), warmup=1, min_samples=5, min_time_s=0)
    cells, threads = bench.retime(tiny_onnx(tmp_path / "t.onnx"), rows, measure, 16, 100, dev)
    assert threads == {"onnxruntime": 1} and set(cells) == {"teacher", *rows}
    results = {name: {**c, "deploy/onnx_size_mb": 1.0} for name, c in cells.items()}
    printed = cells_of(bench.table(results))
    ratio_columns = [(h, k) for h, k, _ in bench.COLUMNS if "x vs teacher" in h and k.startswith(bench.SESSION)]
    assert len(ratio_columns) == 4  # b1, b32 at full and real length
    for header, key in ratio_columns:
        ms_header = header.replace(" x vs teacher", " ms")
        ms_key = key.replace("speedup", "latency").replace("_vs_teacher", "_p50_ms")
        for name in rows:
            assert results[name][key] == results["teacher"][ms_key] / results[name][ms_key]  # the same session's p50s
            assert printed[name][header] == f"{results[name][key]:.2f}"
            assert printed[name][ms_header] != "-" and printed["teacher"][header] == "1.00"
        assert results[name][ms_key.replace("_p50_ms", "_samples")] >= 5


def _frontier_screen():
    spec = importlib.util.spec_from_file_location("frontier_screen", ROOT / "bench" / "frontier_screen.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_frontier_screen_variant_replaces_base_keys_and_group_options():
    screen = _frontier_screen()
    base = ["loss=intermediate", "quantizer=qat_int8", "quantizer.reduce_range=true", "+trial=light", "seed=0", "vocab=train"]
    assert screen.merge(base, ["quantizer=none"]) == ["loss=intermediate", "+trial=light", "seed=0", "vocab=train", "quantizer=none"]
    assert screen.merge(base, ["quantizer.reduce_range=false", "seed=3"]) == [
        "loss=intermediate", "quantizer=qat_int8", "+trial=light", "vocab=train", "quantizer.reduce_range=false", "seed=3"]
    assert screen.merge(base, ["vocab.extra_tokens=10"]) == [*base, "vocab.extra_tokens=10"]
    # every named variant composes on the frontier command into one value per key
    for variants in screen.SETS.values():
        for extra in variants.values():
            merged = screen.merge(screen.FRONTIER, extra.split())
            keys = [screen.key_of(t) for t in merged]
            assert len(keys) == len(set(keys)), extra


def test_frontier_screen_report_counts_a_repeated_run_once(tmp_path):
    screen = _frontier_screen()
    tsv = tmp_path / "s.tsv"
    row = lambda name, seed, dev, test: "\t".join([name, str(seed), "0", "60", "0.8681", "0.8841", dev, dev, test, "FINISHED", ""])
    tsv.write_text("\n".join(["\t".join(screen.COLUMNS), row("base", 0, "0.8300", "0.8200"), row("base", 1, "0.8400", "0.8300"),
                              row("base", 0, "0.8300", "0.8200"), row("x", 0, "0.8000", "0.8100")]) + "\n")
    md = screen.report(tsv)
    assert "| base | (none) | 0,1 | 0.8300 / 0.8400 | 0.8350 ± 0.0071 | 96.2 % |" in md
    assert "| x | (none) | 0 |" in md and "1 runs were repeated" in md and "1 of them gave the same" in md


def test_frontier_screen_report_gives_held_out_rows_where_runs_have_them(tmp_path):
    """Lines without the held-out column (older files) still parse; a variant's held-out mean and its paired
    difference with base come from the lines that have it."""
    screen = _frontier_screen()
    tsv = tmp_path / "s.tsv"
    row = lambda name, seed, dev, *held: "\t".join([name, str(seed), "0", "60", "0.8784", "0.8929", dev, dev, "0.8200", "FINISHED", "", *held])
    tsv.write_text("\n".join(["\t".join(screen.COLUMNS), row("base", 0, "0.8300"), row("base", 1, "0.8400", "0.8200"),
                              row("base", 2, "0.8300", "0.8300"), row("x", 1, "0.8300", "0.8400"), row("x", 2, "0.8300", "0.8400")]) + "\n")
    md = screen.report(tsv)
    assert "| base | (none) | 0,1,2 |" in md and "| 0.8250 ± 0.0071 (2 seeds) |" in md
    assert "| x | (none) | 1,2 |" in md and "| 0.8400 ± 0.0000 |" in md
    assert "| x | 1,2 | -0.50 ± 0.50 | +0.00 ± 0.00 | +1.50 ± 0.50 |" in md  # dev, test, held-out


def test_op_profile_sums_kernel_time_by_operator_type(tmp_path):
    spec = importlib.util.spec_from_file_location("op_profile", ROOT / "bench" / "op_profile.py")
    profile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(profile)
    per_op = profile.profile(tiny_onnx(tmp_path / "tiny.onnx"), threads=1, calls=20, batch=2, tmp=tmp_path)
    ops = {op for op in per_op if not op.startswith("(")}
    assert ops <= {"Mul", "ReduceSum", "Concat", "Cast"} and {"Mul", "ReduceSum"} <= ops  # the graph's own nodes, nothing else
    assert all(v > 0 for v in per_op.values())
    assert per_op["(run total)"] >= sum(per_op[op] for op in ops)  # a run holds its nodes
    assert [profile.group_of(op) for op in ("MatMulIntegerToFloat", "DynamicQuantizeLinear", "MultiHeadAttention", "SkipLayerNormalization")] == [
        "GEMM", "quantize", "attention", "other"]
