"""What a run needs to know about the other processes of its job: which rank writes, where to wait,
and whether the ``hardware`` group asks for something this machine or launcher can give.

Under DDP every rank runs the whole script (Lightning's subprocess launcher re-runs the command for
ranks > 0; ``torchrun`` and SLURM start every rank themselves). Caches and the MLflow run are written
by global rank 0 only; the other ranks wait at a barrier and then read what rank 0 wrote.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
import torch.distributed as dist
from lightning.fabric.utilities.rank_zero import rank_zero_only

from distilkit.errors import ConfigError, check, check_bool

log = logging.getLogger(__name__)


def global_rank() -> int:
    """This process's global rank: Lightning's, set from RANK/LOCAL_RANK/SLURM_PROCID at import and by the strategy."""
    return int(getattr(rank_zero_only, "rank", 0) or 0)


def is_rank_zero() -> bool:
    return global_rank() == 0


def barrier() -> None:
    """Wait for every rank, where a process group exists (a single process: nothing to wait for)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


@contextmanager
def exclusive(lock_path: Path, timeout_s: float = 6 * 3600) -> Iterator[None]:
    """One process at a time across independent jobs sharing a cache (a file lock; rank 0 of each job
    takes it, the job's other ranks follow rank 0 through barriers and never hold it, so a DDP fit
    inside the locked section can't deadlock on a rank waiting for the lock)."""
    if not is_rank_zero():
        yield
        return
    from filelock import FileLock

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_path), timeout=timeout_s):
        yield


# -- the hardware group, checked in the preflight -----------------------------------------------
def launcher_environment() -> str | None:
    """The cluster environment that started this process (torchrun, SLURM, LSF, Kubeflow), or None."""
    from lightning.fabric.plugins.environments import (
        KubeflowEnvironment,
        LSFEnvironment,
        SLURMEnvironment,
        TorchElasticEnvironment,
    )

    for name, env in (("torchrun", TorchElasticEnvironment), ("SLURM", SLURMEnvironment), ("LSF", LSFEnvironment), ("Kubeflow", KubeflowEnvironment)):
        try:
            if env.detect():
                return name
        except Exception:  # a half-set environment is not a launcher
            continue
    return None


def available_devices(accelerator: str) -> int:
    if accelerator in ("gpu", "cuda"):
        return torch.cuda.device_count()
    return os.cpu_count() or 1


def check_hardware(hardware) -> dict:
    """Check the ``hardware`` group against this machine and launcher; return the Trainer settings that
    differ from the config (bf16 on a GPU without it falls back to fp16-mixed with one warning line)."""
    accelerator, devices = str(hardware.accelerator), hardware.devices
    num_nodes = int(hardware.get("num_nodes", 1) or 1)
    have = available_devices(accelerator)
    if accelerator in ("gpu", "cuda"):
        check(have > 0, "hardware.accelerator", f"'{accelerator}' asked for but no CUDA device is visible; use hardware=cpu or hardware=ddp_cpu")
    if isinstance(devices, int):
        check(devices >= 1, "hardware.devices", f"must be >= 1 or 'auto', got {devices}")
        check(devices <= have, "hardware.devices", f"{devices} {accelerator} devices asked for, {have} available on this machine")
    check(num_nodes >= 1, "hardware.num_nodes", f"must be >= 1, got {num_nodes}")
    if num_nodes > 1:
        check(
            launcher_environment() is not None,
            "hardware.num_nodes",
            f"{num_nodes} nodes need a launcher that starts every process: run under torchrun (--nnodes) or SLURM (srun); "
            "none was detected",
        )
    overrides = {}
    precision = str(hardware.precision)
    if precision.startswith("bf16") and accelerator in ("gpu", "cuda") and not torch.cuda.is_bf16_supported():
        fallback = precision.replace("bf16", "16")
        log.warning("hardware.precision=%s: this GPU has no bf16; training in %s", precision, fallback)
        overrides["precision"] = fallback
    matmul = hardware.get("matmul_precision")
    if matmul is not None:
        check(str(matmul) in ("highest", "high", "medium"), "hardware.matmul_precision", f"highest, high or medium, got {matmul!r}")
    compile_ = hardware.get("compile", False)
    check_bool(compile_, "hardware.compile")
    return overrides


def apply_hardware(hardware) -> None:
    """Process-wide settings of the group (float32 matmul precision: TF32 on Ampere+ when 'high')."""
    matmul = hardware.get("matmul_precision")
    if matmul is not None:
        torch.set_float32_matmul_precision(str(matmul))


def check_multirun(hardware, multirun: bool) -> None:
    """Several processes per job in a Hydra multirun need a launcher that starts them (torchrun, SLURM):
    Lightning's own launcher re-runs the command line for ranks > 0, which would re-run the whole sweep."""
    devices = hardware.devices
    several = str(hardware.strategy) != "auto" and (not isinstance(devices, int) or devices > 1 or int(hardware.get("num_nodes", 1) or 1) > 1)
    if multirun and several and launcher_environment() is None:
        raise ConfigError(
            "hardware.devices",
            f"a Hydra multirun (-m) with devices={devices} needs every process started by a launcher: "
            "torchrun --nproc-per-node N -m train -m ..., or srun under SLURM",
        )
