"""Short logs: library chatter (Lightning tips, HF progress bars, MLflow migrations) down to warnings."""

from __future__ import annotations

import logging
import os
import warnings


def quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "mlflow", "alembic", "httpx", "datasets"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("onnx_ir", "onnxscript", "torch.onnx", "torch.export", "torch._dynamo"):  # exporter chatter
        logging.getLogger(name).setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
