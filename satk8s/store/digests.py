"""sha256 of local files, remembered by their stat so a file is read once while it is unchanged.

A record per directory lives in the local cache (`<cache>/digests/`). It keeps, per file, the
size, modification time, change time and inode seen when it was hashed; a file whose stat
still matches is not read again. The change time cannot be set by a process (unlike the
modification time), so any write to the file, even one that restores its mtime, makes it read
again. Used to check cached inputs before every use and to digest local models for keys.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from satk8s.store.manifest import sha256_file


def _record_path(root: Path) -> Path:
    from satk8s.store.cache import cache_root

    slot = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:24]
    return cache_root() / "digests" / f"{slot}.json"


def _stamp(stat: os.stat_result) -> list[int]:
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]


def file_sha256s(root: Path, rel_paths: Iterable[str]) -> dict[str, tuple[int, str]]:
    """{relative path: (size, sha256)} of files below `root`; files that do not exist are left
    out. Hashes only files whose stat changed since the last call."""
    root = Path(root)
    record_path = _record_path(root)
    try:
        record: dict[str, Any] = json.loads(record_path.read_text())
    except (OSError, ValueError):
        record = {}
    found: dict[str, tuple[int, str]] = {}
    changed = False
    for rel in rel_paths:
        path = root / rel
        try:
            stat = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            continue
        stamp = _stamp(stat)
        seen = record.get(rel)
        if seen is None or seen[:4] != stamp:
            seen = [*stamp, sha256_file(path)]
            record[rel] = seen
            changed = True
        found[rel] = (stat.st_size, seen[4])
    if changed:
        record_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = record_path.with_name(f".{record_path.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, record_path)
    return found
