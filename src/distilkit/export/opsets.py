"""Opset imports of an ONNX model: the version it uses of a domain, and importing the domains new nodes use."""

from __future__ import annotations

from collections.abc import Iterable

import onnx
from onnx import helper

DEFAULT_DOMAINS = ("", "ai.onnx")


def opset_version(model: onnx.ModelProto) -> int:
    """The model's default-domain (``ai.onnx``) opset version; 0 when it imports none."""
    return max((o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS), default=0)


def import_domains(model: onnx.ModelProto, domains: Iterable[str]) -> None:
    """Import each of ``domains`` the model does not import yet, at version 1 (the version of the contrib
    domains nodes are added from, e.g. ``com.microsoft``)."""
    imported = {o.domain for o in model.opset_import}
    for domain in sorted(set(domains) - imported):
        model.opset_import.append(helper.make_opsetid(domain, 1))
