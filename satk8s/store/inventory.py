"""What a store holds: its step outputs (finished or not) and their sizes, for ls, du and gc.

An output is a location holding a `manifest.json` (finished) or a `.output` marker (opened by a
writer, not finished). Other objects are loose: neither listed as outputs nor collected.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any

from satk8s.store.base import ObjectInfo, get_store
from satk8s.store.layout import MANIFEST, MARKER, is_hidden
from satk8s.store.manifest import parse_manifest
from satk8s.store.uri import join


@dataclass
class Output:
    uri: str
    finished: bool
    step: str | None = None
    manifest: dict[str, Any] | None = None
    objects: list[ObjectInfo] = field(default_factory=list)
    """Every object at the location, bookkeeping included (what deleting it frees)."""

    @property
    def bytes(self) -> int:
        return sum(o.size for o in self.objects)

    @property
    def files(self) -> int:
        prefix = self.uri.rstrip("/") + "/"
        return sum(not is_hidden(o.uri[len(prefix) :]) for o in self.objects) - self.finished

    @property
    def modified(self) -> float:
        return max((o.modified for o in self.objects), default=0.0)


def inventory(root: str) -> tuple[list[Output], list[ObjectInfo]]:
    """The outputs under `root` (sorted by location) and the loose objects."""
    store = get_store(root)
    prefix = root.rstrip("/") + "/"
    objects = store.list(root)
    rels = [o.uri[len(prefix) :] for o in objects]
    homes: dict[str, bool] = {}  # output dir (relative to root) -> finished
    for rel in rels:
        home, name = posixpath.split(rel)
        if name in (MANIFEST, MARKER) and not is_hidden(home):
            homes[home] = homes.get(home, False) or name == MANIFEST
    outputs = {
        home: Output(join(root, home) if home else root.rstrip("/"), done)
        for home, done in homes.items()
    }
    loose = []
    # Deepest first, so an object belongs to the innermost output holding it.
    order = sorted(homes, key=len, reverse=True)
    for rel, obj in zip(rels, objects, strict=True):
        home = next((h for h in order if h == "" or rel.startswith(h + "/")), None)
        (outputs[home].objects if home is not None else loose).append(obj)
    for output in outputs.values():
        if output.finished:
            manifest_at = join(output.uri, MANIFEST)
            output.manifest = parse_manifest(store.read_bytes(manifest_at), manifest_at)
            output.step = (output.manifest or {}).get("step")
    return sorted(outputs.values(), key=lambda o: o.uri), loose
