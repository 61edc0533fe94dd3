"""task.store_logits=false (the teacher online in every step: same numbers, no logit store) and the
trained student logged as an MLflow PyTorch model that loads back and gives the student's logits."""

from __future__ import annotations

import copy
from functools import partial

import mlflow
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from conftest import CONF, TINY
from distilkit.data.batching import pad_batch
from distilkit.losses.kd import KDLoss
from distilkit.training.logit_store import LogitStore, predict_logits
from distilkit.training.module import DistillModule

STUDENT_METRICS = ("student/dev_acc", "student/test_acc", "student/dev_nll", "student/test_nll", "student/dev_kl_to_teacher")
TOLERANCE = 1e-5  # absolute, on accuracies, NLL and KL: the two runs differ only in float summation order


def tiny_bert(layers: int, seed: int):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=64, num_labels=3)
    return BertForSequenceClassification(config).eval()


def test_online_teacher_step_equals_the_stored_logits_step():
    """The KD loss of one training step: the frozen teacher run in the step == its stored logits in the batch."""
    teacher, student = tiny_bert(2, 0), tiny_bert(1, 1)
    with torch.no_grad():
        teacher.classifier.weight.mul_(200)  # a confident teacher: the KD term depends on its logits
    rows = [torch.randint(1, 50, (n,), generator=torch.Generator().manual_seed(n)).tolist() for n in (3, 9, 5, 7)]
    batch = pad_batch(rows, pad_id=0) | {"labels": torch.tensor([0, 1, 2, 1])}
    stored = predict_logits(teacher, {k: batch[k] for k in ("input_ids", "attention_mask")})
    loss = KDLoss(T=2.0, alpha=0.9)
    make = partial(DistillModule, copy.deepcopy(student), loss, optimizer=partial(torch.optim.AdamW, lr=1e-3), teacher=teacher)
    from_store, online = make(), make(online_teacher=True)
    assert from_store.teacher is None and online.teacher is teacher  # only the online module holds the teacher
    online.train()  # the teacher stays in eval mode (no dropout) while the student trains
    assert online.student.training and not online.teacher.training
    online.eval()  # no dropout in the student either: the two steps compare exactly
    with torch.no_grad():
        want = from_store.training_step(batch | {"teacher_logits": stored}, 0)
        got = online.training_step(batch, 0)  # no teacher_logits in the batch
        wrong = from_store.training_step(batch | {"teacher_logits": stored.roll(1, dims=0)}, 0)
    assert torch.allclose(got["loss"], want["loss"], atol=1e-6, rtol=1e-6)
    assert abs(wrong["loss"] - want["loss"]) > 1e-3  # the loss does depend on the teacher's logits


@pytest.fixture(scope="session")
def store_runs(tmp_path_factory, shared_cache_dir):
    """Two tiny runs in one MLflow store: the logit store off (first), then on; LogitStore calls recorded."""
    from distilkit.pipeline import run

    root = tmp_path_factory.mktemp("store_runs")
    calls: list[str] = []
    store_dir = shared_cache_dir / "teacher_logits"
    originals = {name: getattr(LogitStore, name) for name in ("load", "get_or_compute")}

    def spy(name):
        def wrapped(self, key, *args, **kwargs):
            calls.append(name)
            return originals[name](self, key, *args, **kwargs)
        return wrapped

    out = {}
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            for store in (False, True):
                cfg = compose(config_name="config", overrides=[f"paths.root_dir={root}", f"paths.cache_dir={shared_cache_dir}", *TINY,
                                                               "hardware.measure.runtimes=[onnxruntime]", f"task.store_logits={str(store).lower()}"])
                before = sorted(store_dir.glob("*.pt")) if store_dir.is_dir() else []
                calls.clear()
                for name in originals:
                    setattr(LogitStore, name, spy(name))
                try:
                    metrics = run(cfg, {})
                finally:
                    for name, fn in originals.items():
                        setattr(LogitStore, name, fn)
                after = sorted(store_dir.glob("*.pt")) if store_dir.is_dir() else []
                out[store] = {"metrics": metrics, "calls": list(calls), "new_files": [p for p in after if p not in before],
                              "files_after": after}
    finally:
        GlobalHydra.instance().clear()
    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
    found = mlflow.search_runs(search_all_experiments=True)
    out["run_id"] = {store: found.loc[found["params.task.store_logits"] == str(store), "run_id"].item() for store in (False, True)}
    out["root"] = root
    return out


def test_store_off_trains_the_same_student_and_touches_no_logit_store(store_runs):
    off, on = store_runs[False], store_runs[True]
    assert off["calls"] == [] and off["new_files"] == []  # store off: nothing read, nothing written
    assert "get_or_compute" in on["calls"] and len(on["files_after"]) >= 3  # store on: train/dev/test logits in the store
    for name in STUDENT_METRICS + ("teacher/dev_acc", "teacher/test_acc"):
        assert off["metrics"][name] == pytest.approx(on["metrics"][name], abs=TOLERANCE), name


def test_torch_student_is_an_mlflow_model_that_loads_back_with_the_students_logits(store_runs):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    run_id = store_runs["run_id"][True]
    mlflow.set_tracking_uri(f"sqlite:///{store_runs['root']}/mlflow.db")
    experiment = mlflow.get_run(run_id).info.experiment_id
    models = mlflow.search_logged_models(experiment_ids=[experiment], filter_string=f"source_run_id = '{run_id}' AND name = 'student_torch'", output_format="list")
    assert len(models) == 1
    uri = f"models:/{models[0].model_id}"
    loaded = mlflow.pytorch.load_model(uri)
    student_dir = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="student", dst_path=str(store_runs["root"] / "dl"))
    student = AutoModelForSequenceClassification.from_pretrained(student_dir).eval()  # the run's student artifact
    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    enc = tokenizer(["not bad at all", "a dull and tired film", "good"], padding=True, return_tensors="pt")
    with torch.inference_mode():
        want = student(**enc).logits
        got = loaded(enc["input_ids"], enc["attention_mask"])
        no_mask = loaded(enc["input_ids"])  # the mask taken from the pad id
    assert torch.allclose(got, want, atol=1e-5) and torch.allclose(no_mask, want, atol=1e-5)
    pyfunc = mlflow.pyfunc.load_model(uri)  # what MLflow serves: int64 ids [batch, seq] in, logits out
    assert pyfunc.metadata.signature is not None
    np.testing.assert_allclose(pyfunc.predict(enc["input_ids"].numpy()), want.numpy(), atol=1e-5)


def test_a_student_that_captured_hidden_states_still_pickles_and_captures_after_loading():
    """loss=distilbert/intermediate run the student with output_hidden_states: transformers then installs
    capture hooks whose closures can't be pickled; log_student pickles without them, and keeps them."""
    import cloudpickle

    from distilkit.tracking.torch_model import LogitsFromIds, without_capturing_hooks

    model = LogitsFromIds(tiny_bert(1, 0), pad_token_id=0)
    ids = torch.randint(1, 50, (2, 7), generator=torch.Generator().manual_seed(0))
    model.student(input_ids=ids, output_hidden_states=True)
    hooks = sum(len(m._forward_hooks) for m in model.modules())
    with pytest.raises(TypeError, match="ContextVar"):
        cloudpickle.dumps(model)
    with without_capturing_hooks(model):
        blob = cloudpickle.dumps(model)
    assert sum(len(m._forward_hooks) for m in model.modules()) == hooks > 0  # the run's student is left as it was
    back = cloudpickle.loads(blob)
    assert torch.equal(back(ids), model(ids))
    assert len(back.student(input_ids=ids, output_hidden_states=True).hidden_states) == 2
