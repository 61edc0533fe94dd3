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
