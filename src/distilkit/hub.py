"""Loading by Hugging Face hub name or local directory, with one clear line when that can't work offline.

``from_pretrained`` on a hub name with no network and no cache retries for about a minute and then
raises a generic OSError. We look first: a local directory or a cached name loads as usual; a name
that is neither, with the hub unreachable, fails at once with :class:`HubUnavailable`.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from distilkit.errors import ConfigError


class HubUnavailable(ConfigError):
    def __init__(self, key: str, name: str, local_option: str = "{key}=DIR"):
        home = os.environ.get("HF_HOME", "~/.cache/huggingface")
        super().__init__(
            key,
            f"{name!r} is not a local directory, not in the Hugging Face cache (HF_HOME={home}) and the hub "
            f"is unreachable: connect once to download it, set HF_HOME to a cache that has it, "
            f"or pass a local directory with {local_option}",
        )


def hub_reachable(timeout: float = 3.0) -> bool:
    """True when the hub endpoint accepts a TCP connection (and offline mode is not forced)."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _is_cached(name: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(name, "config.json"), str)


def from_pretrained(loader, name_or_path: str, key: str, **kwargs):
    """``loader.from_pretrained(name_or_path, **kwargs)`` that fails fast and clearly when offline."""
    if Path(name_or_path).is_dir():
        return loader.from_pretrained(name_or_path, **kwargs)
    if Path(name_or_path).exists() or name_or_path.startswith((".", "/")):
        raise ConfigError(key, f"{name_or_path!r} is not a model directory")
    if _is_cached(name_or_path) and not hub_reachable():
        return loader.from_pretrained(name_or_path, local_files_only=True, **kwargs)
    if not hub_reachable():
        raise HubUnavailable(key, name_or_path)
    return loader.from_pretrained(name_or_path, **kwargs)
