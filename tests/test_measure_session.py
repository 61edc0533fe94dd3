"""The timing session: interleaved, adaptive repeats, threads set and logged, real-length batches, ratios
from one session, CPU-only models kept off the GPU. A fake clock makes the timings exact and the tests fast."""

from __future__ import annotations

import onnx
import pytest
import torch
from onnx import TensorProto, helper
from rich.console import Console

from distilkit.errors import ConfigError
from distilkit.export.onnx import ort_session
from distilkit.measure.latency import Latency, real_batches
from distilkit.measure.report import MeasureSpec, print_table, ratios
from distilkit.measure.session import Timings, TimingSession, cpu_only

ONE_BATCH = {("full", 1): [{"input_ids": torch.ones(1, 4, dtype=torch.long), "attention_mask": torch.ones(1, 4, dtype=torch.long)}]}


class FakeClock:
    """Time in seconds that only fake calls advance: a call of ``cost_ms`` takes exactly that long."""

    def __init__(self):
        self.now = 0.0
        self.log: list[str] = []

    def __call__(self) -> float:
        return self.now

    def make_call(self, role: str, cost_ms: float):
        def make(batch):
            def call():
                self.log.append(role)
                self.now += cost_ms / 1000

            return call

        return make


def fake_session(clock: FakeClock, costs: dict[tuple[str, str], float], inputs=ONE_BATCH, **kwargs) -> TimingSession:
    session = TimingSession(inputs, threads=1, warmup=2, clock=clock, settle_s=0, **({"rewarm_ms": 0} | kwargs))
    for (role, runtime), cost in costs.items():
        session.add_call(role, runtime, clock.make_call(role, cost))
    return session


def test_session_interleaves_and_takes_more_samples_of_fast_models():
    clock = FakeClock()
    session = fake_session(clock, {("slow", "torch"): 10, ("mid", "torch"): 3, ("fast", "torch"): 1}, min_samples=20, min_time_s=0.1)
    timings = session.run()
    n = {role: timings.results[(role, "torch", "full", 1)].samples for role in ("slow", "mid", "fast")}
    assert n["slow"] >= 20 and n["mid"] * 3 >= 100 and n["fast"] >= 100  # >= min_samples and >= 100 ms of timed calls each
    assert n["fast"] > n["mid"] > n["slow"]  # adaptive: fast models take more samples
    timed = clock.log[3 * 2 :]  # after 2 warm-up calls per entry
    assert len(timed) == sum(n.values())
    for role in n:  # every model's samples are spread over the whole session, not one block per model
        positions = [i for i, r in enumerate(timed) if r == role]
        assert positions[0] < len(timed) * 0.1 and positions[-1] > len(timed) * 0.9
        in_first_half = sum(i < len(timed) / 2 for i in positions) / len(positions)
        assert 0.3 < in_first_half < 0.7
    switches = sum(a != b for a, b in zip(timed, timed[1:]))
    assert switches >= 2 * 20  # at least two model changes per round


class ColdClock(FakeClock):
    """A call costs ``cost_ms``, or ``cold_ms`` when the call before it was another model's (or a pause came between):
    the caches and threads a small model loses to its neighbours in the session."""

    def make_call(self, role: str, cost_ms: float, cold_ms: float = 0.0):
        def make(batch):
            def call():
                cold = not self.log or self.log[-1] != role
                self.log.append(role)
                self.now += (cold_ms if cold else cost_ms) / 1000

            return call

        return make


def small_latency(rewarm_ms: float, min_time_s: float) -> tuple[Latency, int]:
    """The small model's latency in a session with a big one, and how many calls it got in all."""
    clock = ColdClock()
    session = TimingSession(ONE_BATCH, threads=1, warmup=2, clock=clock, settle_s=0.001, rewarm_ms=rewarm_ms,
                            sleep=lambda s: clock.log.append("pause"), min_samples=10, min_time_s=min_time_s)
    session.add_call("big", "torch", clock.make_call("big", 5, cold_ms=6))
    session.add_call("small", "torch", clock.make_call("small", 0.2, cold_ms=0.6))
    return session.run().results[("small", "torch", "full", 1)], clock.log.count("small")


def test_every_timed_call_runs_warm_whatever_the_block():
    """One-call blocks (min_time_s 0) or longer ones: with the re-warm no timed call is a cold one, so the small
    model's latency is its warm cost either way; without it, its latency depends on min_time_s."""
    for min_time_s in (0, 0.05):
        small, calls = small_latency(0.5, min_time_s)
        assert small.p50_ms == pytest.approx(0.2) and small.p95_ms == pytest.approx(0.2)
        assert calls > small.samples + 2  # the re-warm's untimed calls
    one_call_blocks, _ = small_latency(0, 0)
    longer_blocks, _ = small_latency(0, 0.05)
    assert one_call_blocks.p50_ms == pytest.approx(0.6) and longer_blocks.p50_ms == pytest.approx(0.2)


def test_session_stops_at_max_samples_and_reports_exact_percentiles():
    clock = FakeClock()
    costs = iter([1.0] * 2 + [float(i % 100 + 1) for i in range(1000)])  # warm-up 1 ms, then 1..100 ms repeating
    session = TimingSession(ONE_BATCH, threads=1, warmup=2, min_samples=100, min_time_s=0, max_samples=100, clock=clock)

    def make(batch):
        def call():
            clock.now += next(costs) / 1000

        return call

    session.add_call("m", "torch", make)
    latency = session.run().results[("m", "torch", "full", 1)]
    assert latency.samples == 100
    assert latency.p50_ms == pytest.approx(50.5) and latency.p95_ms == pytest.approx(95.05)  # numpy's linear percentile of 1..100
    assert latency.throughput == pytest.approx(1 / 0.0505)


def test_session_sets_threads_and_logs_them(tmp_path):
    seen = []

    def make(batch):
        return lambda: seen.append(torch.get_num_threads())

    path = tiny_onnx(tmp_path / "m.onnx")
    before = torch.get_num_threads()
    threads = 2 if before != 2 else 1
    session = TimingSession(ONE_BATCH, threads=threads, warmup=1, min_samples=3, min_time_s=0)
    session.add_call("a", "torch", make)
    session.add_onnx("b", path)
    metrics = session.run().metrics()
    assert set(seen) == {threads} and torch.get_num_threads() == before  # set while timing, restored after
    assert metrics["measure/threads_torch"] == threads and metrics["measure/threads_ort"] == threads
    assert metrics["b/ort_latency_b1_samples"] >= 3


def test_timing_ort_session_does_not_spin(tmp_path):
    options = ort_session(tiny_onnx(tmp_path / "m.onnx"), 2).get_session_options()
    assert options.intra_op_num_threads == 2 and options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_real_batches_are_padded_to_their_longest_member():
    lengths = [3, 5, 2, 7, 1]
    ids = torch.zeros(5, 8, dtype=torch.long)
    mask = torch.zeros(5, 8, dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.arange(1, n + 1) + 10 * i
        mask[i, :n] = 1
    pairs = list(real_batches(ids, mask, 2))
    assert [tuple(b["input_ids"].shape) for b in pairs] == [(2, 5), (2, 7)]  # the short last batch is dropped
    assert [b["attention_mask"].sum(1).tolist() for b in pairs] == [[3, 5], [2, 7]]
    assert torch.equal(pairs[1]["input_ids"][1], ids[3, :7])
    singles = list(real_batches(ids, mask, 1))
    assert [b["input_ids"].shape[1] for b in singles] == lengths and all(b["attention_mask"].all() for b in singles)
    unpadded = list(real_batches([ids[i, :n] for i, n in enumerate(lengths)], [mask[i, :n] for i, n in enumerate(lengths)], 2))
    assert all(torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["attention_mask"], b["attention_mask"]) for a, b in zip(pairs, unpadded))
    (whole,) = real_batches(ids, mask, 32)  # fewer rows than the batch size: one batch of them all
    assert tuple(whole["input_ids"].shape) == (5, 7)


def test_spec_session_inputs_per_length_mode():
    dev = {"input_ids": torch.randint(5, 100, (10, 16)), "attention_mask": (torch.arange(16) < torch.arange(3, 13)[:, None]).long()}
    session = MeasureSpec(batch_sizes=[1, 4], threads=1).session(16, 100, dev)
    assert sorted(session.inputs) == [("full", 1), ("full", 4), ("real", 1), ("real", 4)]
    (full,) = session.inputs[("full", 4)]
    assert tuple(full["input_ids"].shape) == (4, 16) and bool(full["attention_mask"].all())
    assert [b["input_ids"].shape[1] for b in session.inputs[("real", 1)]] == list(range(3, 13))
    assert [b["input_ids"].shape[1] for b in session.inputs[("real", 4)]] == [6, 10]
    only_real = MeasureSpec(batch_sizes=[2], lengths=["real"], threads=1).session(16, 100, dev)
    assert list(only_real.inputs) == [("real", 2)]


def test_speedups_are_ratios_of_the_printed_p50s():
    clock = FakeClock()
    costs = {("teacher", "torch"): 8, ("teacher", "onnxruntime"): 4, ("student", "torch"): 4, ("student", "onnxruntime"): 2, ("deploy", "onnxruntime"): 1}
    session = fake_session(clock, costs, min_samples=5, min_time_s=0)
    timings = session.run()
    timings.alias("deploy", "student")  # deploy torch = the student's torch model
    m = timings.metrics() | {"teacher/onnx_size_mb": 8.0, "student/onnx_size_mb": 4.0, "deploy/onnx_size_mb": 1.0}
    r = ratios(m, timings)
    assert r["deploy/ort_speedup_b1_vs_teacher"] == pytest.approx(4) == m["teacher/ort_latency_b1_p50_ms"] / m["deploy/ort_latency_b1_p50_ms"]
    assert r["deploy/speedup_b1_vs_teacher"] == pytest.approx(2) and r["deploy/speedup_b1_vs_student"] == 1.0
    assert r["student/ort_speedup_b1_vs_teacher"] == pytest.approx(2) and r["deploy/size_ratio_vs_teacher"] == 8.0
    console = Console(record=True, width=200)
    print_table(m | r, [1], console)
    text = console.export_text()
    (row,) = [line for line in text.splitlines() if "ort b1 p50 (ms)" in line]
    teacher_ms, _, deploy_ms = (float(c) for c in row.replace("│", " ").split()[-3:])
    assert f"ort speed-up b1 vs teacher {teacher_ms / deploy_ms:.3f}" in text


def test_no_torch_speedup_across_devices():
    def latency(ms):
        return Latency.of([ms] * 3, 1)

    timings = Timings(
        results={("teacher", "torch", "full", 1): latency(2.0), ("deploy", "torch", "full", 1): latency(4.0),
                 ("teacher", "onnxruntime", "full", 1): latency(4.0), ("deploy", "onnxruntime", "full", 1): latency(1.0)},
        devices={"teacher": "cuda", "deploy": "cpu"}, threads={"torch": 1},
    )
    assert timings.speedups([("deploy", "teacher")]) == {"deploy/ort_speedup_b1_vs_teacher": 4.0}
    assert timings.metrics()["teacher/torch_cuda"] == 1.0 and timings.metrics()["deploy/torch_cuda"] == 0.0


def test_cpu_only_model_cannot_be_timed_on_cuda():
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 2))
    assert not cpu_only(model)
    int8 = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    assert cpu_only(int8)
    session = TimingSession(ONE_BATCH, threads=1, device="cuda")
    with pytest.raises(ValueError, match="CPU-only"):
        session.add_torch("deploy", int8)
    session.add_torch("deploy", int8, device="cpu")  # on the CPU it is fine
    assert [(m.role, m.device) for m in session.models] == [("deploy", "cpu")]


@pytest.mark.parametrize(
    "kwargs,key",
    [({"lengths": ["short"]}, "measure.lengths"), ({"lengths": []}, "measure.lengths"), ({"threads": 0}, "measure.threads"),
     ({"min_samples": 0}, "measure.min_samples"), ({"min_samples": 100, "max_samples": 50}, "measure.max_samples"),
     ({"device": "tpu"}, "measure.device"), ({"warmup": 0}, "measure.warmup"),
     ({"rewarm_ms": -1}, "measure.rewarm_ms"), ({"rewarm_ms": "2ms"}, "measure.rewarm_ms")],
)
def test_bad_measure_spec_names_key(kwargs, key):
    with pytest.raises(ConfigError) as err:
        MeasureSpec(**kwargs)
    assert err.value.key == key


def tiny_onnx(path):
    """A two-node graph with the exported models' interface: logits = [sum(ids * mask), sum(mask)]."""
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])
    mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    nodes = [
        helper.make_node("Mul", ["input_ids", "attention_mask"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axes"], ["s"], keepdims=1),
        helper.make_node("ReduceSum", ["attention_mask", "axes"], ["n"], keepdims=1),
        helper.make_node("Concat", ["s", "n"], ["cat"], axis=1),
        helper.make_node("Cast", ["cat"], ["logits"], to=TensorProto.FLOAT),
    ]
    graph = helper.make_graph(nodes, "tiny", [ids, mask], [out], initializer=[axes])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path
