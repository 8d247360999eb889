"""An exclusive lease on S3: a lock object created and renewed with conditional writes.

Acquire: create `<out>/.lock` with If-None-Match: * (exactly one writer succeeds). The holder
renews it every ttl/3 with If-Match on its ETag, and once more, synchronously, before each
write it makes to the output (`verify`). A waiter takes a lease over, again with If-Match, when
its holder is a dead process on this host, or when the lease has not been renewed for `ttl`
seconds: its age is the server's `Date` minus the object's `LastModified` (both the server's
clock, whole seconds, so less one second), or the time the waiter itself has watched it
unchanged. A holder whose lease was taken
over is `lost`: `verify` says so and the writer stops without writing. The manifest is also
created with If-None-Match: *, so even a writer frozen between its last check and its manifest
cannot overwrite the new owner's (AWS S3 conditional writes, "Preventing object overwrites
with conditional writes" in the S3 User Guide; MinIO and moto implement the same headers).
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
import uuid
from types import TracebackType
from typing import TYPE_CHECKING, Any

from satk8s.store.errors import StoreError

if TYPE_CHECKING:
    from satk8s.store.s3 import S3Store

log = logging.getLogger(__name__)
_HOST = socket.gethostname()


class LockBusy(StoreError):
    """A lock asked for without waiting is held by a live writer."""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class S3Lease:
    def __init__(self, store: S3Store, uri: str, ttl: float, wait: bool = True) -> None:
        self.store, self.uri, self.ttl, self.wait = store, uri, ttl, wait
        self._etag: str | None = None
        self._lost = False
        self._stop = threading.Event()
        self._renewing = threading.Lock()  # the heartbeat and `verify` never race on the ETag
        self._heartbeat: threading.Thread | None = None

    @property
    def lost(self) -> bool:
        return self._lost

    def _body(self) -> bytes:
        owner = {
            "host": _HOST,
            "pid": os.getpid(),
            "thread": threading.get_ident(),
            "nonce": uuid.uuid4().hex,
            "renewed": time.time(),
        }
        return json.dumps(owner).encode()

    def __enter__(self) -> S3Lease:
        self._acquire()
        self._heartbeat = threading.Thread(target=self._beat, daemon=True, name="satk8s-lease")
        self._heartbeat.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        if self._etag is not None and not self._lost:
            self.store.delete_conditional(self.uri, self._etag)

    def _acquire(self) -> None:
        first_seen: dict[str, float] = {}
        delay, last_note = 0.02, time.monotonic()
        while True:
            if etag := self.store.write_conditional(self.uri, self._body(), if_absent=True):
                self._etag = etag
                return
            current = self.store.read_with_age(self.uri)
            if current is None:
                continue  # released between our two requests
            data, etag, age = current
            owner = _owner(data)
            now = time.monotonic()
            watched = now - first_seen.setdefault(etag, now)
            dead_here = owner.get("host") == _HOST and not pid_alive(int(owner.get("pid", -1)))
            # HTTP dates have whole seconds: the server's age may read up to 1 s high.
            if dead_here or max(age - 1.0, watched) >= self.ttl:
                if new := self.store.write_conditional(self.uri, self._body(), if_etag=etag):
                    why = "its process is gone" if dead_here else f"not renewed for {self.ttl:.0f}s"
                    log.warning("took over the lease %s from %s: %s", self.uri, _who(owner), why)
                    self._etag = new
                    return
                continue
            if not self.wait:
                raise LockBusy(self.uri, f"held by {_who(owner)}, renewed {age:.0f}s ago")
            if now - last_note > 30:
                log.info("waiting for the lease %s, held by %s", self.uri, _who(owner))
                last_note = now
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 1.0)

    def _renew(self) -> bool:
        with self._renewing:
            if self._lost:
                return False
            new = self.store.write_conditional(self.uri, self._body(), if_etag=self._etag)
            if new is None:
                log.error("lost the lease %s: another writer took it over", self.uri)
                self._lost = True
                return False
            self._etag = new
            return True

    def verify(self) -> bool:
        """Renew now; False when the lease was taken over (nothing may be written then)."""
        return self._renew()

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                if not self._renew():
                    return
            except Exception as err:  # a network blip: try again next beat
                log.warning("could not renew the lease %s: %s", self.uri, err)


def _owner(data: bytes) -> dict[str, Any]:
    try:
        owner = json.loads(data)
        return owner if isinstance(owner, dict) else {}
    except ValueError:
        return {}


def _who(owner: dict[str, Any]) -> str:
    return f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}"


def held_by_live_writer(store: Any, uri: str) -> bool:
    """Whether the lease at `uri` is held by a live writer, without taking it (a read only on
    S3; a lock attempt that is let go at once on file://)."""
    from satk8s.store.uri import scheme_of

    if scheme_of(uri) == "file":
        try:
            with store.lock(uri, wait=False):
                return False
        except LockBusy:
            return True
    found = store.read_with_age(uri)
    if found is None:
        return False
    owner = _owner(found[0])
    if owner.get("host") == _HOST and not pid_alive(int(owner.get("pid", -1))):
        return False
    return found[2] - 1.0 < store.settings.lock_ttl_s  # whole-second HTTP dates
