"""The pipeline in-process on tiny configs: every group option trains, caches are reused, bad input fails."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import torch
from omegaconf import OmegaConf

from distilkit.errors import ConfigError
from distilkit.pipeline import run
from distilkit.training.logit_store import LogitStore

CONF = Path(__file__).resolve().parent.parent / "conf"
# Pruners and quantizers other than none train in short real runs in test_compress_runs.py: under
# fast_dev_run training progress stays 0, so their schedules would never act.
# Options made for another task (their class's ``tasks`` says so) run in tests/test_lm*.py.
def classification_option(path: Path) -> bool:
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    from distilkit.tasks import serves

    target = OmegaConf.load(path).get("_target_")
    return target is None or serves(get_class(target), "classification")


GROUP_OPTIONS = [
    (g, p.stem)
    for g in ("data", "teacher", "student", "loss", "quantizer", "pruner", "hardware")
    for p in sorted((CONF / g).glob("*.yaml"))
    if (g not in ("quantizer", "pruner") or p.stem == "none") and classification_option(p)
]


# The config's own choices: one of them (the data default) trains; the others compose to the very same config.
DEFAULT_CHOICES = {k: v for item in OmegaConf.load(CONF / "config.yaml").defaults if isinstance(item, dict) for k, v in item.items()}
TRAINS_THE_DEFAULT = "data"


def option_overrides(group: str, option: str, tiny_bert_dir: Path, text_lines_dir: Path) -> list[str]:
    """What an option needs to run here, offline and tiny."""
    extra = {
        ("data", "sst2"): [f"data.path={text_lines_dir}", "data.max_length=16"],
        ("data", "text_lines"): [f"data.path={text_lines_dir}", "data.max_length=16"],
        ("teacher", "bert_base"): [f"teacher.name_or_path={tiny_bert_dir}", "teacher.finetune.max_epochs=1"],
        ("teacher", "minilm"): [f"teacher.name_or_path={tiny_bert_dir}", "teacher.finetune.max_epochs=1"],
    }.get((group, option), [])
    return [f"{group}={option}", *extra]


def finished_runs(root: Path):
    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
    return mlflow.search_runs(search_all_experiments=True)


@pytest.mark.parametrize("group,option", GROUP_OPTIONS, ids=[f"{g}={o}" for g, o in GROUP_OPTIONS])
def test_every_option_composes_and_trains(group, option, compose_cfg, tiny_bert_dir, text_lines_dir, shared_cache_dir, tmp_path):
    if (group, option) == ("hardware", "gpu") and not torch.cuda.is_available():
        cfg = compose_cfg(f"{group}={option}")  # composes everywhere; trains only where a GPU is
        assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "bf16-mixed"
        pytest.skip("no GPU here")
    if group == "hardware" and option in ("ddp", "ddp_cpu", "fsdp", "multi_node"):  # several processes per run
        compose_cfg(f"{group}={option}")  # composes here; runs in tests/test_distributed_run.py (ddp_cpu), test_distributed.py
        pytest.skip("multi-process option: exercised by tests/test_distributed*.py")
    if DEFAULT_CHOICES.get(group) == option and group != TRAINS_THE_DEFAULT:  # the same run as data=synthetic's
        assert compose_cfg(f"{group}={option}") == compose_cfg()
        return
    overrides = option_overrides(group, option, tiny_bert_dir, text_lines_dir)
    cfg = compose_cfg(*overrides, "trainer.fast_dev_run=true", f"paths.cache_dir={shared_cache_dir}")
    metrics = run(cfg, {group: option})
    for key in ("teacher/dev_acc", "student/dev_acc", "student/size_mb", "student/latency_b1_p50_ms", "student/retention_dev"):
        assert key in metrics and metrics[key] == metrics[key]  # present and not NaN
    runs = finished_runs(tmp_path)
    assert list(runs["status"]) == ["FINISHED"]
    assert runs[f"tags.{group}"][0] == option


def test_second_run_reuses_teacher_and_logits(compose_cfg, monkeypatch):
    cfg = compose_cfg("trainer.fast_dev_run=true")
    run(cfg, {})
    computed = []
    original = LogitStore.get_or_compute

    def spy(self, key, shape, compute):
        return original(self, key, shape, lambda: computed.append(key) or compute())

    monkeypatch.setattr(LogitStore, "get_or_compute", spy)
    fits = []
    monkeypatch.setattr("distilkit.pipeline.Run.finetune", lambda self, model, spec: fits.append(1))
    run(compose_cfg("trainer.fast_dev_run=true", "loss.T=2"), {})
    assert computed == [] and fits == []  # no teacher forward pass, no fine-tuning
    run(compose_cfg("trainer.fast_dev_run=true", "data.num_train=48"), {})
    assert len(computed) == 3 and fits == [1]  # new data: new teacher, logits for every split recomputed


def test_holdout_split_is_measured_beside_dev_and_test_and_trains_nothing(compose_cfg, shared_cache_dir, monkeypatch):
    seen = {}
    original = LogitStore.get_or_compute

    def spy(self, key, shape, compute):
        seen[shape[0]] = True
        return original(self, key, shape, compute)

    monkeypatch.setattr(LogitStore, "get_or_compute", spy)
    cfg = compose_cfg("trainer.fast_dev_run=true", "data.holdout=16", f"paths.cache_dir={shared_cache_dir}")
    metrics = run(cfg, {})
    for role in ("teacher/holdout_acc", "student/holdout_acc", "deploy/onnx_holdout_acc", "student/retention_holdout"):
        assert 0.0 <= metrics[role] <= 1.2
    assert metrics["deploy/onnx_holdout_acc"] != metrics["deploy/onnx_dev_acc"] or metrics["student/holdout_nll"] != metrics["student/dev_nll"]
    train = cfg.data.num_train
    assert sorted(seen) == sorted({train - 16, 16, cfg.data.num_dev, cfg.data.num_test})  # teacher logits per split; train lost 16 rows


def test_corrupt_teacher_cache_is_recomputed(compose_cfg, tmp_path):
    cfg = compose_cfg("trainer.fast_dev_run=true")
    run(cfg, {})
    entries = list((tmp_path / ".cache/distilkit/teachers").iterdir())
    assert len(entries) == 1
    (entries[0] / "model.safetensors").write_bytes(b"garbage")
    run(compose_cfg("trainer.fast_dev_run=true"), {})
    assert list(finished_runs(tmp_path)["status"]) == ["FINISHED", "FINISHED"]
    assert [e.name for e in (tmp_path / ".cache/distilkit/teachers").iterdir()] == [entries[0].name]
    assert (entries[0] / "model.safetensors").read_bytes() != b"garbage"  # fine-tuned again and re-cached


BAD_INPUTS = [
    (["loss.T=0"], "loss.T", "> 0"),
    (["loss.T=-2"], "loss.T", "> 0"),
    (["loss.alpha=1.5"], "loss.alpha", "[0, 1]"),
    (["loss=intermediate", "loss.alpha=-0.5"], "loss.alpha", "[0, 1]"),
    (["student.num_layers=3"], "student.num_layers", "allowed 1..2"),
    (["student.layer_map=[0,5]"], "student.layer_map", "out of range"),
    (["student.dropout=-0.1"], "student.dropout", "[0, 1)"),
    (["averaging=ema", "averaging.decay=1.0"], "averaging.decay", "(0, 1)"),
    (["averaging=ema", "averaging.decay=fast"], "averaging.decay", "(0, 1)"),
    (["data=text_lines", "data.path=/nonexistent/dir"], "data.path", "missing"),
    (["data=sst2", "data.path=/nonexistent/dir"], "data.path", "missing"),
    (["data.holdout=-1"], "data.holdout", ">= 0"),
    (["augment=corpus", "augment.path=/nonexistent/corpus.txt"], "augment.path", "text file"),
    (["augment=corpus", "augment.path=/etc/passwd", "augment.max_rows=0"], "augment.max_rows", ">= 1"),
    (["data.holdout=100000"], "data.holdout", "allowed 0.."),
    (["pruner=magnitude", "pruner.sparsity=1.0"], "pruner.sparsity", "[0, 1)"),
    (["pruner=heads", "pruner.amount=-0.1"], "pruner.amount", "[0, 1)"),
    (["pruner=ffn", "pruner.amount=1"], "pruner.amount", "[0, 1)"),
    (["pruner=width", "pruner.importance=gradient"], "pruner.importance", "activation"),
    (["quantizer=qat_int8", "quantizer.keep_fp32=[classifier,no_such_module]"], "quantizer.keep_fp32", "no_such_module"),
    (["quantizer=ptq_dynamic", "quantizer.keep_fp32=[no_such_module]"], "quantizer.keep_fp32", "no_such_module"),
    (["hardware.measure.runtimes=[tensorrt]"], "hardware.measure.runtimes", "onnxruntime"),
    # booleans are booleans (errors.check_bool), the seed of the teacher an integer or null
    (["task.store_logits=yes"], "task.store_logits", "true or false"),
    (["budget.precheck=1"], "budget.precheck", "true or false"),
    (["export.fuse=maybe"], "export.fuse", "true or false"),
    (["hardware.compile=2"], "hardware.compile", "true or false"),
    (["quantizer=qat_int8", "quantizer.reduce_range=no_way"], "quantizer.reduce_range", "true or false"),
    (["teacher_seed=0.5"], "teacher_seed", "integer or null"),
    # needs both models' shapes: caught by the preflight on the meta device, before the teacher is fine-tuned
    (["student=scratch", "student.hidden_size=16", "loss=distilbert"], "loss.cos_weight", "equal widths"),
]


@pytest.mark.parametrize("overrides,key,allowed", BAD_INPUTS, ids=[" ".join(o) for o, _, _ in BAD_INPUTS])
def test_bad_input_names_key(overrides, key, allowed, compose_cfg, shared_cache_dir, tmp_path):
    with pytest.raises(ConfigError) as err:
        run(compose_cfg(*overrides, "trainer.fast_dev_run=true", f"paths.cache_dir={shared_cache_dir}"), {})
    assert err.value.key == key and allowed in err.value.message
    assert "\n" not in str(err.value)
    assert not (tmp_path / "mlflow.db").exists() or finished_runs(tmp_path).empty  # no MLflow run at all
    assert not list(tmp_path.rglob("*.tmp*")) and not list(shared_cache_dir.rglob("*.tmp*"))  # nothing half-written


def test_malformed_line_names_file_and_line(compose_cfg, text_lines_dir, tmp_path):
    dev = text_lines_dir / "dev.txt"
    lines = dev.read_text().splitlines()
    lines[2] = "positive this line has a word label"
    dev.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as err:
        run(compose_cfg("data=text_lines", f"data.path={text_lines_dir}", "trainer.fast_dev_run=true"), {})
    assert err.value.key == "data.path" and f"{dev}:3:" in err.value.message
    assert not (tmp_path / "mlflow.db").exists() or finished_runs(tmp_path).empty
    assert not (tmp_path / ".cache/distilkit/teachers").exists()


def test_label_count_mismatch(compose_cfg, tiny_bert_dir, text_lines_dir):
    # tiny_bert_dir has a 2-label head; the data has 3 classes; finetuned=true keeps the head
    with pytest.raises(ConfigError) as err:
        run(compose_cfg("data=text_lines", f"data.path={text_lines_dir}", "teacher=minilm", f"teacher.name_or_path={tiny_bert_dir}", "teacher.finetuned=true", "trainer.fast_dev_run=true"), {})
    assert err.value.key == "teacher.name_or_path" and "2 labels" in err.value.message and "3" in err.value.message


def test_teacher_key_unchanged_by_single_node_but_changed_by_more(compose_cfg):
    """trainer.num_nodes joined the key later: at 1 it must leave cached teachers' keys as they were."""
    from omegaconf import open_dict

    from distilkit.pipeline import Run

    def key(*overrides, drop=False):
        cfg = compose_cfg(*overrides)
        if drop:
            with open_dict(cfg):
                del cfg.trainer["num_nodes"]
        return Run(cfg, {}).teacher_key()[0]

    one = key()
    assert one == key(drop=True)  # as if the key had never had num_nodes
    assert key("trainer.num_nodes=2") != one
    assert key("seed=1") != one  # the key does depend on what the fine-tune depends on
