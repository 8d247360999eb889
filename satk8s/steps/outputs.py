"""How every step reads its inputs and commits its output, on any store (`file://`, `s3://`).

Every step runs inside `step_output`:

    with step_output(out, "mystep", config, {"questions": questions}, force) as output:
        if output.cached is not None:
            return output.cached
        ...read inputs, compute...
        root = output.open()
        ...write files under root; commit_partial(root, "shard-00003.parquet") as they finish...
        return output.commit(root, summary, started)

- Identity: a location's output is reused only when it was computed from the same step,
  config, input contents and models (`satk8s.store.identity`). A location that holds, or is
  being written with, another config is refused with the differences, unless `force`
  (`OutputConflictError`). Resolving the models checks them first: a bad model reference
  fails before anything is written.
- Lease: from the moment the output is found unfinished until it is committed, the writer
  holds the output's lease (`<out>/.lock`: a kernel lock on file://, a renewed lease object on
  S3). A second writer of the same output waits, then finds it finished: identical steps
  started at once do the work once. gc never deletes an output whose lease is held.
- Commit: a private local staging directory (`open`) is pre-filled with the pieces an earlier,
  interrupted run committed; finished pieces (a shard, a checkpoint) go to the store at once
  with `commit_partial`; `commit` uploads the rest and creates the manifest last, with a
  create-only write. Before each write the writer checks its lease with the store; one that
  lost it (it stalled and another writer took over) fails loudly and writes nothing more, and
  the create-only manifest means it can never replace the new owner's. No manifest, no
  finished output: a partial output never looks finished.
- A step that fails before committing any piece leaves nothing behind; one that committed
  pieces leaves them (and its `.output` marker) for its rerun to resume from.

`open_output` and `commit` also work without `step_output` (the lease is then taken by
`open_output` and released by `commit`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from satk8s.errors import Satk8sError
from satk8s.store.base import Lock, ObjectInfo, Store, get_store
from satk8s.store.cache import drop_staging, new_staging, staged_target
from satk8s.store.errors import StoreError
from satk8s.store.faults import fault_point
from satk8s.store.fetch import (
    fetch,
    finished_manifest,
    keep_as_input,
    listing,
    missing_or_truncated,
    read_manifest_at,
)
from satk8s.store.identity import differences, plain_config, step_identity
from satk8s.store.keys import current_code_version, step_key
from satk8s.store.layout import MANIFEST, is_hidden, lock_uri, manifest_uri, marker_uri
from satk8s.store.manifest import build_manifest, describe_files, manifest_bytes
from satk8s.store.uri import absolute_uri, join, local_path, scheme_of

log = logging.getLogger(__name__)
PARTIALS = ".partial"


class OutputConflictError(Satk8sError):
    """An output location holds (or is being written with) another step's output."""

    def __init__(self, out: str, diffs: list[str], finished: bool) -> None:
        from satk8s.store.redact import redact_text

        self.out = out
        self.differences = diffs
        what = (
            "the output of another config" if finished else "an unfinished output of another config"
        )
        shown = "\n".join(f"  {line}" for line in diffs)
        super().__init__(
            redact_text(
                f"{out} holds {what} (stored -> this run):\n{shown}\n"
                "Use another --out, or pass --force to replace it."
            )
        )


# ----------------------------------------------------------------------------- leases


@dataclasses.dataclass
class _Held:
    context: AbstractContextManager[Lock]
    lock: Lock
    by_step: bool
    """Held for a `step_output` (released when it ends), else for a bare `open_output`."""


_held: dict[tuple[str, int], _Held] = {}
_held_guard = threading.Lock()


def _key(out: str) -> tuple[str, int]:
    return (out.rstrip("/"), threading.get_ident())


def _hold(out: str, by_step: bool) -> _Held:
    """This thread's lease on `out`: the one it already holds, else taken (waiting for it)."""
    with _held_guard:
        held = _held.get(_key(out))
    if held is None:
        context = get_store(out).lock(lock_uri(out))
        held = _Held(context, context.__enter__(), by_step)
        with _held_guard:
            _held[_key(out)] = held
    held.by_step = held.by_step or by_step
    return held


def _holder(out: str) -> _Held | None:
    """The lease this process holds on `out` (at most one thread holds it: it is exclusive)."""
    with _held_guard:
        return _held.get(_key(out)) or next(
            (h for (o, _), h in _held.items() if o == out.rstrip("/")), None
        )


def _release(out: str) -> None:
    with _held_guard:
        held = _held.pop(_key(out), None)
        if held is None:
            key = next((k for k in _held if k[0] == out.rstrip("/")), None)
            held = _held.pop(key) if key else None
    if held is not None:
        held.context.__exit__(None, None, None)


@contextmanager
def _lease(out: str) -> Iterator[Lock]:
    """The lease for a write to `out`: the one held, else one taken for this write alone."""
    if (held := _holder(out)) is not None:
        yield held.lock
        return
    with get_store(out).lock(lock_uri(out)) as lock:
        yield lock


def _verify(lock: Lock, out: str) -> None:
    if not lock.verify():
        raise StoreError(
            out,
            "this writer lost its lease on the output (it stalled longer than the lease lasts "
            "and another writer took the output over); it writes nothing more. Rerun the step.",
        )


# ----------------------------------------------------------------------------- the step API


class StepOutput:
    """One step's output while the step runs (see the module doc)."""

    def __init__(
        self, out: str, step: str, config: Any, inputs: Mapping[str, str], force: bool
    ) -> None:
        self.out, self.step, self.config, self.force = out, step, config, force
        self.inputs = dict(inputs)
        self.identity = step_identity(step, config, self.inputs)
        self.cached: dict[str, Any] | None = None
        """The finished output's summary (`cached: True`) when there is nothing to do."""
        self.root: Path | None = None

    def open(self) -> Path:
        """The local directory to write the output into, pre-filled with the pieces an
        earlier run committed (a step may resume from them)."""
        self.root = new_staging(self.out)
        _prefill(get_store(self.out), self.out, self.root)
        return self.root

    def commit(self, root: Path, summary: dict[str, Any], started: float) -> dict[str, Any]:
        """Upload the output, create the manifest (last) and return the step's summary."""
        return commit(root, self.step, self.config, self.inputs, summary, started, self.identity)


@contextmanager
def step_output(
    out: str, step: str, config: Any, inputs: Mapping[str, str], force: bool = False
) -> Iterator[StepOutput]:
    """Run a step's output through its life: cache check, lease, identity check, cleanup."""
    output = StepOutput(out, step, config, inputs, force)
    if not force and (cached := _finished_as(out, output.identity)) is not None:
        output.cached = cached
        yield output
        return
    held = _hold(out, by_step=True)
    try:
        if not force and (cached := _finished_as(out, output.identity)) is not None:
            output.cached = cached  # another writer finished it while this one waited
        else:
            _claim(out, output.identity, force)
    except BaseException:
        _release(out)
        raise
    try:
        yield output
    except BaseException:
        if output.cached is None:
            _abandon(out, output.root, held.lock)
        raise
    finally:
        _release(out)


def cached_summary(
    out: str, step: str, config: Any, inputs: Mapping[str, str], force: bool = False
) -> dict[str, Any] | None:
    """What `step_output` would find, without taking the lease: the summary of a finished
    output of this step, config and inputs (`cached: True`), None when there is none (or
    `force`), `OutputConflictError` when `out` holds another config's."""
    if force:
        return None
    return _finished_as(out, step_identity(step, config, dict(inputs)))


def finished_summary(out: str) -> dict[str, Any] | None:
    """The summary of a finished output at `out`, or None (its identity is not checked)."""
    manifest = finished_manifest(out)
    return None if manifest is None else {**manifest["summary"], "cached": True}


def open_output(out: str, force: bool = False) -> Path:
    """The local directory to write the output into, without `step_output`: takes the lease
    (released by `commit`), and pre-fills the pieces earlier runs committed. `force` first
    deletes everything at `out`; a manifest listing missing or truncated objects is removed."""
    _hold(out, by_step=False)
    _claim(out, None, force)
    root = new_staging(out)
    _prefill(get_store(out), out, root)
    return root


def committed_copy(out: str) -> Path:
    """A private local directory holding the pieces committed at `out` so far, taking no lease:
    for the other nodes of a distributed step, which resume from the same checkpoints as the
    writer (on its node) but never write."""
    root = new_staging(out)
    _prefill(get_store(out), out, root)
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
    with _lease(out) as lock:
        _verify(lock, out)
        if store.exists(manifest_uri(out)):
            log.info("%s was finished by another writer; not committing %s", out, rel_path)
            return
        paths = {e["path"] for e in entries}
        remote = {rel: info for rel, info in listing(store, out).items() if rel in paths}
        todo = _not_yet_there(store, out, Path(root), entries, remote)
        _replace(store, out, root, todo, remote, link=False)  # a copy: the step may touch its files
        _verify(lock, out)
        # Written after its files: a piece without a record is not resumed from.
        record = {"path": rel_path, "files": entries}
        store.write_bytes(_partial_uri(out, rel_path), json.dumps(record).encode())


def drop_partial(root: Path, rel_path: str) -> None:
    """Remove a piece `commit_partial` put in the store (an older checkpoint a newer one
    replaces): its record first, so a half-removed piece is never resumed from."""
    out = _target(root)
    store = get_store(out)
    with _lease(out) as lock:
        _verify(lock, out)
        if store.exists(manifest_uri(out)):
            return
        store.delete([_partial_uri(out, rel_path)])
        _verify(lock, out)
        store.delete_unchanged(store.list(join(out, rel_path)))


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
    identity: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Upload the output, create the manifest (last) and return the step's summary.

    If another writer finished the same output first, its result stands and is returned
    (`cached: True`); this writer's files are dropped.
    """
    out = _target(root)
    identity = identity or step_identity(step, config, inputs)
    files = describe_files(root)
    version = current_code_version()
    model_ids = {field: m["identity"] for field, m in identity["models"].items()}
    manifest = build_manifest(
        step,
        plain_config(config),
        _absolute_inputs(inputs),
        summary,
        files,
        started,
        key=step_key(step, plain_config(config), identity["input_digests"], version, model_ids),
        input_digests=identity["input_digests"],
        code_version=version,
        models=identity["models"],
    )
    store = get_store(out)
    try:
        with _lease(out) as lock:
            _verify(lock, out)
            if (existing := finished_manifest(out)) is not None:
                if diffs := differences(existing, identity):
                    raise OutputConflictError(out, diffs, finished=True)
                log.info("%s was finished by another writer first; keeping its result", out)
                drop_staging(root)
                return {
                    **existing["summary"],
                    "cached": True,
                    "seconds": round(time.time() - started, 3),
                }
            remote = listing(store, out)
            todo = _not_yet_there(store, out, root, files, remote)
            wanted = {f["path"] for f in files}
            _verify(lock, out)
            fault_point("before-upload")
            # Hard links where the store is local: the staging dir goes away right after.
            _replace(store, out, root, todo, remote, link=True)
            fault_point("before-manifest")
            _verify(lock, out)
            if not store.create_bytes(manifest_uri(out), manifest_bytes(manifest)):
                raise StoreError(
                    out,
                    "another writer committed this output while this one was stalled; its "
                    "manifest stands and this writer's was not written. Rerun the step to use "
                    "that result.",
                )
            # Committed pieces the output no longer lists (a train step's checkpoints) go only
            # now: until the manifest exists, a rerun resumes from them.
            store.delete(o.uri for o in store.list(join(out, PARTIALS)))
            store.delete_unchanged(info for rel, info in remote.items() if rel not in wanted)
    finally:
        if (held := _holder(out)) is not None and not held.by_step:
            _release(out)  # taken by a bare open_output
    if scheme_of(out) == "file":
        drop_staging(root)
    else:
        keep_as_input(root, out, manifest)
        drop_staging(root)
    return {**summary, "cached": False, "seconds": round(time.time() - started, 3)}


# ----------------------------------------------------------------------------- internals


def _finished_as(out: str, identity: dict[str, Any]) -> dict[str, Any] | None:
    """The cached summary of a finished output at `out` with this identity; None when it is
    not finished; `OutputConflictError` when it is another config's."""
    manifest = finished_manifest(out)
    if manifest is None:
        return None
    if diffs := differences(manifest, identity):
        raise OutputConflictError(out, diffs, finished=True)
    return {**manifest["summary"], "cached": True}


def _claim(out: str, identity: dict[str, Any] | None, force: bool) -> None:
    """Under the lease: make `out` this writer's (`force` clears it; a damaged manifest goes;
    another config's unfinished output is refused) and record the identity in its marker."""
    store = get_store(out)
    marker = _read_marker(store, out)
    if force:
        _delete_output(store, out)
    else:
        manifest = read_manifest_at(out)
        if manifest and missing_or_truncated(manifest, listing(store, out)):
            store.delete([manifest_uri(out)])
        if identity is not None and marker and (diffs := differences(marker, identity)):
            raise OutputConflictError(out, diffs, finished=False)
    if identity is None:
        if not store.exists(marker_uri(out)):
            store.write_bytes(marker_uri(out), b"")
        return
    writer = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
    store.write_bytes(marker_uri(out), json.dumps({**identity, "writer": writer}).encode())


def _read_marker(store: Store, out: str) -> dict[str, Any] | None:
    data = store.read_bytes(marker_uri(out))
    try:
        marker = json.loads(data) if data else None
    except ValueError:
        return None
    return marker if isinstance(marker, dict) else None


def _abandon(out: str, root: Path | None, lock: Lock) -> None:
    """A step failed before committing: drop its staging, and if it left nothing in the store
    to resume from, its marker (and, locally, its empty directory) too."""
    if root is not None:
        drop_staging(root)
    if lock.lost:
        return  # the output is another writer's now: write nothing
    store = get_store(out)
    try:
        if (
            listing(store, out)
            or store.list(join(out, PARTIALS))
            or store.exists(manifest_uri(out))
        ):
            return
        store.delete([marker_uri(out)])
        if scheme_of(out) == "file":
            from satk8s.store.local import remove_empty_dirs

            store.delete([lock_uri(out)])  # safe while held: lockers re-check the file
            remove_empty_dirs(local_path(out))
            try:
                local_path(out).rmdir()
            except OSError:
                pass
    except Satk8sError as err:  # cleanup is best effort; the step's own error matters
        log.warning("%s: could not clean up after the failed step: %s", out, err)


def _absolute_inputs(inputs: Mapping[str, str]) -> dict[str, str]:
    """Input locations as absolute URIs (a relative path is relative to this process's
    directory, which gc cannot know later)."""
    return {
        name: ",".join(absolute_uri(loc) for loc in split_locations(str(value or "")))
        for name, value in inputs.items()
    }


def _target(root: Path) -> str:
    # A directory that open_output did not make is a local output committed in place.
    return staged_target(root) or str(Path(root).resolve())


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


def _replace(
    store: Store,
    out: str,
    root: Path,
    files: list[dict[str, Any]],
    remote: dict[str, ObjectInfo],
    link: bool,
) -> None:
    """Put `files` at `out`: an object already there (with other bytes) is deleted only if it
    is still the one listed, then every file is created only where nothing is, so a writer
    that lost the output can never overwrite the new owner's objects."""
    store.delete_unchanged(remote[f["path"]] for f in files if f["path"] in remote)
    items = [(Path(root) / f["path"], join(out, f["path"]), f["sha256"]) for f in files]
    store.put_files(items, link=link, create_only=True)


def _delete_output(store: Store, out: str) -> None:
    """Everything at `out` but its lock and marker, the manifest first (half-deleted is
    unfinished)."""
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
    "OutputConflictError",
    "StepOutput",
    "cached_summary",
    "commit",
    "commit_partial",
    "committed_copy",
    "drop_partial",
    "finished_summary",
    "input_path",
    "open_output",
    "step_output",
]
