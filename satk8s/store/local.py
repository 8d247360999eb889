"""The `file://` store: a directory tree, written with atomic renames, locked with flock."""

from __future__ import annotations

import fcntl
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from satk8s.store.base import ObjectInfo
from satk8s.store.errors import CorruptObjectError
from satk8s.store.manifest import sha256_file
from satk8s.store.uri import local_path


def _tmp_next_to(path: Path) -> Path:
    # Hidden, so listings and manifests skip it if a crash leaves it behind.
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def _link_or_copy(src: Path, dest: Path, link: bool) -> None:
    if link:
        try:
            os.link(src, dest)
            return
        except OSError:  # another filesystem
            pass
    shutil.copyfile(src, dest)


class _FileLock:
    """A kernel lock: released when its holder dies, never taken over from a live one (a
    frozen holder keeps it), so it is never lost."""

    lost = False

    def verify(self) -> bool:
        return True


class LocalStore:
    def put_files(
        self,
        items: Sequence[tuple[Path, str, str | None]],
        link: bool = False,
        create_only: bool = False,
    ) -> None:
        from satk8s.store.errors import StoreError

        for src, uri, _ in items:
            dest = local_path(uri)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if src.resolve() == dest:
                continue
            tmp = _tmp_next_to(dest)
            try:
                _link_or_copy(src, tmp, link)
                if create_only:
                    try:
                        os.link(tmp, dest)  # fails when the name exists
                    except FileExistsError:
                        raise StoreError(uri, "another writer created it meanwhile") from None
                else:
                    os.replace(tmp, dest)
            finally:
                tmp.unlink(missing_ok=True)

    def get_files(self, items: Sequence[tuple[str, Path, str | None]], link: bool = False) -> None:
        for uri, dest, expected in items:
            src = local_path(uri)
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = _tmp_next_to(dest)
            try:
                _link_or_copy(src, tmp, link)
                if expected is not None and (actual := sha256_file(tmp)) != expected:
                    raise CorruptObjectError(uri, expected, actual)
                os.replace(tmp, dest)
            finally:
                tmp.unlink(missing_ok=True)

    def list(self, uri: str) -> list[ObjectInfo]:
        root = local_path(uri)
        if not root.is_dir():
            return []
        out = []
        for path in _files(root):
            try:
                stat = path.stat()
            except FileNotFoundError:  # renamed or removed by another writer meanwhile
                continue
            rel = path.relative_to(root).as_posix()
            out.append(ObjectInfo(f"{uri.rstrip('/')}/{rel}", stat.st_size, stat.st_mtime))
        return sorted(out, key=lambda o: o.uri)

    def exists(self, uri: str) -> bool:
        return local_path(uri).is_file()

    def sha256(self, uri: str) -> str | None:
        path = local_path(uri)
        return sha256_file(path) if path.is_file() else None

    def read_bytes(self, uri: str) -> bytes | None:
        path = local_path(uri)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def write_bytes(self, uri: str, data: bytes) -> None:
        path = local_path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp_next_to(path)
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def create_bytes(self, uri: str, data: bytes) -> bool:
        """Write a small object only if none exists at `uri`: written aside, then hard-linked
        into place, which fails when the name exists (the O_EXCL of a complete file)."""
        path = local_path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp_next_to(path)
        try:
            tmp.write_bytes(data)
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def delete(self, uris: Iterable[str]) -> None:
        for uri in uris:
            local_path(uri).unlink(missing_ok=True)

    def delete_unchanged(self, objects: Iterable[ObjectInfo]) -> None:
        # Writers of a local output are serialised by a kernel lock: nobody replaced them.
        self.delete(o.uri for o in objects)

    @contextmanager
    def lock(self, uri: str, wait: bool = True) -> Iterator[_FileLock]:
        from satk8s.store.lease import LockBusy

        path = local_path(uri)
        while True:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(path, "a+b")  # noqa: SIM115 (held past this block)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                handle.close()
                raise LockBusy(uri, "held by a running writer") from None
            # The file may have been deleted (gc) while this process waited for it: a lock on a
            # deleted file excludes nobody, so lock the file that is there now instead.
            try:
                same = os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            handle.close()
        try:
            yield _FileLock()
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()


def _files(root: Path) -> Iterator[Path]:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            yield Path(dirpath) / name


def remove_empty_dirs(root: Path) -> None:
    """Drop directories left empty under `root` (after deletes), deepest first."""
    for dirpath, _, _ in sorted(os.walk(root), key=lambda d: -len(d[0])):
        if Path(dirpath) != root:
            try:
                os.rmdir(dirpath)
            except OSError:
                pass


LOCAL = LocalStore()
