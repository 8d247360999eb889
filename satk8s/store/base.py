"""One interface over every store: `file://` (local default) and `s3://` (AWS S3, MinIO, ...).

Locations are URIs throughout (`satk8s.store.uri`). A directory is a prefix: listing
`s3://b/runs` yields the objects under `s3://b/runs/`. Every object has a sha256: stored as
object metadata on S3, computed from the bytes locally. Reads check it and raise
`CorruptObjectError` on a mismatch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from satk8s.store.settings import S3Settings
from satk8s.store.uri import scheme_of


@dataclass(frozen=True)
class ObjectInfo:
    uri: str
    size: int
    modified: float
    """Seconds since the epoch."""
    etag: str | None = None
    """The object's version tag (S3's ETag); None on a local store."""


class Lock(Protocol):
    @property
    def lost(self) -> bool:
        """True when another writer took the lock over (this one stalled past its lease)."""

    def verify(self) -> bool:
        """Whether the lock is still this holder's, checked with the store now."""


class Store(Protocol):
    def put_files(
        self,
        items: Sequence[tuple[Path, str, str | None]],
        link: bool = False,
        create_only: bool = False,
    ) -> None:
        """Upload (local path, destination URI, sha256 or None) triples, in parallel where it
        helps. `link` lets a local store hard-link instead of copying (the source must then
        never change in place). `create_only` writes an object only where none exists
        (S3: If-None-Match: *) and raises `StoreError` otherwise."""

    def get_files(self, items: Sequence[tuple[str, Path, str | None]], link: bool = False) -> None:
        """Download (URI, local path, expected sha256 or None) triples; None checks against the
        object's stored sha256 where it has one. Each destination appears only when complete.
        `link` lets a local store hard-link (the copy must then never change in place)."""

    def list(self, uri: str) -> list[ObjectInfo]:
        """Every object under the prefix `uri`, recursively, sorted by URI."""

    def exists(self, uri: str) -> bool:
        """Whether `uri` is an object."""

    def sha256(self, uri: str) -> str | None:
        """The object's sha256 (stored metadata on S3), or None when unknown or missing."""

    def read_bytes(self, uri: str) -> bytes | None:
        """A small object's bytes, or None when it does not exist."""

    def write_bytes(self, uri: str, data: bytes) -> None:
        """Write a small object atomically (readers see the old bytes or the new, never a mix)."""

    def create_bytes(self, uri: str, data: bytes) -> bool:
        """Write a small object atomically only if `uri` does not exist; False if it does."""

    def delete(self, uris: Iterable[str]) -> None:
        """Remove objects; missing ones are fine."""

    def delete_unchanged(self, objects: Iterable[ObjectInfo]) -> None:
        """Remove objects only if they are still the ones listed (S3: If-Match on the ETag);
        `StoreError` if one was replaced meanwhile."""

    def lock(self, uri: str, wait: bool = True) -> AbstractContextManager[Lock]:
        """An exclusive lock kept at `uri`, shared by every process and host using the store.
        Without `wait`, raises `LockBusy` when a live writer holds it."""


def put_file(src: Path, uri: str, sha256: str | None = None) -> None:
    get_store(uri).put_files([(Path(src), uri, sha256)])


def get_file(uri: str, dest: Path, sha256: str | None = None) -> Path:
    get_store(uri).get_files([(uri, Path(dest), sha256)])
    return Path(dest)


def put_dir(src: Path, uri: str) -> list[str]:
    """Upload every file below `src` to the prefix `uri`; returns the destination URIs."""
    from satk8s.store.uri import join

    files = sorted(p for p in Path(src).rglob("*") if p.is_file())
    items = [(p, join(uri, p.relative_to(src).as_posix()), None) for p in files]
    get_store(uri).put_files(items)
    return [dest for _, dest, _ in items]


def get_dir(uri: str, dest: Path) -> Path:
    """Download every object under the prefix `uri` into `dest`, keeping relative paths."""
    store = get_store(uri)
    prefix = uri.rstrip("/") + "/"
    items = [(o.uri, Path(dest) / o.uri[len(prefix) :], None) for o in store.list(uri)]
    store.get_files(items)
    return Path(dest)


def walk(uri: str) -> Iterator[tuple[str, ObjectInfo]]:
    """(path relative to `uri`, object) for every object under `uri`."""
    prefix = uri.rstrip("/") + "/"
    for info in get_store(uri).list(uri):
        yield info.uri[len(prefix) :], info


def get_store(uri: str, settings: S3Settings | None = None) -> Store:
    """The store that serves `uri`. S3 settings come from the environment unless given."""
    if scheme_of(uri) == "file":
        from satk8s.store.local import LOCAL

        return LOCAL
    from satk8s.store.s3 import s3_store

    return s3_store(settings or default_settings())


_configured: S3Settings | None = None


def configure(settings: S3Settings | None) -> None:
    """Use these S3 settings (e.g. from a config file) instead of the environment's."""
    global _configured
    _configured = settings


def default_settings() -> S3Settings:
    return _configured or S3Settings.from_env()
