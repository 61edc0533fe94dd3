"""Deployment parity: does the deployable ONNX model compute what the trained model computes?

Both sides run every dev row alone, at its own length (:func:`rows`: batch 1, padding dropped, as a
single request is served): the torch side is the quantizer's parity reference (``Converted.reference``:
the trained model, fake quantization and pruning masks included; for PTQ the trained model with
the deployment quantizer emulated), the ONNX side the deployable file in onnxruntime. Metrics:

* ``deploy/parity_max_abs_logit_diff``: per row the max over classes of ``|torch - onnx|``, max over rows;
* ``deploy/parity_rel_logit_diff``: that, divided by the largest ``|logit|`` of the trained model;
* ``deploy/parity_p99_rel_logit_diff``: the 99th-percentile row's difference, divided likewise;
* ``deploy/parity_top1_agreement``: fraction of rows with the same arg-max;
* ``deploy/parity_checked_quantile``: which row the bound applies to (:data:`CHECKED_QUANTILE`: 1 = the max row);
* ``deploy/parity_tolerance``: the bound, ``RTOL[precision] * max |logit|``;
* ``deploy/parity_pass``: 1 if the checked row is within the bound and ``top1 >= MIN_TOP1_AGREEMENT``, else 0.

The run is tagged ``deploy.parity=pass|fail`` (:func:`parity_tags`), a failure is logged as a
warning and the printed summary says so (:func:`parity_summary`).

Why one row at a time: dynamic int8 quantizes each Linear's input with one scale for the whole
tensor, i.e. for the whole batch, padding positions included. Batched, a float difference of one
ulp in *any* row (torch and onnxruntime sum in different orders) can move that batch's min or max,
hence the scale of every row in it, and every row is then rounded afresh: a second draw of the
quantization noise, not a different quantizer. Measured on the SST-2 3-layer student + ``qat_int8``
(``bench/parity_rows.py``): in batches of 64 padded to 64 tokens the worst row (817) differed by 0.18
logits (5.75 % of the largest); alone it differs by 0.0000, as do the next four worst batched rows.
Row by row, 646 of 872 rows agree within 1e-5.

Tolerances are relative to the logits' scale (:data:`RTOL`, one per deployed precision), as the
differences scale with the network's activations. fp32: the same computation up to float summation
order and onnxruntime's fused kernels (LayerNorm, GELU, attention): measured 5.4e-6 on logits up to
3.1 (SST-2 student), so ``1e-4`` relative, on every row. int8/int4: same weights, same activation
quantizer, but now and then a one-ulp float difference (LayerNorm, softmax, GELU are computed in a
different order) moves an activation element across a rounding boundary, and the flipped code changes
later layers' inputs, which flip more codes: in most rows nothing flips, in a few the cascade is large.
A deployment that computes something else (e.g. other activation quantization) moves most rows. So
the low-bit verdict is on the 99th-percentile row, and the max is reported beside it. Measured on the
SST-2 distil student, every quantizer's deploy path, each row alone (``bench/results/parity_quantizers.md``):
``qat_int8``/``ptq_dynamic`` p99 1.24 % (max 6.75 %), ``qat_int4`` p99 0.46 % (max 0.84 %); the same
int8 ONNX file against the trained weights with fp32 activations (the wrong emulation) p99 9.64 % (max
13.2 %, top-1 99.2 %). ``RTOL = 0.05`` is 4x the correct deployments' p99 and half the wrong one's.

``int8_static`` (``quantizer=ptq_static``, static QDQ): nothing emulates onnxruntime's static kernels
(they don't reproduce their own Q/DQ simulation on AVX2, ``bench/results/int8_modes.md``), so the
reference is the trained float model and the difference is the quantization error plus the kernel
error: ``bench/results/int8_modes.md`` measured 0.016 against fp32 for static QDQ u8w on the SST-2
student, and a deployment quantizing activations differently from training was 13.2 % off;
``0.10`` flags the grossly wrong (a broken calibration, wrong ids) while accepting PTQ's own error.
It is a plausibility bound, not the exactness check the other precisions get.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import torch

from distilkit.export.onnx import ort_logits, ort_session

log = logging.getLogger(__name__)

# max |logit difference| / max |trained logit|, per deployed precision (int8_static: quantizer=ptq_static, see below)
RTOL = {"fp32": 1e-4, "int8": 0.05, "int4": 0.05, "int8_static": 0.10}
# which rows the bound applies to: 1.0 = every row (the max), 0.99 = the 99th-percentile row (see above)
CHECKED_QUANTILE = {"fp32": 1.0, "int8": 0.99, "int4": 0.99, "int8_static": 1.0}
MIN_TOP1_AGREEMENT = 0.99  # a tie broken differently may flip a row; more than 1 % of rows is a different model
MAX_ABS, REL, P99_REL, TOP1, QUANTILE, TOLERANCE, PASS = (
    f"deploy/parity_{name}" for name in ("max_abs_logit_diff", "rel_logit_diff", "p99_rel_logit_diff", "top1_agreement",
                                         "checked_quantile", "tolerance", "pass"))
TAG = "deploy.parity"


def rows(inputs: dict[str, torch.Tensor]) -> Iterator[dict[str, torch.Tensor]]:
    """Each row of ``inputs`` (``input_ids``, ``attention_mask``, ``[rows, seq]``) alone, ``[1, its length]``,
    its padding (mask 0) dropped."""
    for ids, mask in zip(inputs["input_ids"], inputs["attention_mask"]):
        keep = mask.bool()
        yield {"input_ids": ids[keep][None], "attention_mask": mask[keep][None]}


@torch.inference_mode()
def torch_logits(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits of ``model`` (eval mode, on its device) for each of :func:`rows` of ``inputs``; float32 on CPU."""
    model.eval()
    device = next(model.parameters()).device
    return torch.cat([model(**{k: v.to(device) for k, v in row.items()}).logits.float().cpu() for row in rows(inputs)])


def onnx_logits(path: Path, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits of the ONNX model at ``path`` in onnxruntime for each of :func:`rows` of ``inputs``."""
    session = ort_session(path)
    return torch.cat([torch.from_numpy(ort_logits(session, **row)) for row in rows(inputs)])


def parity_metrics(trained_logits: torch.Tensor, onnx_logits: torch.Tensor, precision: str) -> dict[str, float]:
    """Per row, the max |logit difference| over classes; over rows: the max (absolute, and relative to the largest
    trained |logit|), the 99th percentile (relative), top-1 agreement, the tolerance for ``precision`` (absolute, on
    the row statistic :data:`CHECKED_QUANTILE` names) and the verdict (1 pass, 0 fail)."""
    if trained_logits.shape != onnx_logits.shape:
        raise ValueError(f"logit shapes differ: trained {tuple(trained_logits.shape)}, onnx {tuple(onnx_logits.shape)}")
    trained_logits, onnx_logits = trained_logits.float(), onnx_logits.float()
    diff = (trained_logits - onnx_logits).abs().reshape(len(trained_logits), -1).amax(dim=1)
    diff = torch.where(torch.isfinite(diff), diff, torch.full_like(diff, float("inf")))
    max_abs = float(diff.max())
    scale = max(float(trained_logits.abs().max()), torch.finfo(torch.float32).tiny)
    quantile = lambda q: float(torch.quantile(diff.double(), q, interpolation="higher")) if torch.isfinite(diff).all() else float("inf")
    top1 = float((trained_logits.argmax(-1) == onnx_logits.argmax(-1)).float().mean())
    tolerance = RTOL[precision] * scale
    checked = quantile(CHECKED_QUANTILE[precision])
    ok = checked <= tolerance and top1 >= MIN_TOP1_AGREEMENT
    if not ok:
        log.warning("deployed ONNX does not reproduce the trained model: %s |logit diff| %.3g (tolerance %.3g = %g x max |logit|), "
                    "top-1 agreement %.4f (min %.2f)", _statistic(CHECKED_QUANTILE[precision]), checked, tolerance, RTOL[precision], top1,
                    MIN_TOP1_AGREEMENT)
    return {MAX_ABS: max_abs, REL: max_abs / scale, P99_REL: quantile(0.99) / scale, TOP1: top1,
            QUANTILE: CHECKED_QUANTILE[precision], TOLERANCE: tolerance, PASS: float(ok)}


def _statistic(quantile: float) -> str:
    return "max" if quantile == 1.0 else f"p{quantile * 100:g} row"


def parity_tags(metrics: dict[str, float]) -> dict[str, str]:
    """``{"deploy.parity": "pass" | "fail"}``, or ``{}`` if ``metrics`` has no parity verdict."""
    return {TAG: "pass" if metrics[PASS] else "fail"} if PASS in metrics else {}


def parity_summary(metrics: dict[str, float]) -> str:
    """One phrase for the printed summary, e.g. ``parity PASS (p99 row |dlogit| 0.80% <= 5.00% of max |logit|; max 2.51%, top-1 1.000)``."""
    if PASS not in metrics:
        return ""
    scale = metrics[MAX_ABS] / metrics[REL] if metrics[REL] else float("inf")
    bound = metrics[TOLERANCE] / scale
    quantile = metrics.get(QUANTILE, 1.0)
    checked = metrics[REL] if quantile == 1.0 else metrics[P99_REL]
    verdict, relation = ("PASS", "<=") if metrics[PASS] else ("FAIL", ">" if checked > bound else "<=")
    beside = f"max {_percent(metrics[REL])}" if quantile != 1.0 else f"{metrics[MAX_ABS]:.1e} abs"
    return (f"parity {verdict} ({_statistic(quantile)} |dlogit| {_percent(checked)} {relation} {_percent(bound)} of max |logit|; "
            f"{beside}, top-1 {metrics[TOP1]:.3f})")


def _percent(fraction: float) -> str:
    """``0.0251`` -> ``2.51%``; below 0.01 % in two significant digits (fp32 parity is ~1e-7), not ``0.00%``."""
    return f"{fraction:.2%}" if fraction == 0 or fraction >= 1e-4 else f"{fraction * 100:.1e}%"
