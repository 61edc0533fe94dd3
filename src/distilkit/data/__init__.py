"""Text-classification data: sources (synthetic, SST-2, LABEL-SENTENCE files) and their DataModule."""

from distilkit.data.module import Example, TextClassificationData
from distilkit.data.sst2 import SST2Data
from distilkit.data.synthetic import SyntheticData
from distilkit.data.text_lines import TextLinesData

__all__ = ["Example", "TextClassificationData", "SyntheticData", "SST2Data", "TextLinesData"]
