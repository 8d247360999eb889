"""An exclusive lock on S3: a lease object created with a conditional write.

Acquire: create `<out>/.lock` with If-None-Match: * (exactly one writer succeeds). The holder
renews it every ttl/3 with If-Match on its ETag. A waiter takes a lock over, again with
If-Match, when its holder is a dead process on this host, or when the lock has not changed
for `ttl` seconds of the waiter's own clock (the holder died elsewhere; no clocks compared).
A holder that finds its lease taken over marks itself `lost`; the commit then fails instead
of writing a manifest. Needs a store with conditional writes (AWS S3 since 2024, MinIO, moto).
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

if TYPE_CHECKING:
    from satk8s.store.s3 import S3Store

log = logging.getLogger(__name__)
_HOST = socket.gethostname()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class S3Lease:
    def __init__(self, store: S3Store, uri: str, ttl: float) -> None:
        self.store, self.uri, self.ttl = store, uri, ttl
        self._etag: str | None = None
        self._lost = False
        self._stop = threading.Event()
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
        self._heartbeat = threading.Thread(target=self._renew, daemon=True, name="satk8s-lease")
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
            current = self.store.read_with_etag(self.uri)
            if current is None:
                continue  # released between our two requests
            data, etag = current
            owner = _owner(data)
            now = time.monotonic()
            held_for = now - first_seen.setdefault(etag, now)
            dead_here = owner.get("host") == _HOST and not pid_alive(int(owner.get("pid", -1)))
            if dead_here or held_for >= self.ttl:
                if new := self.store.write_conditional(self.uri, self._body(), if_etag=etag):
                    why = "its process is gone" if dead_here else f"not renewed for {self.ttl:.0f}s"
                    log.warning("took over the lock %s from %s: %s", self.uri, _who(owner), why)
                    self._etag = new
                    return
                continue
            if now - last_note > 30:
                log.info("waiting for the lock %s, held by %s", self.uri, _who(owner))
                last_note = now
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 1.0)

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                new = self.store.write_conditional(self.uri, self._body(), if_etag=self._etag)
            except Exception as err:  # a network blip: try again next beat
                log.warning("could not renew the lock %s: %s", self.uri, err)
                continue
            if new is None:
                log.error("lost the lock %s: another writer took it over", self.uri)
                self._lost = True
                return
            self._etag = new


def _owner(data: bytes) -> dict[str, Any]:
    try:
        owner = json.loads(data)
        return owner if isinstance(owner, dict) else {}
    except ValueError:
        return {}


def _who(owner: dict[str, Any]) -> str:
    return f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}"
