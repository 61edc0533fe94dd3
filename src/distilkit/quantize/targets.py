"""Which ``nn.Linear`` modules a quantizer converts: all of them except those in ``keep_fp32``.

A ``keep_fp32`` entry is a module name or a prefix of module names: ``classifier`` keeps
``classifier``; ``bert.encoder.layer.0`` keeps every Linear of the first encoder layer. The same
rule selects nodes of the ONNX export through their module name scopes
(:func:`distilkit.quantize.onnx_graph.load_for_quantization`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence

from torch import nn

from distilkit.errors import ConfigError


def check_keep_fp32(keep_fp32: Sequence[str]) -> tuple[str, ...]:
    """Validate the ``keep_fp32`` option (a list of non-empty module names or prefixes)."""
    if isinstance(keep_fp32, str) or not isinstance(keep_fp32, Iterable):
        raise ConfigError("keep_fp32", f"must be a list of module names, got {keep_fp32!r}")
    names = tuple(keep_fp32)
    if not all(isinstance(name, str) and name for name in names):
        raise ConfigError("keep_fp32", f"must be a list of non-empty module names, got {list(names)!r}")
    return names


def is_kept(name: str, keep_fp32: Sequence[str]) -> bool:
    """Whether module ``name`` equals or lies below one of the ``keep_fp32`` entries."""
    return any(name == keep or name.startswith(keep + ".") for keep in keep_fp32)


def quantized_linears(model: nn.Module, keep_fp32: Sequence[str]) -> dict[str, nn.Linear]:
    """The Linear modules to quantize, by name; ``ConfigError`` for an entry matching no module."""
    names = [name for name, _ in model.named_modules() if name]
    linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    for keep in keep_fp32:
        if not any(is_kept(name, [keep]) for name in names):
            examples = ", ".join(dict.fromkeys(linears[-2:] + linears[:1]))
            raise ConfigError(
                "keep_fp32",
                f"{keep!r} matches no module of the model; use module names or prefixes such as {examples}",
            )
    targets = {name: module for name, module in model.named_modules()
               if isinstance(module, nn.Linear) and not is_kept(name, keep_fp32)}
    if not targets:
        raise ConfigError("keep_fp32", f"{list(keep_fp32)!r} keeps every Linear in fp32; nothing is left to quantize")
    return targets


def replace_linears(model: nn.Module, keep_fp32: Sequence[str], build: Callable[[nn.Linear], nn.Module]) -> nn.Module:
    """A CPU deep copy of ``model`` in eval mode with every quantized Linear replaced by ``build(linear)``."""
    model = copy.deepcopy(model).cpu().eval()
    for name, linear in quantized_linears(model, keep_fp32).items():
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, build(linear))
    return model
