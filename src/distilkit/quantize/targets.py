"""Which modules a quantizer converts: every ``nn.Linear`` and the word-embedding table, except those in ``keep_fp32``.

The word-embedding table is the ``nn.Embedding`` returned by ``model.get_input_embeddings()``
(``bert.embeddings.word_embeddings``: 30522 x hidden, more than half the weights of a small BERT).
Position and token-type embeddings are small (512 and 2 rows) and always stay fp32.

A ``keep_fp32`` entry is a module name or a prefix of module names: ``classifier`` keeps
``classifier``; ``bert.encoder.layer.0`` keeps every Linear of the first encoder layer;
``bert.embeddings`` keeps the word embeddings. At least one Linear must be quantized. The same
rule selects nodes of the ONNX export through their module name scopes
(:mod:`distilkit.quantize.onnx_graph`).
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


def quantized_embedding(model: nn.Module, keep_fp32: Sequence[str]) -> dict[str, nn.Embedding]:
    """The word-embedding table to quantize by name: ``{}`` if it is kept in fp32 or the model has none."""
    get = getattr(model, "get_input_embeddings", None)
    embedding = get() if callable(get) else None
    if not isinstance(embedding, nn.Embedding):
        return {}
    name = next(name for name, module in model.named_modules() if module is embedding)
    return {} if is_kept(name, keep_fp32) else {name: embedding}


def quantized_modules(model: nn.Module, keep_fp32: Sequence[str]) -> dict[str, nn.Linear | nn.Embedding]:
    """The Linear modules to quantize, then the word embedding unless kept; errors as :func:`quantized_linears`."""
    return quantized_linears(model, keep_fp32) | quantized_embedding(model, keep_fp32)


def replace_modules(
    model: nn.Module, keep_fp32: Sequence[str], build: Callable[[nn.Linear | nn.Embedding], nn.Module]
) -> nn.Module:
    """A CPU deep copy of ``model`` in eval mode with every quantized module replaced by ``build(module)``."""
    model = copy.deepcopy(model).cpu().eval()
    for name, module in quantized_modules(model, keep_fp32).items():
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, build(module))
    return model
