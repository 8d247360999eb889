"""Garbage collection: delete the outputs that no kept run references.

Kept are the outputs named by `--keep` (a run's manifest, an output, or any JSON file listing
locations) and, transitively, every location their manifests reference:
- inputs and any other store location in the manifest (`s3://`, `file://`, absolute paths);
- inputs recorded as relative paths (by manifests written before inputs were recorded as
  absolute locations): a relative path is resolved against every folder above the output
  that recorded it, and each one that is an output is kept;
- the models a step read: their recorded location, and for a hub id the staged mirrors
  `<root>/models/<org>/<name>/` (what a step reached through `$SATK8S_MODEL_STORE`).
So keeping a run's final step keeps its whole lineage.

Spared: outputs touched within the grace period (a running pipeline may not have referenced
them yet) and outputs a live writer holds the lease of (being written). Each output is deleted
under its own lease, taken without waiting (a writer that started meanwhile keeps it), its
manifest first, so an interrupted collection never leaves something that looks finished.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from satk8s.errors import Satk8sError
from satk8s.store.base import get_store
from satk8s.store.errors import StoreError
from satk8s.store.faults import fault_point
from satk8s.store.inventory import Output, inventory
from satk8s.store.layout import LOCK, MANIFEST, lock_uri
from satk8s.store.uri import join, local_path, scheme_of

_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass
class GcPlan:
    root: str
    delete: list[Output] = field(default_factory=list)
    keep: list[Output] = field(default_factory=list)
    young: list[Output] = field(default_factory=list)
    """Unreferenced, but modified within the grace period: spared this time."""
    busy: list[Output] = field(default_factory=list)
    """Unreferenced, but a live writer holds its lease: spared."""
    uploads: list[dict[str, Any]] = field(default_factory=list)
    """Multipart uploads never completed (S3), older than the grace period."""

    @property
    def bytes_freed(self) -> int:
        return sum(o.total_bytes for o in self.delete)


def canonical(location: str) -> str:
    """One spelling per location: `file:///abs/path` for local ones, no trailing slash."""
    if scheme_of(location) == "file":
        return f"file://{local_path(location)}"
    return location.rstrip("/")


def mentioned_locations(value: Any) -> set[str]:
    """Every string in a JSON value that is a store location (s3://, file:// or absolute)."""
    found: set[str] = set()
    for text in _strings(value):
        for part in text.split(","):  # pipelines pass several locations comma-separated
            part = part.strip()
            if part.startswith(("s3://", "file://", "/")):
                try:
                    found.add(canonical(part))
                except Satk8sError:  # not a location after all
                    pass
    return found


def references(output: Output, root: str) -> set[str]:
    """Every location the output's manifest references (see the module doc)."""
    manifest = output.manifest or {}
    found = mentioned_locations(manifest)
    relative = [
        part.strip()
        for text in _strings(manifest.get("inputs", {}))
        for part in text.split(",")
        if part.strip()
    ]
    models = _model_references(manifest.get("config", {}))
    relative += models
    for part in relative:
        if part.startswith("~"):
            found.add(canonical(part))  # the home of whoever runs gc: the best guess there is
            continue
        if "://" in part or part.startswith("/"):
            continue
        for folder in _folders_above(canonical(output.uri)):
            try:
                found.add(canonical(join(folder, part)))
            except Satk8sError:
                pass
    for model in models:
        if _HUB_ID.fullmatch(model):
            found.add(canonical(join(root, "models", *model.split("/"))))
    return found


def read_keep(location: str) -> set[str]:
    """The locations a `--keep` argument stands for: itself, plus what it lists if it is JSON."""
    found = {canonical(location)}
    store = get_store(location)
    data = store.read_bytes(location) if not location.endswith("/") else None
    if data is None and not store.list(location):
        # A mistyped --keep would otherwise leave everything unreferenced.
        raise StoreError(location, "--keep location does not exist")
    if data is not None:
        try:
            found |= mentioned_locations(json.loads(data))
        except ValueError:
            raise StoreError(location, "--keep must name a JSON file or a location") from None
    return found


def plan(root: str, keep: Iterable[str], grace_s: float = 86400.0) -> GcPlan:
    outputs, _ = inventory(root)
    queue = [loc for item in keep for loc in read_keep(item)]
    kept: dict[str, Output] = {}
    while queue:
        ref = queue.pop()
        for output in outputs:
            home = canonical(output.uri)
            if home in kept or not (
                ref == home or ref.startswith(home + "/") or home.startswith(ref + "/")
            ):
                continue
            kept[home] = output
            if output.manifest is not None:
                queue.extend(references(output, root))
    result = GcPlan(root, keep=list(kept.values()))
    now = time.time()
    for output in outputs:
        if canonical(output.uri) in kept:
            continue
        if output.writing:
            result.busy.append(output)
        elif now - output.modified < grace_s:
            result.young.append(output)
        else:
            result.delete.append(output)
    store = get_store(root)
    if hasattr(store, "incomplete_uploads"):
        result.uploads = [
            u for u in store.incomplete_uploads(root) if now - u["Initiated"].timestamp() >= grace_s
        ]
    return result


def execute(gc_plan: GcPlan) -> list[Output]:
    """Delete what the plan says; returns the outputs spared because a writer took their lease
    (or wrote to them) after the plan was made."""
    from satk8s.store.lease import LockBusy

    store = get_store(gc_plan.root)
    spared = []
    for output in gc_plan.delete:
        planned = {o.uri for o in output.objects}
        try:
            with store.lock(lock_uri(output.uri), wait=False):
                lock = lock_uri(output.uri)
                now_there = {o.uri for o in store.list(output.uri)} - {lock}
                if now_there - planned:  # written to since the plan: not this run's to delete
                    spared.append(output)
                    continue
                store.delete([join(output.uri, MANIFEST)])
                fault_point("during-gc")
                store.delete(uri for uri in now_there if not uri.endswith(f"/{LOCK}"))
                if scheme_of(output.uri) == "file":
                    from satk8s.store.local import remove_empty_dirs

                    store.delete([lock])  # safe while held: lockers re-check the file
                    remove_empty_dirs(local_path(output.uri))
                    try:
                        local_path(output.uri).rmdir()
                    except OSError:  # something not ours is still there
                        pass
        except LockBusy:
            spared.append(output)
    for upload in gc_plan.uploads:
        store.abort_upload(upload)  # type: ignore[attr-defined]
    return spared


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def _model_references(config: Any) -> list[str]:
    from satk8s.store.model_identity import model_fields

    return list(model_fields(config).values()) if isinstance(config, dict) else []


def _folders_above(location: str) -> list[str]:
    """`s3://b/x/y/z` -> [`s3://b/x/y`, `s3://b/x`, `s3://b`]; likewise for `file://`."""
    if scheme_of(location) == "file":
        return [parent.as_uri() for parent in local_path(location).parents]
    bucket, _, key = location.partition("://")[2].partition("/")
    parts = key.split("/") if key else []
    return [
        f"s3://{bucket}/{'/'.join(parts[:i])}".rstrip("/") for i in range(len(parts) - 1, -1, -1)
    ]
