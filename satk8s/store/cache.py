"""Local scratch for remote outputs: staging dirs that steps write into, and verified copies of
inputs. Under `$SATK8S_CACHE/store` (default `./.cache/store`) like the tiny-model cache, or
`$SATK8S_STORE_CACHE`."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import uuid
from pathlib import Path

from satk8s.store.layout import STAGING
from satk8s.store.uri import local_path, scheme_of

_HOST = socket.gethostname()


def cache_root() -> Path:
    """`$SATK8S_STORE_CACHE`, else `$SATK8S_CACHE/store` (default `./.cache/store`)."""
    if explicit := os.environ.get("SATK8S_STORE_CACHE"):
        return Path(explicit).expanduser().resolve()
    return Path(os.environ.get("SATK8S_CACHE", ".cache")).expanduser().resolve() / "store"


def _slot(uri: str) -> str:
    return hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:24]


def input_cache_dir(uri: str) -> Path:
    """Where a verified local copy of the remote location `uri` is kept."""
    return cache_root() / "inputs" / _slot(uri)


def new_staging(out: str) -> Path:
    """A fresh, private directory to write the output for `out` into.

    One per writer, so two writers of the same output never touch each other's files. For a
    local store it sits inside the output (`.staging/`), on the same filesystem, so committing
    a file is a hard link; for S3, in the cache. Staging dirs of dead writers are removed.
    """
    base = (
        local_path(out) / STAGING
        if scheme_of(out) == "file"
        else cache_root() / "staging" / _slot(out)
    )
    base.mkdir(parents=True, exist_ok=True)
    _remove_dead(base)
    writer = base / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    (writer / "root").mkdir(parents=True)
    (writer / "owner.json").write_text(json.dumps({"out": out, "host": _HOST, "pid": os.getpid()}))
    return writer / "root"


def staged_target(root: Path) -> str | None:
    """The output location a staging dir belongs to, or None if `root` is not one."""
    owner = Path(root).parent / "owner.json"
    return json.loads(owner.read_text())["out"] if owner.is_file() else None


def drop_staging(root: Path) -> None:
    if staged_target(root) is not None:
        shutil.rmtree(Path(root).parent, ignore_errors=True)


def _remove_dead(base: Path) -> None:
    from satk8s.store.lease import pid_alive

    for writer in base.iterdir():
        try:
            owner = json.loads((writer / "owner.json").read_text())
        except (OSError, ValueError):
            continue
        if owner.get("host") == _HOST and not pid_alive(int(owner.get("pid", -1))):
            shutil.rmtree(writer, ignore_errors=True)
