"""Garbage collection: delete the outputs that no kept run references.

Kept are the outputs named by `--keep` (a run's manifest, a report's output, or any JSON file
listing locations) and, transitively, every location their manifests mention: inputs, and
config values such as a staged model's `s3://` prefix. So keeping a run's final step keeps its
whole lineage. Outputs touched within the grace period are spared (a running pipeline may not
have referenced them yet). Deleting removes an output's manifest first, so an interrupted
collection never leaves something that looks finished.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from satk8s.errors import Satk8sError
from satk8s.store.base import get_store
from satk8s.store.errors import StoreError
from satk8s.store.inventory import Output, inventory
from satk8s.store.layout import MANIFEST
from satk8s.store.uri import join, local_path, scheme_of


@dataclass
class GcPlan:
    root: str
    delete: list[Output] = field(default_factory=list)
    keep: list[Output] = field(default_factory=list)
    young: list[Output] = field(default_factory=list)
    """Unreferenced, but modified within the grace period: spared this time."""
    uploads: list[dict[str, Any]] = field(default_factory=list)
    """Multipart uploads never completed (S3), older than the grace period."""

    @property
    def bytes_freed(self) -> int:
        return sum(o.bytes for o in self.delete)


def canonical(location: str) -> str:
    """One spelling per location: `file:///abs/path` for local ones, no trailing slash."""
    if scheme_of(location) == "file":
        return f"file://{local_path(location)}"
    return location.rstrip("/")


def mentioned_locations(value: Any) -> set[str]:
    """Every string in a JSON value that is a store location (s3://, file:// or absolute)."""
    if isinstance(value, dict):
        return set().union(*(mentioned_locations(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(mentioned_locations(v) for v in value))
    if not isinstance(value, str):
        return set()
    found = set()
    for part in value.split(","):  # pipelines pass several locations comma-separated
        part = part.strip()
        if part.startswith(("s3://", "file://", "/")):
            try:
                found.add(canonical(part))
            except Satk8sError:  # not a location after all
                pass
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
                queue.extend(mentioned_locations(output.manifest))
    result = GcPlan(root, keep=list(kept.values()))
    now = time.time()
    for output in outputs:
        if canonical(output.uri) in kept:
            continue
        (result.young if now - output.modified < grace_s else result.delete).append(output)
    store = get_store(root)
    if hasattr(store, "incomplete_uploads"):
        result.uploads = [
            u for u in store.incomplete_uploads(root) if now - u["Initiated"].timestamp() >= grace_s
        ]
    return result


def execute(gc_plan: GcPlan) -> None:
    """Delete what the plan says: each output's manifest first, then the rest."""
    store = get_store(gc_plan.root)
    for output in gc_plan.delete:
        store.delete([join(output.uri, MANIFEST)])
        store.delete(o.uri for o in output.objects)
        if scheme_of(output.uri) == "file":
            from satk8s.store.local import remove_empty_dirs

            remove_empty_dirs(local_path(output.uri))
            try:
                local_path(output.uri).rmdir()
            except OSError:  # something not ours is still there
                pass
    for upload in gc_plan.uploads:
        store.abort_upload(upload)  # type: ignore[attr-defined]
