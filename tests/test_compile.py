"""``hardware.compile=true``: the student's fit runs through torch.compile; export and measurement see the plain student."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

from distilkit.errors import ConfigError
from distilkit.pipeline import run
from distilkit.training.module import DistillModule


def test_hardware_compile_trains_the_student_compiled(compose_cfg, shared_cache_dir, monkeypatch):
    real_compile, compiled = torch.compile, []

    def eager_compile(fn, **options):  # inductor's C++ build takes minutes on this CPU: dynamo with its eager backend
        compiled.append(fn)
        return real_compile(fn, **{**options, "backend": "eager"})

    monkeypatch.setattr(torch, "compile", eager_compile)
    torch._dynamo.reset()
    counters.clear()
    during_fit, original_step = [], DistillModule.training_step

    def step(self, batch, i):
        if not self.prefix:  # the student's fit ("teacher/": the teacher's fine-tune, never compiled)
            during_fit.append(self.student._compiled_call_impl is not None)
        return original_step(self, batch, i)

    monkeypatch.setattr(DistillModule, "training_step", step)
    students = []
    monkeypatch.setattr("distilkit.pipeline.Run.deploy", lambda self, trained, out, real=__import__("distilkit.pipeline").pipeline.Run.deploy:
                        students.append(trained) or real(self, trained, out))
    metrics = run(compose_cfg("hardware.compile=true", "trainer.fast_dev_run=true", f"paths.cache_dir={shared_cache_dir}"), {})
    assert len(compiled) == 1 and during_fit == [True]  # the student alone, compiled for its fit
    assert counters["stats"]["unique_graphs"] >= 1  # dynamo traced its forward
    assert students[0]._compiled_call_impl is None  # export and measurement get the plain module
    assert metrics["deploy/parity_pass"] == 1.0
    torch._dynamo.reset()


def test_hardware_compile_must_be_a_bool(compose_cfg):
    with pytest.raises(ConfigError, match="^hardware.compile: must be true or false"):
        run(compose_cfg("hardware.compile=fast"), {})
