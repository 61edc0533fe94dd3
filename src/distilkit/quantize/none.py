"""``quantizer=none``: keep the model in fp32."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from distilkit.quantize.base import Converted, Quantizer


class NoQuantizer(Quantizer):
    """Identity: no training changes, the float model is also the runtime model, no quantized ONNX."""

    def prepare(self, model: nn.Module) -> nn.Module:
        return model

    def convert(self, model: nn.Module) -> Converted:
        return Converted(float_model=model, torch_model=model, precision="fp32", reference=model)

    def quantize_onnx(self, fp32_onnx: Path, out_path: Path) -> Path | None:
        return None
