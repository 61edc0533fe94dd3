"""Parameter counts and sparse storage size of a float model (pruning masks applied).

``count_nonzero``: number of non-zero parameter entries, counting a ``torch.nn.utils.prune``
masked weight as ``weight_orig * weight_mask``.

``sparse_size_mb``: bytes to store the parameters when every 2-D parameter takes the smaller of
dense storage and CSR storage, in MiB (2**20 bytes). CSR = values (non-zeros, in the parameter's
dtype) + column indices (uint16 when the matrix has at most 65536 columns, else int32) + row
pointers (int32, rows + 1). Other parameters (biases, LayerNorm) count dense. Unpruned matrices
therefore count dense; with fp32 values and uint16 indices CSR pays off above 1/3 sparsity.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

BYTES_PER_MB = 2**20
UINT16_LIMIT = 2**16


def effective_parameters(model: nn.Module) -> Iterator[Tensor]:
    """Every parameter as used in the forward pass (pruning masks applied)."""
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            base = name.removesuffix("_orig")
            mask = getattr(module, base + "_mask", None) if name.endswith("_orig") else None
            yield param.detach() if mask is None else param.detach() * mask


def count_nonzero(model: nn.Module) -> int:
    """Number of non-zero parameter entries (masked weights count as zero)."""
    return sum(int(torch.count_nonzero(param)) for param in effective_parameters(model))


def _storage_bytes(param: Tensor) -> int:
    dense = param.numel() * param.element_size()
    if param.dim() != 2:
        return dense
    rows, cols = param.shape
    index_bytes = 2 if cols <= UINT16_LIMIT else 4
    csr = int(torch.count_nonzero(param)) * (param.element_size() + index_bytes) + (rows + 1) * 4
    return min(dense, csr)


def sparse_size_mb(model: nn.Module) -> float:
    """MiB to store the parameters with CSR for 2-D weights where it is smaller (see module docstring)."""
    return sum(_storage_bytes(param) for param in effective_parameters(model)) / BYTES_PER_MB
