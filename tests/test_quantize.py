"""Quantizers: prepare -> train -> convert round trips, fake-quant == deployed weights and activations,
trained-vs-deployed logit parity, ONNX int8/int4, quantized word embeddings, bad input."""

from __future__ import annotations

import ast
import copy
import inspect
import pickle
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.ao.nn.quantized.dynamic as nnqd
import yaml
from hydra.utils import get_class, instantiate
from onnx import helper, numpy_helper
from torch import nn
from transformers import BertConfig, BertForSequenceClassification

from distilkit.errors import ConfigError
from distilkit.export.onnx import export_onnx, ort_logits, ort_session
from distilkit.measure import parity
from distilkit.prune import MagnitudePruner
from distilkit.quantize import Converted, NoQuantizer, PTQDynamicQuantizer, QATInt4Quantizer, QATInt8Quantizer, Quantizer
from distilkit.quantize.fake_quant import (
    DynamicActivationFakeQuant, Int8WeightFakeQuant, dynamic_uint8_fake_quant, dynamic_uint8_qparams, int8_fake_quant)
from distilkit.quantize.int4 import Int4Embedding, Int4Linear
from distilkit.quantize.int8 import Int8Embedding
from distilkit.quantize.onnx_graph import NAME_SCOPES, load_for_quantization
from distilkit.quantize.qat import QATEmbedding, QATLinear

CONF = Path(__file__).resolve().parent.parent / "conf"
SEQ = 16
WORD_TABLE = "bert.embeddings.word_embeddings.weight"


def tiny_bert(seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, num_labels=2)
    return BertForSequenceClassification(config).eval()


def batch(seed: int = 1, size: int = 8) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 100, (size, SEQ), generator=generator)
    mask = torch.ones_like(ids)
    mask[: size // 2, SEQ - 5:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def logits(model: nn.Module, inputs: dict) -> np.ndarray:
    with torch.no_grad():
        return model(**inputs).logits.float().numpy()


def rel_err(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.linalg.norm(got - expected) / np.linalg.norm(expected))


def train(model: nn.Module, quantizer: Quantizer, steps: int = 4) -> None:
    """A few SGD steps on random labels, reporting progress like the LightningModule does."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model.train()
    for step in range(steps):
        quantizer.on_train_progress(model, step / steps)
        inputs = batch(seed=10 + step)
        labels = torch.randint(0, 2, (len(inputs["input_ids"]),), generator=torch.Generator().manual_seed(step))
        loss = nn.functional.cross_entropy(model(**inputs).logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


def qat_linears(model: nn.Module) -> dict[str, QATLinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, QATLinear)}


def onnx_weights(quantized: Path, fp32: Path) -> dict[str, dict[str, np.ndarray]]:
    """Module name -> the quantized weight initializers of its node (via the exporter's name scopes)."""
    graph = load_for_quantization(fp32, keep_fp32=[])[0].graph  # every Linear as MatMul, names as quantized
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(quantized)).graph.initializer}
    result = {}
    for node in graph.node:
        scopes = [ast.literal_eval(p.value) for p in node.metadata_props if p.key == NAME_SCOPES]
        if node.op_type == "MatMul" and scopes:
            found = {k[len(node.input[1]) + 1:]: v for k, v in inits.items() if k.startswith(node.input[1] + "_")}
            if found:
                result[scopes[0][-2]] = found
    return result


def trained_run(quantizer: Quantizer, directory: Path) -> SimpleNamespace:
    model = tiny_bert()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    quantizer.prepare(model)
    train(model, quantizer)
    converted = quantizer.convert(model)
    fp32 = export_onnx(converted.float_model, directory / "fp32.onnx", SEQ)
    quantized = quantizer.quantize_onnx(fp32, directory / "quantized.onnx")
    return SimpleNamespace(model=model, initial=initial, quantizer=quantizer, converted=converted, fp32=fp32, quantized=quantized)


@pytest.fixture(scope="module")
def int8_run(tmp_path_factory):
    return trained_run(QATInt8Quantizer(), tmp_path_factory.mktemp("int8"))


@pytest.fixture(scope="module")
def int8_rr_run(tmp_path_factory):
    return trained_run(QATInt8Quantizer(reduce_range=True), tmp_path_factory.mktemp("int8_rr"))


@pytest.fixture(scope="module")
def int4_run(tmp_path_factory):
    return trained_run(QATInt4Quantizer(group_size=16), tmp_path_factory.mktemp("int4"))


# --- none and post-training dynamic int8 -------------------------------------------------------

def test_none_is_identity(tmp_path):
    model, quantizer = tiny_bert(), NoQuantizer()
    assert quantizer.prepare(model) is model
    converted = quantizer.convert(model)
    assert converted == Converted(model, model, "fp32", reference=model)
    assert quantizer.quantize_onnx(tmp_path / "fp32.onnx", tmp_path / "q.onnx") is None


def test_ptq_dynamic_round_trip(int8_run, tmp_path):
    model, quantizer = int8_run.converted.float_model, PTQDynamicQuantizer()
    assert quantizer.prepare(model) is model
    converted = quantizer.convert(model)
    assert converted.precision == "int8" and converted.float_model is model
    torch_model = converted.torch_model
    assert isinstance(torch_model.bert.encoder.layer[0].intermediate.dense, nnqd.Linear)
    assert isinstance(torch_model.bert.pooler.dense, nnqd.Linear)
    assert type(torch_model.classifier) is nn.Linear  # keep_fp32 default
    inputs = batch()
    # Error budget: int8 weights round to steps of max|w|/127.5 per channel (<0.4 % of the channel's
    # range) and torch's 7-bit dynamic activations to range/127 per tensor (<0.8 %). Uncorrelated
    # rounding noise adds in quadrature over a dot product, so each Linear's output error is of that
    # order, and the 13 quantized Linears in sequence (partly renormalized by LayerNorm) stay ~1 %.
    # Measured 0.3 %; the bound leaves a 10x margin.
    assert rel_err(logits(torch_model, inputs), logits(model, inputs)) < 0.03
    path = quantizer.quantize_onnx(int8_run.fp32, tmp_path / "ptq.onnx")
    fp32 = ort_logits(ort_session(int8_run.fp32, 1), **inputs)
    # onnxruntime quantizes activations to 8 bits: half the activation noise of torch's 7 bits
    assert rel_err(ort_logits(ort_session(path, 1), **inputs), fp32) < 0.02


# --- int8 QAT ----------------------------------------------------------------------------------

def test_qat_prepare_swaps_linears_in_place():
    model = tiny_bert()
    query = model.bert.encoder.layer[0].attention.self.query
    weight, keys = query.weight, set(model.state_dict())
    QATInt8Quantizer().prepare(model)
    assert model.bert.encoder.layer[0].attention.self.query is query and query.weight is weight
    assert len(qat_linears(model)) == 2 * 6 + 1  # encoder Linears + pooler; classifier kept
    assert type(model.classifier) is nn.Linear
    assert keys == set(model.state_dict())  # parameter names unchanged; dynamic activations: no observer state
    QATInt8Quantizer().prepare(model)  # idempotent
    assert len(qat_linears(model)) == 13


def test_straight_through_gradient():
    model = tiny_bert()
    QATInt8Quantizer().prepare(model)
    linear = model.bert.encoder.layer[0].intermediate.dense
    x = torch.randn(5, 32)
    linear(x).sum().backward()
    x_fq = linear.input_fq(x)
    # d(sum y)/dW = sum_rows(x_fq) for every output row: rounding is treated as the identity
    torch.testing.assert_close(linear.weight.grad, x_fq.sum(0).expand(64, 32), rtol=0, atol=1e-6)


def test_qat_int8_trains_and_converts(int8_run):
    model, converted = int8_run.model, int8_run.converted
    assert converted.precision == "int8"
    float_model = converted.float_model
    assert not qat_linears(float_model) and qat_linears(model)  # convert copies, the trained model is untouched
    assert all(type(m) is nn.Linear for m in float_model.modules() if isinstance(m, nn.Linear))
    trained = float_model.state_dict()
    assert not torch.equal(trained["bert.encoder.layer.0.attention.self.query.weight"],
                           int8_run.initial["bert.encoder.layer.0.attention.self.query.weight"])
    for key, value in trained.items():
        torch.testing.assert_close(value, model.state_dict()[key], rtol=0, atol=0)
    inputs = batch()
    np.testing.assert_allclose(ort_logits(ort_session(int8_run.fp32, 1), **inputs), logits(float_model, inputs), atol=1e-5)


def test_int8_fake_quant_weights_equal_deployed_weights(int8_run):
    deployed_onnx = onnx_weights(int8_run.quantized, int8_run.fp32)
    linears = qat_linears(int8_run.model)
    assert set(deployed_onnx) == set(linears)
    for name, linear in linears.items():
        fake = linear.weight_fq(linear.weight).detach()
        torch_weight = int8_run.converted.torch_model.get_submodule(name).weight().dequantize()
        assert torch.equal(torch_weight, fake), name
        w = deployed_onnx[name]  # [in, out] uint8 codes with zero point 128
        onnx_weight = (w["quantized"].astype(np.float32) - w["zero_point"].astype(np.float32)) * w["scale"]
        assert np.array_equal(onnx_weight.T, fake.numpy()), name


def test_reduce_range_weights_are_7_bit_int8_and_equal_what_trained(int8_rr_run):
    """reduce_range: signed int8 weights in -64..64 with zero point 0 (onnxruntime's uint8 x int8 kernel), the
    very codes QAT trained with (torch runtime too); the word table stays 8-bit."""
    deployed_onnx = onnx_weights(int8_rr_run.quantized, int8_rr_run.fp32)
    linears = qat_linears(int8_rr_run.model)
    assert set(deployed_onnx) == set(linears)
    for name, linear in linears.items():
        fake = linear.weight_fq(linear.weight).detach()
        assert torch.equal(fake, int8_fake_quant(linear.weight, reduce_range=True)), name
        assert not torch.equal(fake, int8_fake_quant(linear.weight)), name  # a coarser grid than the 8-bit one
        torch_weight = int8_rr_run.converted.torch_model.get_submodule(name).weight().dequantize()
        assert torch.equal(torch_weight, fake), name
        w = deployed_onnx[name]
        assert w["quantized"].dtype == np.int8 and np.abs(w["quantized"]).max() <= 64 and not w["zero_point"].any()
        onnx_weight = w["quantized"].astype(np.float32) * w["scale"]
        assert np.array_equal(onnx_weight.T, fake.numpy()), name
    table = int8_rr_run.model.get_submodule("bert.embeddings.word_embeddings")
    assert torch.equal(table.weight_fq(table.weight), int8_fake_quant(table.weight))


@pytest.mark.parametrize("reduce_range", [False, True])
def test_int8_onnx_linear_is_exact_where_products_would_saturate(reduce_range, tmp_path):
    """Inputs whose uint8 codes are all near 255 and weights at the top of their range: with full-range int8
    weights, MLAS's uint8 x int8 kernel on CPUs without VNNI adds pairs of products in saturating int16 and
    goes wrong; the two layouts the quantizers deploy (uint8 weights, and 7-bit int8 with ``reduce_range``)
    compute the exact integer product: the ONNX model equals the fake-quantized Linear."""
    model = tiny_bert()
    dense = model.bert.encoder.layer[0].intermediate.dense  # 32 -> 64
    with torch.no_grad():
        dense.weight.copy_(torch.where(torch.arange(32)[None] % 2 == 0, 1.0, 0.98).expand(64, 32) * torch.linspace(0.5, 1, 64)[:, None])
    quantizer = QATInt8Quantizer(reduce_range=reduce_range)
    converted = quantizer.convert(quantizer.prepare(model))
    fp32 = export_onnx(converted.float_model, tmp_path / "fp32.onnx", SEQ)
    quantized = quantizer.quantize_onnx(fp32, tmp_path / "q.onnx")
    inputs = batch()
    reference = parity.torch_logits(converted.reference, inputs)
    metrics = parity.parity_metrics(reference, parity.onnx_logits(quantized, inputs), "int8")
    assert metrics[parity.REL] < 1e-4


def test_int8_converted_outputs_close_to_fp32(int8_run):
    inputs = batch()
    float_logits = logits(int8_run.converted.float_model, inputs)
    # bounds as in test_ptq_dynamic_round_trip
    assert rel_err(logits(int8_run.converted.torch_model, inputs), float_logits) < 0.03
    onnx_fp32 = ort_logits(ort_session(int8_run.fp32, 1), **inputs)
    assert rel_err(ort_logits(ort_session(int8_run.quantized, 1), **inputs), onnx_fp32) < 0.02
    graph = onnx.load(str(int8_run.quantized)).graph
    assert sum(n.op_type == "MatMulInteger" for n in graph.node) == 13  # attention-score MatMuls stay fp32
    classifier = [i for i in graph.initializer if i.name.startswith("classifier.")]
    assert classifier and all(i.data_type == onnx.TensorProto.FLOAT for i in classifier)  # kept in fp32


def dynamic_quantize_linear_onnx(x: np.ndarray) -> tuple[np.ndarray, np.float32, np.uint8]:
    """onnxruntime's ``DynamicQuantizeLinear`` of ``x``: ``(uint8 codes, scale, zero point)``."""
    graph = helper.make_graph(
        [helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "scale", "zp"])], "dql",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", onnx.TensorProto.UINT8, list(x.shape)),
         helper.make_tensor_value_info("scale", onnx.TensorProto.FLOAT, []),
         helper.make_tensor_value_info("zp", onnx.TensorProto.UINT8, [])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return tuple(session.run(None, {"x": x}))


@pytest.mark.parametrize("case", ["normal", "positive", "negative", "zeros", "ties"])
def test_dynamic_activation_fake_quant_is_dynamic_quantize_linear(case):
    """Scale, zero point and every code equal onnxruntime's, bit for bit, including rounding ties."""
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(4, 7, 33, generator=generator) * 3 + 0.7
    if case == "positive":
        x = x.abs() + 0.5  # range widened to contain 0: zero point 0
    elif case == "negative":
        x = -x.abs()  # zero point 255
    elif case == "zeros":
        x = torch.zeros(3, 5)  # empty range: scale 1
    elif case == "ties":  # values exactly half-way between codes of the grid of [-2.55, 2.55 * 3]
        x = torch.tensor([-2.55, 7.65] + [(k + 0.5) * 0.04 for k in range(-60, 180)])
    codes, scale, zero_point = dynamic_quantize_linear_onnx(x.numpy())
    torch_scale, torch_zero_point = dynamic_uint8_qparams(x)
    assert torch_scale.item() == scale and torch_zero_point.item() == zero_point
    fake = dynamic_uint8_fake_quant(x)
    expected = (codes.astype(np.float32) - np.float32(zero_point)) * scale
    assert np.array_equal(fake.numpy(), expected)
    if case != "zeros":
        assert len(np.unique(codes)) > 100  # a real grid, not a degenerate one
    if case == "ties":  # x / scale lands on .5 exactly; torch's own fake quant (x * (1/scale)) rounds some of them otherwise
        ratio = x / torch_scale
        assert (ratio - ratio.floor() == 0.5).sum() > 100
        assert not torch.equal(fake, torch.fake_quantize_per_tensor_affine(x, torch_scale.item(), int(torch_zero_point.item()), 0, 255))


def test_dynamic_activation_range_is_per_batch():
    """The scale follows each tensor's own range (padding rows included): no state carried over."""
    fq = DynamicActivationFakeQuant().train()
    small, large = torch.linspace(-1, 1, 50), torch.linspace(-8, 8, 50)
    first = fq(small)
    fq(large)
    assert torch.equal(fq(small), first) and torch.equal(fq.eval()(small), first)
    assert (first - small).abs().max() <= 2 / 255 / 2 + 1e-7  # its own range: steps of 2/255
    assert not list(fq.buffers()) and not list(fq.parameters())


def test_keep_fp32_prefix_in_torch_and_onnx(int8_run, tmp_path):
    quantizer = QATInt8Quantizer(keep_fp32=["classifier", "bert.encoder.layer.1"])
    model = quantizer.prepare(tiny_bert())
    assert sorted(qat_linears(model)) == sorted(
        [f"bert.encoder.layer.0.{n}" for n in ("attention.self.query", "attention.self.key", "attention.self.value",
                                                "attention.output.dense", "intermediate.dense", "output.dense")]
        + ["bert.pooler.dense"])
    path = quantizer.quantize_onnx(int8_run.fp32, tmp_path / "partial.onnx")
    assert set(onnx_weights(path, int8_run.fp32)) == set(qat_linears(model))


def test_qat_composes_with_magnitude_pruning():
    model = tiny_bert()
    pruner, quantizer = MagnitudePruner(sparsity=0.5, initial_sparsity=0.5), QATInt8Quantizer()
    quantizer.prepare(pruner.prepare(model))
    linear = model.bert.encoder.layer[0].output.dense
    pruned = linear.weight_mask == 0
    model(**batch())  # the pruning hook sets weight = weight_orig * mask before the fake quant
    assert pruned.float().mean() > 0.3 and torch.all(linear.weight_fq(linear.weight)[pruned] == 0)
    converted = quantizer.convert(pruner.convert(model))
    assert torch.all(converted.float_model.bert.encoder.layer[0].output.dense.weight[pruned] == 0)
    assert torch.all(converted.torch_model.bert.encoder.layer[0].output.dense.weight().dequantize()[pruned] == 0)


# --- int4 QAT ----------------------------------------------------------------------------------

def test_int4_fake_quant_weights_equal_deployed_weights(int4_run):
    deployed_onnx = onnx_weights(int4_run.quantized, int4_run.fp32)
    linears = qat_linears(int4_run.model)
    assert set(deployed_onnx) == set(linears) and len(linears) == 13
    for name, linear in linears.items():
        fake = linear.weight_fq(linear.weight).detach()
        torch_layer = int4_run.converted.torch_model.get_submodule(name)
        assert isinstance(torch_layer, Int4Linear)
        assert torch.equal(torch_layer.dequantized_weight(), fake), name
        w = deployed_onnx[name]  # MatMulNBits: uint8 [out, groups, 8] two codes per byte, scales [out, groups]
        packed, scales = w["Q4"], w["scales"]
        codes = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(len(packed), -1).astype(np.float32) - 8
        assert np.array_equal(codes * np.repeat(scales, 16, axis=1), fake.numpy()), name
        assert len(np.unique(codes)) <= 16


def test_int4_onnx_runs_what_qat_trained(int4_run):
    inputs = batch()
    graph = onnx.load(str(int4_run.quantized)).graph
    assert sum(n.op_type == "MatMulNBits" for n in graph.node) == 13
    deployed = ort_logits(ort_session(int4_run.quantized, 1), **inputs)
    # MatMulNBits (accuracy_level 4) computes with the trained int4 weights and blockwise int8
    # activations, which the QAT forward emulates: only float summation order differs (measured 1e-7;
    # the bound allows a few activation codes to round the other way)
    assert rel_err(deployed, logits(int4_run.model, inputs)) < 1e-4
    # 16 levels per group: weight steps of max|w|/8 per group (~3.5 % rms weight noise), so each
    # Linear's output is off by a few %; measured 2.3 % on the logits, bound with a ~10x margin
    assert rel_err(deployed, ort_logits(ort_session(int4_run.fp32, 1), **inputs)) < 0.2


def test_int4_torch_model_runs_int4_weights(int4_run):
    """The torch int4 model computes what qat_int4 trained: int4 weights and blockwise int8 activations."""
    inputs = batch()
    converted = int4_run.converted
    assert converted.precision == "int4"
    np.testing.assert_allclose(logits(converted.torch_model, inputs), logits(int4_run.model, inputs), rtol=0, atol=1e-5)
    weight_only = int4_run.quantizer.prepare(tiny_bert())  # fake-quant weights, fp32 activations: not what it runs
    weight_only.load_state_dict(int4_run.model.state_dict())
    for linear in qat_linears(weight_only).values():
        linear.input_fq = nn.Identity()
    assert np.abs(logits(converted.torch_model, inputs) - logits(weight_only, inputs)).max() > 1e-4


@pytest.mark.parametrize("bias", [False, True])
def test_int4_linear_runs_the_matmul_nbits_kernel_and_its_torch_twin_agrees(bias):
    """On CPU without autograd Int4Linear runs onnxruntime's MatMulNBits on its codes; with autograd the same
    arithmetic in torch. Both agree; copies, pickles and reloaded state get sessions of their own."""
    torch.manual_seed(0)
    layer = Int4Linear(nn.Linear(64, 48, bias=bias), group_size=16)
    x = torch.randn(3, 5, 64)
    with torch.no_grad():
        kernel = layer(x)
    assert list(layer._sessions) == [torch.get_num_threads()]  # the onnxruntime kernel ran
    twin = layer(x.clone().requires_grad_())  # autograd: the torch path
    assert twin.requires_grad and kernel.shape == twin.shape == (3, 5, 48)
    np.testing.assert_allclose(kernel.numpy(), twin.detach().numpy(), rtol=0, atol=1e-5)
    copied = pickle.loads(pickle.dumps(copy.deepcopy(layer)))
    assert copied._sessions == {}
    with torch.no_grad():
        np.testing.assert_array_equal(copied(x).numpy(), kernel.numpy())
    other = Int4Linear(nn.Linear(64, 48, bias=bias), group_size=16)
    with torch.no_grad():
        other(x)  # builds a session over its own codes ...
        other.load_state_dict(layer.state_dict())  # ... which loading new codes must drop
        np.testing.assert_array_equal(other(x).numpy(), kernel.numpy())


# --- parity: the deployed ONNX model computes what the trained model computed ----------------------

def dev_like(rows: int = 96, seed: int = 5) -> dict[str, torch.Tensor]:
    """Rows of random ids with lengths 3..SEQ, zero-padded: two batches of parity.BATCH_SIZE or fewer."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, SEQ + 1, (rows,), generator=generator)
    mask = (torch.arange(SEQ)[None] < lengths[:, None]).long()
    return {"input_ids": torch.randint(1, 100, (rows, SEQ), generator=generator) * mask, "attention_mask": mask}


@pytest.fixture(scope="module")
def ptq_run(tmp_path_factory):
    return trained_run(PTQDynamicQuantizer(), tmp_path_factory.mktemp("ptq"))


@pytest.fixture(scope="module")
def none_run(tmp_path_factory):
    return trained_run(NoQuantizer(), tmp_path_factory.mktemp("none"))


@pytest.mark.parametrize("run_name", ["none_run", "ptq_run", "int8_run", "int8_rr_run", "int4_run"])
def test_trained_and_deployed_logits_agree(run_name, request):
    run = request.getfixturevalue(run_name)
    inputs = dev_like()
    deployed = run.quantized or run.fp32
    reference = run.converted.reference
    expected = {"none_run": run.model, "int8_run": run.model, "int8_rr_run": run.model, "int4_run": run.model}.get(run_name)
    assert reference is expected if expected is not None else qat_linears(reference)  # PTQ: the fp32 model with int8 emulated
    trained, onnx_out = parity.torch_logits(reference, inputs), parity.onnx_logits(deployed, inputs)
    metrics = parity.parity_metrics(trained, onnx_out, run.converted.precision)
    assert metrics[parity.PASS] == 1.0 and metrics[parity.TOP1] == 1.0
    # Same weights, same activation quantization: on this tiny model only float summation order is left
    # (measured <= 6e-8 on logits of ~0.1; a real run flips a few activation codes, see parity.RTOL).
    # A deployment that quantized activations differently would not meet the bound: next assertion.
    assert metrics[parity.REL] < 1e-4
    if run.converted.precision != "fp32":  # the same weights with fp32 activations: the emulation is what matters
        float_weights = run.converted.float_model if run_name == "ptq_run" else weights_only(run)
        off = parity.parity_metrics(parity.torch_logits(float_weights, inputs), onnx_out, run.converted.precision)
        assert off[parity.REL] > 10 * 1e-4


def weights_only(run: SimpleNamespace) -> nn.Module:
    """The trained QAT model with its activation fake quantization removed (quantized weights kept)."""
    model = run.quantizer.prepare(tiny_bert())
    model.load_state_dict(run.model.state_dict())
    for linear in qat_linears(model).values():
        linear.input_fq = nn.Identity()
    return model.eval()


def test_parity_runs_each_row_alone():
    """Each row is fed alone at its own length: int8 activation scales are per tensor, so in a batch one row's
    range would change another row's logits, and padding positions would take part in the ranges."""
    inputs = dev_like(rows=40)
    model = QATInt8Quantizer().prepare(tiny_bert()).eval()
    batched = torch.from_numpy(logits(model, inputs))
    per_row = parity.torch_logits(model, inputs)
    assert not torch.equal(per_row, batched)  # the batch context matters for dynamic int8 ...
    alone = parity.torch_logits(model, {k: v[7:8] for k, v in inputs.items()})
    assert torch.equal(per_row[7:8], alone)  # ... so each row's parity logits depend on that row only
    length = int(inputs["attention_mask"][7].sum())
    unpadded = {k: v[7:8, :length] for k, v in inputs.items()}
    assert [tuple(r["input_ids"].shape) for r in parity.rows(unpadded)] == [(1, length)]
    assert torch.equal(parity.torch_logits(model, unpadded), alone)  # padding dropped


def test_weight_fake_quant_is_reused_only_while_the_weight_is_unchanged():
    linear = nn.Linear(16, 8)
    fq = Int8WeightFakeQuant()
    with torch.no_grad():
        first = fq(linear.weight)
        assert fq(linear.weight) is first  # evaluation: rounded once
        linear.weight.mul_(3)  # an in-place update (optimizer step) invalidates it
        assert torch.equal(fq(linear.weight), int8_fake_quant(linear.weight)) and not torch.equal(fq(linear.weight), first)
    trained = fq(linear.weight)
    assert trained.requires_grad and fq(linear.weight) is not trained  # training recomputes every time


def test_parity_verdict():
    trained = torch.tensor([[1.0, -1.0], [0.5, 0.2], [-2.0, 3.0]])  # largest |logit| 3: tolerance 3 x RTOL
    close = trained + 2e-3
    assert parity.parity_metrics(trained, trained, "fp32")[parity.PASS] == 1.0
    assert parity.parity_metrics(trained, close, "fp32")[parity.PASS] == 0.0  # 2e-3 > 3 x 1e-4
    metrics = parity.parity_metrics(trained, close, "int8")
    assert metrics[parity.PASS] == 1.0 and metrics[parity.MAX_ABS] == pytest.approx(2e-3, rel=1e-3)
    assert metrics[parity.TOLERANCE] == pytest.approx(3 * parity.RTOL["int8"]) and metrics[parity.REL] == pytest.approx(2e-3 / 3, rel=1e-3)
    assert parity.parity_metrics(trained * 10, close * 10, "fp32")[parity.PASS] == 0.0  # the bound scales with the logits
    assert parity.parity_metrics(trained / 10, trained / 10 + 0.02, "int8")[parity.PASS] == 0.0  # 0.02 > 0.3 x 0.05
    flipped = trained.clone()
    flipped[1] = flipped[1].flip(0)  # 0.3 apart, and one row of three disagrees
    metrics = parity.parity_metrics(trained, flipped, "int8")
    assert metrics[parity.PASS] == 0.0 and metrics[parity.TOP1] == pytest.approx(2 / 3)
    assert parity.parity_tags(metrics) == {"deploy.parity": "fail"} and "parity FAIL" in parity.parity_summary(metrics)
    assert parity.parity_metrics(trained, trained * float("nan"), "int8")[parity.PASS] == 0.0


def test_parity_low_bit_verdict_is_on_the_99th_percentile_row():
    """int8/int4: a rare row whose flipped activation codes cascaded (a few in a thousand) passes, a difference
    in most rows (a deployment computing something else) fails; fp32 still checks every row."""
    generator = torch.Generator().manual_seed(0)
    trained = torch.randn(1000, 2, generator=generator)  # largest |logit| ~3.3
    scale = float(trained.abs().max())
    rare = trained.clone()
    rare[:5] += 0.5 * scale  # 5 rows of 1000 far off
    metrics = parity.parity_metrics(trained, rare, "int8")
    assert metrics[parity.REL] == pytest.approx(0.5, rel=1e-5) and metrics[parity.P99_REL] == 0.0
    assert metrics[parity.PASS] == 1.0 and metrics[parity.QUANTILE] == 0.99
    assert "p99 row |dlogit| 0.00% <= 5.00%" in parity.parity_summary(metrics)
    assert parity.parity_metrics(trained, rare, "fp32")[parity.PASS] == 0.0  # fp32: the max row decides
    close = parity.parity_summary(parity.parity_metrics(trained, trained + 1e-6, "fp32"))
    assert re.fullmatch(r"parity PASS \(max \|dlogit\| \d\.\de-05% <= 0.01% of max \|logit\|; 1\.0e-06 abs, top-1 1\.000\)", close), close
    most = trained + 0.06 * scale * torch.rand(1000, 2, generator=generator).round()  # ~3 of 4 rows off by 6 %
    metrics = parity.parity_metrics(trained, most, "int8")
    assert metrics[parity.P99_REL] == pytest.approx(0.06, rel=1e-4) and metrics[parity.PASS] == 0.0
    assert "parity FAIL (p99 row |dlogit| 6.00% > 5.00%" in parity.parity_summary(metrics)


def negate_classifier(path: Path) -> Path:
    """The ONNX model at ``path`` with its classifier weight and bias negated, in place: logits change sign."""
    model = onnx.load(str(path))
    for init in model.graph.initializer:
        if init.name.startswith("classifier."):
            init.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(init), init.name))
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("broken", [False, True], ids=["good", "broken"])
def test_pipeline_tags_parity(broken, compose_cfg, shared_cache_dir, tmp_path, monkeypatch, capsys):
    """A deployment that does not reproduce the trained model ends tagged deploy.parity=fail, and says so."""
    import mlflow

    from distilkit.pipeline import run

    if broken:
        original = QATInt8Quantizer.quantize_onnx
        monkeypatch.setattr(QATInt8Quantizer, "quantize_onnx", lambda self, fp32, out: negate_classifier(original(self, fp32, out)))
    cfg = compose_cfg("quantizer=qat_int8", "trainer.fast_dev_run=true", f"paths.cache_dir={shared_cache_dir}")
    m = run(cfg, {"quantizer": "qat_int8"})
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    row = mlflow.search_runs(search_all_experiments=True).iloc[0]
    verdict = "fail" if broken else "pass"
    assert row["tags.deploy.parity"] == verdict and row["metrics.deploy/parity_pass"] == float(not broken)
    assert m["deploy/parity_tolerance"] == pytest.approx(parity.RTOL["int8"] * m["deploy/parity_max_abs_logit_diff"] / m["deploy/parity_rel_logit_diff"])
    assert (m["deploy/parity_max_abs_logit_diff"] > m["deploy/parity_tolerance"]) == broken
    assert f"parity {verdict.upper()}" in capsys.readouterr().out


# --- word embeddings ---------------------------------------------------------------------------

def word_lookup_onnx(quantized: Path, fp32: Path, ids: torch.Tensor, directory: Path) -> np.ndarray:
    """The word-embedding lookup output of the quantized ONNX model (exposed as an extra graph output)."""
    name = next(n.output[0] for n in onnx.load(str(fp32)).graph.node if n.op_type == "Gather" and n.input[1] == "input_ids")
    model = onnx.load(str(quantized))
    model.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    onnx.save(model, str(directory / "lookup.onnx"))
    feed = {"input_ids": ids.numpy(), "attention_mask": np.ones_like(ids.numpy())}
    return ort_session(directory / "lookup.onnx", 1).run([name], feed)[0]


def initializers(path: Path) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}


@pytest.mark.parametrize("quantizer, torch_class", [(PTQDynamicQuantizer(), Int8Embedding), (QATInt8Quantizer(), Int8Embedding),
                                                     (QATInt4Quantizer(group_size=16), Int4Embedding)])
def test_word_embeddings_quantized_by_default(quantizer, torch_class, int8_run, tmp_path):
    model = quantizer.prepare(tiny_bert())
    embeddings = model.bert.embeddings
    qat = not isinstance(quantizer, PTQDynamicQuantizer)
    assert type(embeddings.word_embeddings) is (QATEmbedding if qat else nn.Embedding)
    assert type(embeddings.position_embeddings) is nn.Embedding and type(embeddings.token_type_embeddings) is nn.Embedding
    quantizer.prepare(model)  # idempotent
    converted = quantizer.convert(model)
    assert type(converted.float_model.bert.embeddings.word_embeddings) is nn.Embedding
    torch_embeddings = converted.torch_model.bert.embeddings
    assert isinstance(torch_embeddings.word_embeddings, torch_class)
    assert type(torch_embeddings.position_embeddings) is nn.Embedding
    path = quantizer.quantize_onnx(int8_run.fp32, tmp_path / "q.onnx")
    inits = initializers(path)
    assert WORD_TABLE not in inits  # the fp32 table is gone
    codes = inits[WORD_TABLE + ("_Q4" if torch_class is Int4Embedding else "_quantized")]
    assert codes.dtype == (np.uint8 if torch_class is Int4Embedding else np.int8)
    assert inits["bert.embeddings.position_embeddings.weight"].dtype == np.float32


@pytest.mark.parametrize("cls", [PTQDynamicQuantizer, QATInt8Quantizer, QATInt4Quantizer])
def test_word_embeddings_kept_in_fp32(cls, int8_run, tmp_path):
    quantizer = cls(keep_fp32=["classifier", "bert.embeddings"])
    model = quantizer.prepare(tiny_bert())
    assert type(model.bert.embeddings.word_embeddings) is nn.Embedding
    assert type(quantizer.convert(model).torch_model.bert.embeddings.word_embeddings) is nn.Embedding
    graph = onnx.load(str(quantizer.quantize_onnx(int8_run.fp32, tmp_path / "q.onnx"))).graph
    lookup = [n for n in graph.node if "input_ids" in n.input]
    assert [n.op_type for n in lookup] == ["Gather"] and lookup[0].input[0] == WORD_TABLE
    assert any(n.op_type in ("MatMulInteger", "MatMulNBits") for n in graph.node)  # the Linears are still quantized


def test_embedding_straight_through_gradient():
    model = QATInt8Quantizer().prepare(tiny_bert())
    embedding = model.bert.embeddings.word_embeddings
    ids = torch.tensor([[0, 5, 5, 7]])
    (embedding(ids) * 2).sum().backward()
    expected = torch.zeros_like(embedding.weight)
    expected[5], expected[7] = 4.0, 2.0  # rounding treated as the identity; padding row 0 gets no gradient
    assert torch.equal(embedding.weight.grad, expected)


@pytest.mark.parametrize("run_name", ["int8_run", "int4_run"])
def test_fake_quant_embeddings_equal_deployed(run_name, request, tmp_path):
    run = request.getfixturevalue(run_name)
    embedding = run.model.bert.embeddings.word_embeddings
    assert not torch.equal(embedding.weight, run.initial[WORD_TABLE])  # trained
    fake = embedding.weight_fq(embedding.weight).detach()
    assert len(torch.unique(fake[7])) > 8 and not torch.equal(fake, embedding.weight.detach())  # on a coarse grid
    assert torch.equal(run.converted.torch_model.bert.embeddings.word_embeddings.dequantized_weight(), fake)
    inits = initializers(run.quantized)
    if run_name == "int8_run":  # int8 codes, one scale per row
        table = inits[WORD_TABLE + "_quantized"].astype(np.float32) * inits[WORD_TABLE + "_scale"]
    else:  # GatherBlockQuantized: packed 4-bit codes (zero point 8), scales per group of 16
        packed, scales = inits[WORD_TABLE + "_Q4"], inits[WORD_TABLE + "_scales"]
        codes = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(len(packed), -1).astype(np.float32) - 8
        table = codes * np.repeat(scales, 16, axis=1)
    assert np.array_equal(table, fake.numpy())
    # onnxruntime's lookup computes the same rows bit for bit
    ids = batch()["input_ids"]
    with torch.no_grad():
        expected = embedding(ids).numpy()
    assert np.array_equal(word_lookup_onnx(run.quantized, run.fp32, ids, tmp_path), expected)


@pytest.mark.parametrize("cls, kwargs", [(PTQDynamicQuantizer, {}), (QATInt4Quantizer, {"group_size": 16})])
def test_quantized_embeddings_shrink_onnx(cls, kwargs, int8_run, tmp_path):
    table = initializers(int8_run.fp32)[WORD_TABLE]
    kept = cls(keep_fp32=["classifier", "bert.embeddings"], **kwargs).quantize_onnx(int8_run.fp32, tmp_path / "kept.onnx")
    quantized = cls(**kwargs).quantize_onnx(int8_run.fp32, tmp_path / "quantized.onnx")
    saved = kept.stat().st_size - quantized.stat().st_size
    inits = initializers(quantized)
    new = sum(v.nbytes for k, v in inits.items() if k.startswith(WORD_TABLE))
    # int8: 1 byte per value + 4 per row (32 values); int4: 1/2 byte + 4 per group of 16
    assert new == (table.size + 4 * len(table) if cls is PTQDynamicQuantizer else table.size // 2 + 4 * table.size // 16)
    # give or take node metadata (the fp32 Gather's stack trace goes, new nodes carry name scopes)
    assert saved == pytest.approx(table.nbytes - new, abs=0.1 * table.nbytes)
    assert saved > 0.7 * table.nbytes


# --- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [PTQDynamicQuantizer, QATInt8Quantizer, QATInt4Quantizer])
def test_keep_fp32_must_be_a_list(cls):
    with pytest.raises(ConfigError) as err:
        cls(keep_fp32="classifier")
    assert err.value.key == "keep_fp32"


@pytest.mark.parametrize("cls", [PTQDynamicQuantizer, QATInt8Quantizer, QATInt4Quantizer])
def test_unknown_keep_fp32_module(cls):
    with pytest.raises(ConfigError) as err:
        cls(keep_fp32=["clasifier"]).prepare(tiny_bert())
    assert err.value.key == "keep_fp32"
    assert "'clasifier'" in err.value.message and "classifier" in err.value.message.replace("'clasifier'", "")
    with pytest.raises(ConfigError) as err:  # a prefix must end at a name boundary
        cls(keep_fp32=["classifier", "bert.embedding"]).prepare(tiny_bert())
    assert err.value.key == "keep_fp32" and "'bert.embedding'" in err.value.message


def test_keep_fp32_leaving_nothing_to_quantize():
    with pytest.raises(ConfigError) as err:
        PTQDynamicQuantizer(keep_fp32=["bert", "classifier"]).prepare(tiny_bert())
    assert err.value.key == "keep_fp32"


@pytest.mark.parametrize("group_size", [8, 48, 512])
def test_int4_group_size_without_kernel(group_size):
    with pytest.raises(ConfigError) as err:
        QATInt4Quantizer(group_size=group_size)
    assert err.value.key == "group_size"


def test_int4_group_size_not_dividing_in_features():
    quantizer = QATInt4Quantizer(group_size=64)  # hidden size 32
    with pytest.raises(ConfigError) as err:
        quantizer.prepare(tiny_bert())
    assert err.value.key == "group_size" and "in_features=32" in err.value.message


# --- config files ------------------------------------------------------------------------------

def test_reduce_range_must_be_a_bool():
    for cls in (PTQDynamicQuantizer, QATInt8Quantizer):
        with pytest.raises(ConfigError) as err:
            cls(reduce_range="yes")
        assert err.value.key == "reduce_range" and "true or false" in err.value.message


@pytest.mark.parametrize("name", ["none", "ptq_dynamic", "qat_int8", "qat_int4"])
def test_config_file(name):
    """Keys are exactly the constructor's arguments, values its defaults (the classification task's), and Hydra builds it."""
    from omegaconf import OmegaConf

    config = OmegaConf.to_container(OmegaConf.create((CONF / "quantizer" / f"{name}.yaml").read_text()), resolve=True)
    cls = get_class(config.pop("_target_"))
    defaults = {k: p.default for k, p in inspect.signature(cls).parameters.items()}
    assert {k: list(v) if isinstance(v, tuple) else v for k, v in defaults.items()} == config
    assert isinstance(instantiate({"_target_": f"{cls.__module__}.{cls.__name__}", **config}), Quantizer)
