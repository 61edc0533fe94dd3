"""Open the study's storage: an RDB URL (sqlite default; heartbeat + retry of dead trials) or ``journal:FILE``."""

from __future__ import annotations

import optuna
import warnings
from pathlib import Path

from optuna.exceptions import ExperimentalWarning
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from distilkit.errors import ConfigError

JOURNAL = "journal:"


def open_storage(url: str, heartbeat_interval: int | None = None, grace_period: int | None = None, max_retry: int = 2):
    try:
        if url.startswith(JOURNAL):
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            return JournalStorage(JournalFileBackend(url.removeprefix(JOURNAL)))
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            retry = retry_callback(max_retry) if heartbeat_interval else None
            return RDBStorage(url, heartbeat_interval=heartbeat_interval or None, grace_period=grace_period, heartbeat_stale_trial_callback=retry)
    except Exception as err:  # noqa: BLE001 - any driver's error: the URL is the user's
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError("hydra.sweeper.storage", f"cannot open {url!r} ({first}); give an RDB URL (sqlite:///FILE, postgresql://..., mysql://...) or journal:FILE") from None



def retry_callback(max_retry: int) -> RetryHeartbeatStaleTrialCallback:
    """A failed trial is enqueued again with its parameters, up to ``max_retry`` times."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
