"""distilkit.export.opsets: the default domain's opset version, and importing the domains new nodes use."""

from __future__ import annotations

from onnx import helper

from distilkit.export.opsets import import_domains, opset_version


def _model(*opsets: tuple[str, int]):
    graph = helper.make_graph([], "g", [], [])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])


def test_opset_version_reads_the_default_domain_whatever_its_spelling():
    assert opset_version(_model(("com.microsoft", 1), ("", 18))) == 18
    assert opset_version(_model(("ai.onnx", 17))) == 17
    assert opset_version(_model(("com.microsoft", 1))) == 0


def test_import_domains_adds_each_missing_domain_once_and_keeps_versions():
    model = _model(("", 18), ("com.microsoft", 1))
    import_domains(model, ["com.microsoft", "", "ai.onnx.ml", "ai.onnx.ml"])
    assert sorted((o.domain, o.version) for o in model.opset_import) == [("", 18), ("ai.onnx.ml", 1), ("com.microsoft", 1)]
