"""Quantizers (the ``quantizer`` config group): none, post-training dynamic int8, int8 QAT, int4 QAT."""

from distilkit.quantize.base import Converted, Quantizer
from distilkit.quantize.none import NoQuantizer
from distilkit.quantize.ptq_dynamic import PTQDynamicQuantizer
from distilkit.quantize.ptq_static import PTQStaticQuantizer
from distilkit.quantize.qat_int4 import QATInt4Quantizer
from distilkit.quantize.qat_int8 import QATInt8Quantizer

__all__ = ["Converted", "Quantizer", "NoQuantizer", "PTQDynamicQuantizer", "PTQStaticQuantizer", "QATInt8Quantizer", "QATInt4Quantizer"]
