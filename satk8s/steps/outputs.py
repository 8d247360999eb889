"""How every step reads its inputs and commits its output, on any store (`file://`, `s3://`).

A step writes into a private local staging directory (`open_output`), pre-filled with what an
earlier, interrupted run of the same output already committed. Finished pieces (a shard, a
checkpoint) go to the store at once with `commit_partial`; `commit` uploads the rest and
writes the manifest last. No manifest, no finished output: a partial output never looks
finished. Writers of one output are serialised by a lock in the store, and the first to
commit wins; a finished output is never changed unless a step is forced.

    if not force and (cached := finished_summary(out)):
        return cached
    root = open_output(out, force)
    ...write files under root, commit_partial(root, "shard-00003.parquet") as they finish...
    return commit(root, "mystep", config, {"questions": questions}, summary, started)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

from satk8s.store.base import ObjectInfo, Store, get_store
from satk8s.store.cache import drop_staging, new_staging, staged_target
from satk8s.store.errors import StoreError
from satk8s.store.fetch import (
    fetch,
    finished_manifest,
    keep_as_input,
    listing,
    missing_or_truncated,
    read_manifest_at,
)
from satk8s.store.keys import current_code_version, input_digests, step_key
from satk8s.store.layout import MANIFEST, is_hidden, lock_uri, manifest_uri, marker_uri
from satk8s.store.manifest import build_manifest, describe_files, manifest_bytes
from satk8s.store.uri import join, scheme_of

log = logging.getLogger(__name__)
PARTIALS = ".partial"


def finished_summary(out: str) -> dict[str, Any] | None:
    """The summary of a finished output at `out`, or None."""
    manifest = finished_manifest(out)
    return None if manifest is None else {**manifest["summary"], "cached": True}


def open_output(out: str, force: bool = False) -> Path:
    """The local directory to write the output into.

    It holds the pieces an earlier run committed with `commit_partial` (a step may resume
    from them). `force` first deletes everything at `out`, a finished output included; a
    manifest that lists missing or truncated objects is removed.
    """
    store = get_store(out)
    with store.lock(lock_uri(out)):
        if force:
            _delete_output(store, out)
        elif (manifest := read_manifest_at(out)) and missing_or_truncated(
            manifest, listing(store, out)
        ):
            store.delete([manifest_uri(out)])
        if not store.exists(marker_uri(out)):
            store.write_bytes(marker_uri(out), b"")
    root = new_staging(out)
    _prefill(store, out, root)
    return root


def commit_partial(root: Path, rel_path: str) -> None:
    """Put one finished piece of the output (a file or a directory below `root`, path relative
    to it) in the store now, so a restarted step resumes after it. All of a directory's files
    come back on resume, or none."""
    out = _target(root)
    path = Path(root) / rel_path
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    entries = describe_files(root, files)
    store = get_store(out)
    with store.lock(lock_uri(out)) as lock:
        if store.exists(manifest_uri(out)):
            log.info("%s was finished by another writer; not committing %s", out, rel_path)
            return
        items = [(Path(root) / e["path"], join(out, e["path"]), e["sha256"]) for e in entries]
        store.put_files(items)  # a copy: the running step may still touch its own files
        _check_lock(lock, out)
        # Written after its files: a piece without a record is not resumed from.
        record = {"path": rel_path, "files": entries}
        store.write_bytes(_partial_uri(out, rel_path), json.dumps(record).encode())


def drop_partial(root: Path, rel_path: str) -> None:
    """Remove a piece `commit_partial` put in the store (an older checkpoint a newer one
    replaces): its record first, so a half-removed piece is never resumed from."""
    out = _target(root)
    store = get_store(out)
    with store.lock(lock_uri(out)):
        if store.exists(manifest_uri(out)):
            return
        store.delete([_partial_uri(out, rel_path)])
        store.delete(o.uri for o in store.list(join(out, rel_path)))


def split_locations(value: str) -> list[str]:
    """A comma-separated list of locations (the form a pipeline passes a list of outputs in)."""
    return [item.strip() for item in value.split(",") if item.strip()]


def input_path(uri: str, name: str, expect: str = "any") -> Path:
    """The local path of a step input, checked to exist (and to be finished, for
    `expect="step"`); every file of a step output is checked against its manifest's sha256.
    A remote input is downloaded into the local cache."""
    return fetch(uri, name, expect)


def commit(
    root: Path,
    step: str,
    config: Any,
    inputs: dict[str, str],
    summary: dict[str, Any],
    started: float,
) -> dict[str, Any]:
    """Upload the output, write the manifest (last) and return the step's summary.

    If another writer finished the same output first, its result stands and is returned
    (`cached: True`); this writer's files are dropped.
    """
    out = _target(root)
    config_dict = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    files = describe_files(root)
    digests = input_digests(inputs)
    version = current_code_version()
    manifest = build_manifest(
        step,
        config_dict,
        inputs,
        summary,
        files,
        started,
        key=step_key(step, config_dict, digests, version),
        input_digests=digests,
        code_version=version,
    )
    store = get_store(out)
    with store.lock(lock_uri(out)) as lock:
        if (existing := finished_manifest(out)) is not None:
            log.info("%s was finished by another writer first; keeping its result", out)
            drop_staging(root)
            return {
                **existing["summary"],
                "cached": True,
                "seconds": round(time.time() - started, 3),
            }
        remote = listing(store, out)
        todo = _not_yet_there(store, out, root, files, remote)
        # Hard links where the store is local: the staging dir goes away right after.
        store.put_files(
            [(Path(root) / f["path"], join(out, f["path"]), f["sha256"]) for f in todo], link=True
        )
        wanted = {f["path"] for f in files}
        store.delete(info.uri for rel, info in remote.items() if rel not in wanted)
        _check_lock(lock, out)
        store.write_bytes(manifest_uri(out), manifest_bytes(manifest))
        store.delete(o.uri for o in store.list(join(out, PARTIALS)))
    if scheme_of(out) == "file":
        drop_staging(root)
    else:
        keep_as_input(root, out, manifest)
        drop_staging(root)
    return {**summary, "cached": False, "seconds": round(time.time() - started, 3)}


def _target(root: Path) -> str:
    # A directory that open_output did not make is a local output committed in place.
    return staged_target(root) or str(Path(root).resolve())


def _check_lock(lock: Any, out: str) -> None:
    if lock.lost:
        raise StoreError(
            out,
            "another writer took over this output's lock while this one was "
            "stalled; its result is not committed. Rerun the step.",
        )


def _partial_uri(out: str, rel_path: str) -> str:
    return join(out, PARTIALS, quote(rel_path.strip("/"), safe="") + ".json")


def _not_yet_there(
    store: Store, out: str, root: Path, files: list[dict[str, Any]], remote: dict[str, ObjectInfo]
) -> list[dict[str, Any]]:
    """The files the store does not already hold byte for byte (committed pieces are)."""
    same_size = [f for f in files if f["path"] in remote and remote[f["path"]].size == f["size"]]

    def same(f: dict[str, Any]) -> bool:
        return store.sha256(join(out, f["path"])) == f["sha256"]

    with ThreadPoolExecutor(8) as pool:
        there = {
            f["path"] for f, ok in zip(same_size, pool.map(same, same_size), strict=True) if ok
        }
    return [f for f in files if f["path"] not in there]


def _delete_output(store: Store, out: str) -> None:
    """Everything at `out` but its lock, the manifest first (half-deleted is unfinished)."""
    store.delete([manifest_uri(out)])
    prefix = out.rstrip("/") + "/"
    doomed = [
        o.uri
        for o in store.list(out)
        if not is_hidden(o.uri[len(prefix) :]) or o.uri[len(prefix) :].startswith(PARTIALS)
    ]
    store.delete(doomed)


def _prefill(store: Store, out: str, root: Path) -> None:
    """Fetch the pieces earlier runs committed (whole pieces only: every file of a piece must
    be there with its recorded size), each checked against its sha256."""
    remote = listing(store, out)
    items: dict[Path, tuple[str, Path, str]] = {}
    for info in store.list(join(out, PARTIALS)):
        data = store.read_bytes(info.uri)
        record = json.loads(data) if data else {"files": []}
        if missing_or_truncated(record, remote):
            log.warning(
                "%s: committed piece %s is incomplete; recomputing it", out, record.get("path")
            )
            continue
        for f in record["files"]:
            items[root / f["path"]] = (join(out, f["path"]), root / f["path"], f["sha256"])
    if items:
        store.get_files(list(items.values()))  # copies: the step may rewrite them in place
        log.info("%s: resuming from %d committed files", out, len(items))


__all__ = [
    "MANIFEST",
    "commit",
    "commit_partial",
    "drop_partial",
    "finished_summary",
    "input_path",
    "open_output",
]
