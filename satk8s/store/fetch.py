"""Reading step outputs: is one finished, and a verified local copy of it.

A finished output is one whose manifest exists and whose objects are all there with the
recorded sizes (checked with one listing). Every byte read is checked against the recorded
sha256; a mismatch raises `CorruptObjectError` naming the object. A local copy (a `file://`
output used in place, or a remote one cached locally) is checked against the sizes and sha256
before every use; a file is read again only when its stat changed since it was last hashed
(`satk8s.store.digests`), and a cached copy that no longer matches is downloaded again.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from satk8s.errors import DataError
from satk8s.store.base import ObjectInfo, Store, get_store
from satk8s.store.cache import input_cache_dir
from satk8s.store.digests import file_sha256s
from satk8s.store.errors import CorruptObjectError
from satk8s.store.layout import MANIFEST, is_hidden, manifest_uri
from satk8s.store.manifest import manifest_bytes, parse_manifest, sha256_file
from satk8s.store.uri import join, local_path, scheme_of

log = logging.getLogger(__name__)


def listing(store: Store, out: str) -> dict[str, ObjectInfo]:
    """The output's data objects by relative path (bookkeeping and the manifest left out)."""
    prefix = out.rstrip("/") + "/"
    found = {o.uri[len(prefix) :]: o for o in store.list(out)}
    return {rel: o for rel, o in found.items() if rel != MANIFEST and not is_hidden(rel)}


def missing_or_truncated(manifest: dict[str, Any], objects: dict[str, ObjectInfo]) -> list[str]:
    """What the store lacks of what the manifest lists: missing objects, wrong sizes."""
    problems = []
    for entry in manifest["files"]:
        found = objects.get(entry["path"])
        if found is None:
            problems.append(f"{entry['path']} is missing")
        elif found.size != entry["size"]:
            problems.append(f"{entry['path']} has {found.size} bytes, not {entry['size']}")
    return problems


def read_manifest_at(out: str) -> dict[str, Any] | None:
    return parse_manifest(get_store(out).read_bytes(manifest_uri(out)), manifest_uri(out))


def finished_manifest(out: str) -> dict[str, Any] | None:
    """The manifest of a finished output at `out`, or None when it is not finished (no manifest,
    or an object it lists is missing or truncated: never taken as done)."""
    manifest = read_manifest_at(out)
    if manifest is None:
        return None
    problems = missing_or_truncated(manifest, listing(get_store(out), out))
    if problems:
        log.warning("%s has a manifest but %s: not finished", out, "; ".join(problems[:3]))
        return None
    return manifest


def local_problems(root: Path, manifest: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(path, sha256 found or None when missing) of every file below `root` that does not
    match the manifest. Files are read only when their stat changed since they were last
    hashed (`satk8s.store.digests`)."""
    found = file_sha256s(root, [entry["path"] for entry in manifest["files"]])
    problems = []
    for entry in manifest["files"]:
        size, sha = found.get(entry["path"], (None, None))
        if size != entry["size"] or sha != entry["sha256"]:
            problems.append((entry["path"], sha))
    return problems


def verify_local(root: Path, manifest: dict[str, Any], where: str) -> None:
    """Check every file the manifest lists against its size and sha256."""
    for path, actual in local_problems(root, manifest):
        expected = next(f["sha256"] for f in manifest["files"] if f["path"] == path)
        if actual is None:
            raise DataError(
                join(where, path), "listed in the manifest but missing; recompute with --force"
            )
        raise CorruptObjectError(join(where, path), expected, actual)


def fetch(uri: str, name: str, expect: str = "any") -> Path:
    """A local path holding the input at `uri`, verified (see module doc).

    `expect="step"` requires a finished step output. A local location is used in place; a
    remote one is downloaded once into the cache and reused while its manifest is unchanged.
    """
    if scheme_of(uri) == "file":
        return _local(uri, name, expect)
    store = get_store(uri)
    data = store.read_bytes(manifest_uri(uri))
    if data is not None:
        manifest = parse_manifest(data, manifest_uri(uri))
        return _fetch_output(store, uri, manifest, data)  # type: ignore[arg-type]
    if store.exists(uri) and expect != "step":
        dest = input_cache_dir(uri) / uri.rstrip("/").rsplit("/", 1)[-1]
        store.get_files([(uri, dest, None)])
        return dest
    objects = {rel: o for rel, o in listing(store, uri).items()}
    if not objects:
        raise DataError(uri, f"input '{name}' does not exist")
    if expect == "step":
        raise DataError(uri, f"input '{name}' is not a finished step output (no {MANIFEST})")
    return _fetch_prefix(store, uri, objects)


def _local(uri: str, name: str, expect: str) -> Path:
    path = local_path(uri)
    if not path.exists():
        raise DataError(str(path), f"input '{name}' does not exist")
    manifest = (
        parse_manifest((path / MANIFEST).read_bytes(), str(path))
        if (path / MANIFEST).is_file()
        else None
    )
    if manifest is None:
        if expect == "step":
            raise DataError(
                str(path), f"input '{name}' is not a finished step output (no {MANIFEST})"
            )
        return path
    verify_local(path, manifest, uri)
    return path


def _fetch_output(store: Store, uri: str, manifest: dict[str, Any], data: bytes) -> Path:
    dest = input_cache_dir(uri)
    cached = dest / MANIFEST
    if cached.is_file() and cached.read_bytes() == data:
        if not (bad := local_problems(dest, manifest)):
            return dest  # every file is still the one the manifest lists
        log.warning(
            "the cached copy of %s has %d changed or missing files (%s); downloading again",
            uri,
            len(bad),
            bad[0][0],
        )
    problems = missing_or_truncated(manifest, listing(store, uri))
    if problems:
        raise DataError(
            uri, f"incomplete output: {'; '.join(problems[:3])}; recompute with --force"
        )
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        items = [(join(uri, f["path"]), tmp / f["path"], f["sha256"]) for f in manifest["files"]]
        store.get_files(items)
        (tmp / MANIFEST).write_bytes(data)
        _swap_in(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _fetch_prefix(store: Store, uri: str, objects: dict[str, ObjectInfo]) -> Path:
    """A location without a manifest (e.g. a model someone uploaded): every object, checked
    against its stored sha256 where it has one; reused while the listing is unchanged."""
    dest = input_cache_dir(uri)
    listed = sorted((rel, o.size, o.modified) for rel, o in objects.items())
    try:
        seen = json.loads((dest / ".listing.json").read_text())
    except (OSError, ValueError):
        seen = None
    if isinstance(seen, dict) and seen.get("listing") == json.loads(json.dumps(listed)):
        files = [{"path": p, "size": s, "sha256": seen["sha256"].get(p)} for p, s, _ in listed]
        if not local_problems(dest, {"files": files}):
            return dest
        log.warning("the cached copy of %s changed; downloading again", uri)
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        store.get_files([(o.uri, tmp / rel, None) for rel, o in objects.items()])
        shas = {rel: sha256_file(tmp / rel) for rel in objects}
        (tmp / ".listing.json").write_text(json.dumps({"listing": listed, "sha256": shas}))
        _swap_in(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _swap_in(tmp: Path, dest: Path) -> None:
    """Replace `dest` by the complete directory `tmp`."""
    if dest.exists():
        shutil.rmtree(dest, ignore_errors=True)
    try:
        os.replace(tmp, dest)
    except OSError:  # another process put an equally verified copy there first
        pass


def keep_as_input(root: Path, out: str, manifest: dict[str, Any]) -> None:
    """Make a just-committed staging dir the cached input copy of `out` (saves a download
    when the next step runs in the same place)."""
    listed = {f["path"] for f in manifest["files"]}
    for path in sorted(Path(root).rglob("*"), reverse=True):  # scratch is not part of it
        rel = path.relative_to(root).as_posix()
        if path.is_file() and rel not in listed:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    dest = input_cache_dir(out)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _swap_in(root, dest)
    if dest.is_dir() and not (dest / MANIFEST).exists():
        (dest / MANIFEST).write_bytes(manifest_bytes(manifest))
