"""What a model source is, for cache keys: local directories by content, hub names by commit.

* A local directory counts by the bytes of its files (relative path and SHA-256 of each), so
  overwriting a checkpoint in place changes every key built on it, and two copies of one
  checkpoint share their cache entries. File digests are remembered by (path, size, mtime) in
  ``file_hashes.json`` under the cache directory, so an unchanged multi-GB checkpoint is read once.
* A hub name counts by the commit it resolves to: the hub's answer when it is reachable, else
  the commit of the locally cached snapshot.
* The library versions that produce the bytes (torch, transformers) are part of every key.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
import transformers

from distilkit.hub import hub_reachable

CHUNK = 1 << 20


def library_versions() -> dict[str, str]:
    return {"torch": torch.__version__, "transformers": transformers.__version__}


class FileHashes:
    """SHA-256 of files, remembered by (absolute path, size, mtime_ns) in a JSON file."""

    def __init__(self, memo_path: str | Path):
        self.memo_path = Path(memo_path)
        self._memo: dict[str, list] | None = None

    def _load(self) -> dict[str, list]:
        if self._memo is None:
            try:
                self._memo = json.loads(self.memo_path.read_text())
            except (OSError, ValueError):
                self._memo = {}
        return self._memo

    def digest(self, path: Path) -> str:
        path = Path(path).resolve()
        stat = path.stat()
        memo = self._load()
        stamp = [stat.st_size, stat.st_mtime_ns]
        known = memo.get(str(path))
        if known and known[:2] == stamp:
            return known[2]
        sha = hashlib.sha256()
        with open(path, "rb") as handle:
            while block := handle.read(CHUNK):
                sha.update(block)
        memo[str(path)] = [*stamp, sha.hexdigest()]
        self._save()
        return sha.hexdigest()

    def _save(self) -> None:
        self.memo_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.memo_path.with_name(f".{self.memo_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self._memo))
        os.replace(tmp, self.memo_path)

    def directory(self, root: Path) -> str:
        """Digest of every file under ``root`` (hidden files and folders skipped), by relative path."""
        root = Path(root)
        sha = hashlib.sha256()
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = path.relative_to(root)
            if any(part.startswith(".") for part in rel.parts):
                continue
            sha.update(f"{rel.as_posix()}\t{self.digest(path)}\n".encode())
        return sha.hexdigest()[:20]


def hub_commit(name: str) -> str | None:
    """The commit ``name`` resolves to: the hub's when reachable, else the cached snapshot's; None if neither."""
    if hub_reachable():
        from huggingface_hub import HfApi

        try:
            return HfApi().model_info(name).sha
        except Exception:  # a name the hub doesn't know fails later in from_pretrained, with its own message
            return None
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(name, "config.json")
    return Path(cached).parent.name if isinstance(cached, str) else None


def model_source(name_or_path: str, hashes: FileHashes) -> dict[str, str | None]:
    """``{"dir": content digest}`` for a local directory, ``{"hub": name, "commit": sha}`` for a hub name."""
    if Path(name_or_path).is_dir():
        return {"dir": hashes.directory(Path(name_or_path))}
    return {"hub": name_or_path, "commit": hub_commit(name_or_path)}
