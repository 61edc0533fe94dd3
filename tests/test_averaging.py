"""averaging=ema: the student validated, resumed and deployed is the exponential moving average of its steps."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from distilkit.errors import ConfigError
from distilkit.training.averaging import NoAveraging, StudentEMA


class Tiny(L.LightningModule):
    """A student (``self.student``, as distilkit's modules have) and a frozen part that must not be averaged."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.student = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
        self.frozen = nn.Linear(4, 4).requires_grad_(False)
        self.seen_in_validation = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.student(self.frozen(x)), y)

    def validation_step(self, batch, batch_idx):
        if batch_idx == 0:
            self.seen_in_validation.append(flat(self.student))

    def configure_optimizers(self):
        return torch.optim.SGD(self.student.parameters(), lr=0.5)


class Trajectory(L.Callback):
    """The student's weights after every optimizer step."""

    def __init__(self):
        self.steps = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps.append(flat(pl_module.student))


def flat(module: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()]).clone()


def loader(seed: int = 0) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(40, 4, generator=g)
    return DataLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=8)


def trainer(callbacks, epochs=2) -> L.Trainer:
    saves = any(isinstance(c, ModelCheckpoint) for c in callbacks)
    return L.Trainer(max_epochs=epochs, callbacks=callbacks, logger=False, enable_checkpointing=saves, enable_progress_bar=False,
                     enable_model_summary=False, num_sanity_val_steps=0)


def fit(callbacks, epochs=2, ckpt_path=None) -> Tiny:
    module = Tiny()
    trainer(callbacks, epochs).fit(module, loader(), loader(1), ckpt_path=ckpt_path, weights_only=True)
    return module


def ema(start: torch.Tensor, steps: list[torch.Tensor], decay: float) -> list[torch.Tensor]:
    """The average after each step, computed by hand."""
    average, out = start.clone(), []
    for n, weights in enumerate(steps, start=1):
        average += (1 - min(decay, (1 + n) / (10 + n))) * (weights - average)
        out.append(average.clone())
    return out


def test_ema_is_deployed_validated_and_leaves_training_alone():
    start = flat(Tiny().student)
    plain, averaged = Trajectory(), Trajectory()
    last = fit([NoAveraging(), plain])
    module = fit([StudentEMA(decay=0.9), averaged])
    assert len(averaged.steps) == 10
    # validation swaps the average in and back out: the training trajectory is the plain run's, exactly
    assert all(torch.equal(a, b) for a, b in zip(averaged.steps, plain.steps))
    expected = ema(start, averaged.steps, 0.9)
    assert torch.allclose(flat(module.student), expected[-1], atol=1e-6)  # deployed: the average
    assert not torch.allclose(flat(module.student), flat(last.student), atol=1e-3)  # not the last step's weights
    # each epoch's validation saw the average after that epoch's 5 steps
    assert len(module.seen_in_validation) == 2
    for seen, step in zip(module.seen_in_validation, (4, 9)):
        assert torch.allclose(seen, expected[step], atol=1e-6)
    assert torch.equal(module.frozen.weight, Tiny().frozen.weight)  # only the student is averaged


def test_ema_resumes_from_a_checkpoint(tmp_path):
    whole = fit([StudentEMA(decay=0.8)])
    saver = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=5, save_top_k=-1, save_on_train_epoch_end=False)
    fit([StudentEMA(decay=0.8), saver], epochs=1)
    ckpt = next(tmp_path.glob("*step=5.ckpt"))
    resumed = fit([StudentEMA(decay=0.8)], ckpt_path=ckpt)
    assert torch.allclose(flat(resumed.student), flat(whole.student), atol=1e-6)
    # a fresh average from the resumed weights instead would not give the uninterrupted run's
    state = torch.load(ckpt, weights_only=True)
    state["callbacks"] = {}
    torch.save(state, tmp_path / "no_average.ckpt")
    restarted = fit([StudentEMA(decay=0.8)], ckpt_path=tmp_path / "no_average.ckpt")
    assert not torch.allclose(flat(restarted.student), flat(whole.student), atol=1e-4)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.5, "fast", True])
def test_bad_decay_is_one_config_error(bad):
    with pytest.raises(ConfigError) as err:
        StudentEMA(decay=bad)
    assert err.value.key == "decay" and "(0, 1)" in err.value.message


def test_ema_in_the_pipeline_deploys_the_average(compose_cfg, shared_cache_dir):
    from distilkit.pipeline import Run

    cache = f"paths.cache_dir={shared_cache_dir}"
    plain = Run(compose_cfg(cache, "trainer.max_epochs=2"), {})()
    averaged_run = Run(compose_cfg(cache, "trainer.max_epochs=2", "averaging=ema", "averaging.decay=0.9"), {"averaging": "ema"})
    averaged = averaged_run()
    assert averaged["deploy/parity_pass"] == 1.0  # what was exported is the model the average made
    fit_metrics = [k for k in plain if k.startswith(("student/dev_", "student/test_"))]  # NLL and KL move where accuracy may not
    assert "student/dev_nll" in fit_metrics
    assert any(plain[k] != averaged[k] for k in fit_metrics), "averaging=ema deployed the same student as averaging=none"
