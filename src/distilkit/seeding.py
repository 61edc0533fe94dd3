"""Seeds per stage: each stage draws from its own stream, derived from (seed, stage name).

A stage is seeded right before it runs, so what it draws does not depend on what ran, or was
skipped, before it: a teacher loaded from the cache (no fine-tuning, no random numbers drawn)
leaves the student's initialization, dropout masks and data order exactly as a cold run has them.
"""

from __future__ import annotations

import hashlib

import lightning as L


def stage_seed(seed: int, stage: str) -> int:
    """A 32-bit seed for ``stage``, a pure function of ``(seed, stage)``."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{stage}".encode()).digest()[:4], "little")


def seed_stage(seed: int, stage: str) -> int:
    """Seed Python, NumPy and torch (every device) for ``stage``; returns the derived seed."""
    derived = stage_seed(seed, stage)
    L.seed_everything(derived, workers=True, verbose=False)
    return derived
