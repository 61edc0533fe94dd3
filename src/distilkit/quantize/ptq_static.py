"""``quantizer=ptq_static``: post-training *static* int8 (QDQ) with activation scales calibrated on training batches.

No training changes. While the student trains, ``prepare``'s forward pre-hook keeps the inputs of
the first ``calibration_batches`` training batches (token ids and masks only: training text, never
dev or test). After training, ``quantize_onnx`` runs onnxruntime's ``quantize_static`` on the fp32
export: QDQ format, MinMax calibration over those batches, uint8 activations with one fixed scale
per tensor, per-channel symmetric uint8 weights (zero point 128; the uint8 x uint8 kernels, as in
:mod:`distilkit.quantize.int8`), every Linear not in ``keep_fp32``; the word-embedding table int8
per row as in ``ptq_dynamic``. onnxruntime turns the Q/DQ pairs into ``QLinearMatMul`` kernels.

Honest limits (``bench/results/int8_modes.md``, 3-layer MiniLM student, AVX2 without VNNI): these
kernels were the fastest int8 path (static QDQ u8w 3.4x fp32 at batch 1 vs 1.1x for dynamic), but
they do not reproduce their own Q/DQ simulation (logit differences as large as the quantization
error), so nothing in training emulates them: this is PTQ only, not "trained as deployed". The
parity reference is the trained float model itself, so ``deploy/parity_*`` measures quantization
error and kernel error together, against the ``int8_static`` tolerance of
:data:`distilkit.measure.parity.RTOL`. torch has no matching static kernel here: the ``deploy``
torch role is the float model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch import nn

from distilkit.errors import ConfigError, is_int
from distilkit.export.onnx import atomic_output
from distilkit.quantize.base import Converted, Quantizer
from distilkit.quantize.int8 import int8_embedding_nodes
from distilkit.quantize.onnx_graph import ORT_QUANTIZE_OPTIONS, load_for_quantization, quantize_word_embedding, quiet_ort_logging
from distilkit.quantize.targets import check_keep_fp32, quantized_linears


class _Batches:
    """onnxruntime ``CalibrationDataReader`` over recorded batches."""

    def __init__(self, batches: list[dict[str, np.ndarray]]):
        self.items = iter(batches)

    def get_next(self):
        return next(self.items, None)


class PTQStaticQuantizer(Quantizer):
    """Static int8 QDQ after training; ``calibration_batches`` training batches calibrate the activation ranges."""

    calibrates_in_fit = True  # its deployable ONNX needs recorded training batches: the budget precheck (untrained) skips it

    def __init__(self, keep_fp32: Sequence[str] = ("classifier",), calibration_batches: int = 16):
        self.keep_fp32 = check_keep_fp32(keep_fp32)
        if not is_int(calibration_batches) or calibration_batches < 1:
            raise ConfigError("calibration_batches", f"must be an integer >= 1, got {calibration_batches!r}")
        self.calibration_batches = calibration_batches
        self.calibration: list[dict[str, np.ndarray]] = []
        self._hook = None

    def check(self, model: nn.Module) -> None:
        quantized_linears(model, self.keep_fp32)

    def _record(self, module: nn.Module, args, kwargs) -> None:
        if module.training and len(self.calibration) < self.calibration_batches and "input_ids" in kwargs:
            self.calibration.append({k: kwargs[k].detach().cpu().numpy().astype(np.int64) for k in ("input_ids", "attention_mask")})

    def prepare(self, model: nn.Module) -> nn.Module:
        self.check(model)
        if self._hook is None:
            self._hook = model.register_forward_pre_hook(self._record, with_kwargs=True)
        return model

    def convert(self, model: nn.Module) -> Converted:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        return Converted(float_model=model, torch_model=model, precision="int8", reference=model, parity_key="int8_static")

    def quantize_onnx(self, fp32_onnx: Path, out_path: Path) -> Path:
        if not self.calibration:
            raise ConfigError("calibration_batches", "no training batch was recorded for calibration (did the student train?)")
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        model, nodes = load_for_quantization(fp32_onnx, self.keep_fp32)
        quantize_word_embedding(model, self.keep_fp32, int8_embedding_nodes)
        with atomic_output(out_path) as tmp, quiet_ort_logging():
            quantize_static(
                model, tmp, _Batches(self.calibration), quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul"],
                nodes_to_quantize=nodes, per_channel=True, reduce_range=False, activation_type=QuantType.QUInt8,
                weight_type=QuantType.QUInt8, calibrate_method=CalibrationMethod.MinMax,
                extra_options=dict(ORT_QUANTIZE_OPTIONS),
            )
        return Path(out_path)
