"""A training loader whose epoch order can be drawn again, so a fit resumed mid-epoch sees the batches
it had not yet trained on, in the order the interrupted fit would have seen them.

The order of a shuffled epoch comes from torch's global generator (``RandomSampler`` draws its seed
from it; ``LengthBucketBatchSampler`` shuffles its batches with it; under DDP Lightning's
``DistributedSampler`` orders by ``(seed, epoch)`` and draws nothing). :class:`ReplayableLoader` draws
the whole epoch's order when it is iterated and records the generator state it drew from in its
:class:`EpochOrder`; a checkpoint keeps that state (``distilkit.training.checkpoint.ResumeState``), and
on resume the loader draws the same order from it, drops the batches already trained, and leaves the
generator as it was at the checkpoint (dropout continues as if never stopped).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader


@dataclass
class Replay:
    """Draw the next epoch from ``order_rng``, skip its first ``skip`` batches, then set the generator to ``after_rng``."""

    order_rng: torch.Tensor
    skip: int
    after_rng: torch.Tensor


class EpochOrder:
    """Shared by a loader and the checkpoint callback (and by the copy Lightning makes of the loader
    under DDP, which receives the same constructor arguments)."""

    def __init__(self) -> None:
        self.rng: torch.Tensor | None = None  # the generator state the current epoch's order was drawn from
        self.replay: Replay | None = None  # set on resume, used by the next iteration


class _ResumedEpoch:
    """The index sampler of a resumed epoch. Its first ``next`` draws the whole order, as the sampler of
    the interrupted epoch did at that point, drops the batches already trained, and sets the generator
    to its state at the checkpoint."""

    def __init__(self, sampler, replay: Replay):
        self.sampler, self.replay = sampler, replay

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.replay.skip)

    def __iter__(self):
        epoch = list(self.sampler)
        torch.set_rng_state(self.replay.after_rng)
        yield from epoch[self.replay.skip :]


class ReplayableLoader(DataLoader):
    """A ``DataLoader`` (any sampler or batch sampler) that records the generator state each epoch's
    iteration starts from, and can replay an epoch from it (see the module docstring). A fresh epoch
    draws exactly as a plain ``DataLoader`` does (the iterator's worker base seed, then the order at the
    first batch), so results don't change with it."""

    def __init__(self, dataset, *args, order: EpochOrder | None = None, **kwargs):
        super().__init__(dataset, *args, **kwargs)
        self.order = order if order is not None else EpochOrder()
        self._resumed: _ResumedEpoch | None = None

    def _sampler(self):
        return DataLoader._index_sampler.fget(self)  # the batch sampler (or the sampler without batching)

    @property
    def _index_sampler(self):
        return self._resumed if self._resumed is not None else self._sampler()

    def __len__(self) -> int:
        return len(self._sampler())  # a whole epoch, also while a resumed one yields only its rest

    def __iter__(self):
        replay, self.order.replay = self.order.replay, None
        if replay is not None:
            torch.set_rng_state(replay.order_rng)
        self.order.rng = torch.get_rng_state()
        self._resumed = _ResumedEpoch(self._sampler(), replay) if replay is not None else None
        return super().__iter__()
