"""The distributed path without launching processes: what each DistributedSampler shard sees, and
what the hardware group hands Lightning (multi_node, fsdp); bad hardware values as one ConfigError."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.trainer.connectors.data_connector import _get_distributed_sampler
from lightning.pytorch.utilities.data import _update_dataloader

from distilkit.data.synthetic import SyntheticData
from distilkit.errors import ConfigError
from distilkit.models.tokenizer import train_wordpiece
from distilkit.training.distributed import check_hardware, check_multirun

SLURM_2x2 = {  # what srun sets for task 3 of --nodes=2 --ntasks-per-node=2
    "SLURM_NTASKS": "4", "SLURM_NTASKS_PER_NODE": "2", "SLURM_JOB_NAME": "distilkit", "SLURM_NODELIST": "n[1-2]",
    "SLURM_PROCID": "3", "SLURM_LOCALID": "1", "SLURM_NODEID": "1", "SLURM_JOB_ID": "42",
}


def _sharded_data():
    data = SyntheticData(num_train=37, num_dev=8, num_test=8, max_length=16, batch_size=4)
    data.tokenize(train_wordpiece(data.texts("train"), vocab_size=120))
    n = len(data.splits["train"])
    logits = torch.randn(n, data.num_classes)  # any rows: what matters is which row reaches which example
    data.attach_teacher_logits(logits)
    return data, logits


def _rows_seen(loader, data, logits) -> dict[tuple, torch.Tensor]:
    """Each example (its token ids, unique in this split) -> the teacher row its batch carried."""
    index_of = {tuple(ids): i for i, ids in enumerate(data.encoded["train"]["input_ids"])}
    assert len(index_of) == len(logits), "examples must be distinguishable by their token ids"
    seen = {}
    for batch in loader:
        for ids, mask, row in zip(batch["input_ids"], batch["attention_mask"], batch["teacher_logits"]):
            seen[index_of[tuple(ids[mask.bool()].tolist())]] = row
    return seen


def test_each_distributed_shard_gets_the_teacher_rows_of_its_own_examples():
    """Lightning swaps the training sampler for a DistributedSampler; the stored logits ride with the
    examples (looked up by example index in the Dataset), so every shard gets, for each of its examples,
    the row the 1-process run gives it."""
    data, logits = _sharded_data()
    single = _rows_seen(data.train_dataloader(), data, logits)
    assert len(single) == len(logits)
    shards = []
    for rank in range(2):
        loader = data.train_dataloader()
        sampler = _get_distributed_sampler(loader, shuffle=True, overfit_batches=0, num_replicas=2, rank=rank, seed=7)
        shards.append(_rows_seen(_update_dataloader(loader, sampler), data, logits))
    assert set(shards[0]) | set(shards[1]) == set(range(len(logits)))  # the shards cover every example
    assert 0 < len(set(shards[0]) - set(shards[1])) < len(logits)  # and really split the data
    for shard in shards:
        for i, row in shard.items():
            assert torch.equal(row, single[i]) and torch.equal(row, logits[i])


def test_multi_node_composes_and_lightning_sees_the_slurm_world(compose_cfg, monkeypatch):
    cfg = compose_cfg("hardware=multi_node", "hardware.accelerator=cpu", "hardware.devices=2", "hardware.precision=32-true")
    assert cfg.trainer.num_nodes == 2 and cfg.trainer.strategy == "ddp"
    with pytest.raises(ConfigError, match=r"^hardware.num_nodes: .*torchrun.*SLURM"):
        check_hardware(cfg.hardware)  # no launcher environment here
    for key, value in SLURM_2x2.items():
        monkeypatch.setenv(key, value)
    # Lightning records the (fake) rank process-wide when it builds the strategy: undone after the test
    from lightning.pytorch.utilities.rank_zero import rank_zero_only
    from lightning_utilities.core.rank_zero import rank_zero_only as utils_rank_zero_only

    for fn in (rank_zero_only, utils_rank_zero_only):
        monkeypatch.setattr(fn, "rank", getattr(fn, "rank", 0))
    assert check_hardware(cfg.hardware) == {}
    trainer = instantiate(cfg.trainer, logger=False)  # builds the strategy; nothing is launched before fit
    from lightning.fabric.plugins.environments import SLURMEnvironment

    assert isinstance(trainer.strategy.cluster_environment, SLURMEnvironment)
    assert (trainer.num_nodes, trainer.num_devices, trainer.world_size) == (2, 2, 4)
    assert (trainer.global_rank, trainer.node_rank, trainer.local_rank) == (3, 1, 1)


def test_fsdp_composes_into_the_strategy_lightning_expects(compose_cfg):
    from lightning.pytorch.strategies import FSDPStrategy
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy
    from transformers.models.bert.modeling_bert import BertLayer

    cfg = compose_cfg("hardware=fsdp")
    strategy = instantiate(cfg.trainer.strategy)
    assert isinstance(strategy, FSDPStrategy)
    policy = strategy.kwargs["auto_wrap_policy"]
    assert isinstance(policy, ModuleWrapPolicy) and policy._module_classes == {BertLayer}
    assert strategy.kwargs["use_orig_params"] is True and str(strategy.sharding_strategy).endswith("FULL_SHARD")
    assert cfg.trainer.precision == "bf16-mixed"


@pytest.mark.parametrize(
    "overrides, key",
    [
        (("hardware=cpu", "hardware.devices=100000"), "hardware.devices"),
        (("hardware=ddp_cpu", "hardware.devices=0"), "hardware.devices"),
        (("hardware=gpu",), "hardware.accelerator"),  # no CUDA device on the test machine
        (("hardware=ddp_cpu", "hardware.num_nodes=2"), "hardware.num_nodes"),
        (("hardware.matmul_precision=fast",), "hardware.matmul_precision"),
    ],
)
def test_bad_hardware_is_one_config_error(compose_cfg, overrides, key):
    if key == "hardware.accelerator" and torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(ConfigError) as err:
        check_hardware(compose_cfg(*overrides).hardware)
    assert err.value.key == key and "\n" not in str(err.value)


def test_multirun_with_several_processes_needs_a_launcher(compose_cfg, monkeypatch):
    """Lightning's launcher re-runs ``sys.argv`` for ranks > 0: under ``-m`` that is the whole sweep."""
    ddp = compose_cfg("hardware=ddp_cpu").hardware
    with pytest.raises(ConfigError, match=r"^hardware.devices: .*torchrun"):
        check_multirun(ddp, multirun=True)
    check_multirun(ddp, multirun=False)  # a single run: Lightning launches the ranks itself
    check_multirun(compose_cfg().hardware, multirun=True)  # one process per job: nothing to launch
    for key, value in {"RANK": "0", "GROUP_RANK": "0", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2", "WORLD_SIZE": "2",
                       "TORCHELASTIC_RUN_ID": "x", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(key, value)
    check_multirun(ddp, multirun=True)  # under torchrun every rank runs the same sweep in step
