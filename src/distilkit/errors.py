"""The one error type for bad user input.

A ``ConfigError`` names the config key (relative to its group, e.g. ``T``) and what is allowed.
Code that builds a group's objects wraps the call in :func:`config_group` so the key that reaches
the user is the full one (``loss.T``), written once, by the entry point, as a single line.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


class ConfigError(ValueError):
    """Bad user input: ``key`` is the config key, ``message`` says what is wrong and what is allowed.

    ``{key}`` inside the message stands for the full key, so a hint like ``pass {key}=DIR`` reads
    ``pass teacher.name_or_path=DIR`` once the group is known.
    """

    def __init__(self, key: str, message: str):
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message.replace('{key}', key)}")


@contextmanager
def config_group(group: str) -> Iterator[None]:
    """Prefix the key of any ConfigError raised inside with ``group`` (``T`` -> ``loss.T``)."""
    try:
        yield
    except ConfigError as err:
        if err.key == group or err.key.startswith(group + "."):
            raise
        raise ConfigError(f"{group}.{err.key}", err.message) from err


def check(condition: bool, key: str, message: str) -> None:
    """Raise ``ConfigError(key, message)`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(key, message)


def is_int(value) -> bool:
    """An integer, and not a bool (YAML's ``true`` is an ``int`` to Python)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_bool(value, key: str) -> bool:
    """``value`` when it is a bool; else ``ConfigError(key, "must be true or false, got ...")``."""
    check(isinstance(value, bool), key, f"must be true or false, got {value!r}")
    return value


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the message names the step and the loss term."""
