"""What a store holds: its step outputs (finished or not) and their sizes, for ls, du and gc.

An output is a location holding a `manifest.json` or a `.output` marker (opened by a writer).
Its state:
- `finished`: a manifest, and every file it lists is there with its recorded size (and, when
  verified, its sha256);
- `damaged`: a manifest whose files are missing, truncated (or, verified, corrupted): never
  taken as finished; rerun the step with --force;
- `writing`: no manifest, and a live writer holds the output's lease;
- `unfinished`: no manifest and no live writer (a crashed run: its pieces are resumed from).

Sizes count the output (its files, manifest, marker and lease) apart from its scratch:
writers' staging directories, committed-piece records and half-written temporaries. Other
objects are loose: neither listed as outputs nor collected.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass, field
from typing import Any

from satk8s.store.base import ObjectInfo, Store, get_store
from satk8s.store.layout import LOCK, MANIFEST, MARKER, is_hidden
from satk8s.store.manifest import parse_manifest, sha256_file
from satk8s.store.uri import join, local_path, scheme_of


@dataclass
class Output:
    uri: str
    has_manifest: bool
    step: str | None = None
    manifest: dict[str, Any] | None = None
    objects: list[ObjectInfo] = field(default_factory=list)
    """Every object at the location, bookkeeping included (what deleting it frees)."""
    problems: list[str] = field(default_factory=list)
    """What is wrong with a manifest's files (missing, truncated, corrupted)."""
    writing: bool = False
    """A live writer holds the output's lease."""

    def _rel(self, obj: ObjectInfo) -> str:
        return obj.uri[len(self.uri.rstrip("/")) + 1 :]

    @property
    def finished(self) -> bool:
        return self.has_manifest and not self.problems

    @property
    def status(self) -> str:
        if self.has_manifest:
            return "damaged" if self.problems else "finished"
        return "writing" if self.writing else "unfinished"

    def _scratch(self, obj: ObjectInfo) -> bool:
        rel = self._rel(obj)
        return is_hidden(rel) and rel not in (LOCK, MARKER)

    @property
    def bytes(self) -> int:
        """The output: its files, manifest, marker and lease."""
        return sum(o.size for o in self.objects if not self._scratch(o))

    @property
    def scratch_bytes(self) -> int:
        """Writers' leftovers and pieces: staging, piece records, temporaries."""
        return sum(o.size for o in self.objects if self._scratch(o))

    @property
    def total_bytes(self) -> int:
        return sum(o.size for o in self.objects)

    @property
    def files(self) -> int:
        return sum(not is_hidden(r) and r != MANIFEST for r in map(self._rel, self.objects))

    @property
    def modified(self) -> float:
        return max((o.modified for o in self.objects), default=0.0)


def inventory(root: str, verify: bool = False) -> tuple[list[Output], list[ObjectInfo]]:
    """The outputs under `root` (sorted by location) and the loose objects. Every finished
    output's files are checked against its manifest's sizes; with `verify`, their sha256 too
    (every byte read)."""
    from satk8s.store.lease import held_by_live_writer

    store = get_store(root)
    prefix = root.rstrip("/") + "/"
    objects = store.list(root)
    rels = [o.uri[len(prefix) :] for o in objects]
    homes: dict[str, bool] = {}  # output dir (relative to root) -> has a manifest
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
        if output.has_manifest:
            manifest_at = join(output.uri, MANIFEST)
            output.manifest = parse_manifest(store.read_bytes(manifest_at), manifest_at)
            output.step = (output.manifest or {}).get("step")
            output.problems = check_files(store, output, verify)
        elif any(output._rel(o) == LOCK for o in output.objects):
            output.writing = held_by_live_writer(store, join(output.uri, LOCK))
    return sorted(outputs.values(), key=lambda o: o.uri), loose


def check_files(store: Store, output: Output, verify: bool) -> list[str]:
    """What is wrong with the files `output`'s manifest lists: missing, other sizes, and with
    `verify` other bytes than its sha256."""
    found = {output._rel(o): o for o in output.objects}
    problems = []
    for entry in (output.manifest or {}).get("files", []):
        obj = found.get(entry["path"])
        if obj is None:
            problems.append(f"{entry['path']} is missing")
        elif obj.size != entry["size"]:
            problems.append(f"{entry['path']} has {obj.size} bytes, not {entry['size']}")
        elif verify and _sha256(store, obj.uri) != entry["sha256"]:
            problems.append(f"{entry['path']} does not match its sha256")
    return problems


def _sha256(store: Store, uri: str) -> str:
    """The sha256 of the object's bytes as stored (read in full, not its recorded sha256)."""
    if scheme_of(uri) == "file":
        return sha256_file(local_path(uri))
    from satk8s.store.s3 import s3_errors, split

    bucket, key = split(uri)
    digest = hashlib.sha256()
    with s3_errors(uri, "read"):
        body = store.client.get_object(Bucket=bucket, Key=key)["Body"]  # type: ignore[attr-defined]
        for chunk in body.iter_chunks(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
