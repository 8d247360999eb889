"""The manifest that marks a step output as finished.

It is written last, after every file of the output is in the store: an output without one is
unfinished, whatever else is there. It lists every file with its size and sha256 (so a read
can detect a truncated or corrupted object), the resolved config, the inputs (absolute
locations) and their digests, the models read (reference, identity, where the weights were
read from), the step key, the code version and timings. Secrets are masked before it is
written.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from satk8s.store.layout import MANIFEST, is_hidden
from satk8s.store.redact import redact_obj

FORMAT = 1

__all__ = [
    "MANIFEST",
    "build_manifest",
    "content_digest",
    "describe_files",
    "parse_manifest",
    "read_manifest",
    "sha256_file",
    "write_manifest",
]


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def describe_files(root: Path, paths: Iterable[Path] | None = None) -> list[dict[str, Any]]:
    """Every file below `root` (or just `paths`, files below it) with its size and sha256,
    sorted; the manifest and hidden files (scratch, half-written temporaries) are not part of
    an output."""
    files = []
    chosen = Path(root).rglob("*") if paths is None else paths
    for path in sorted(p for p in chosen if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel == MANIFEST or is_hidden(rel):
            continue
        files.append({"path": rel, "size": path.stat().st_size, "sha256": sha256_file(path)})
    return files


def content_digest(files: list[dict[str, Any]]) -> str:
    """A digest of an output's content alone (paths and bytes), not of where or when."""
    lines = sorted(f"{f['path']}\t{f['sha256']}" for f in files)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def build_manifest(
    step: str,
    config: dict[str, Any],
    inputs: dict[str, str],
    summary: dict[str, Any],
    files: list[dict[str, Any]],
    started: float,
    *,
    key: str | None = None,
    input_digests: dict[str, str | None] | None = None,
    code_version: str | None = None,
    models: dict[str, Any] | None = None,
) -> dict[str, Any]:
    finished = time.time()
    return {
        "format": FORMAT,
        "step": step,
        "key": key,
        "code_version": code_version,
        "config": redact_obj(config),
        "inputs": redact_obj(dict(inputs)),
        "input_digests": dict(input_digests or {}),
        "models": redact_obj(dict(models or {})),
        "summary": redact_obj(summary),
        "files": files,
        "digest": content_digest(files),
        "timings": {"started": started, "finished": finished, "seconds": finished - started},
    }


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return json.dumps(manifest, indent=2, sort_keys=True, default=str).encode()


def parse_manifest(data: bytes | None, where: str) -> dict[str, Any] | None:
    """A manifest from its bytes (None stays None); a manifest that is not JSON is an error."""
    if data is None:
        return None
    try:
        manifest = json.loads(data)
    except ValueError:
        from satk8s.errors import DataError

        raise DataError(where, "manifest.json is not valid JSON; recompute with --force") from None
    return manifest


def write_manifest(
    root: Path, step: str, config: dict, inputs: dict, summary: dict, started: float
) -> dict[str, Any]:
    """Describe the finished local output in `root` and commit it by writing the manifest
    atomically (a local shortcut; steps commit through `satk8s.steps.outputs.commit`)."""
    manifest = build_manifest(step, config, inputs, summary, describe_files(root), started)
    tmp = root / f".{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_bytes(manifest_bytes(manifest))
    os.replace(tmp, root / MANIFEST)
    return manifest


def read_manifest(root: Path) -> dict[str, Any] | None:
    """The manifest of a finished local output, or None when the output is not finished."""
    path = Path(root) / MANIFEST
    return parse_manifest(path.read_bytes(), str(path)) if path.is_file() else None
