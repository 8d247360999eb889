"""Names inside a step output location.

`<out>/manifest.json` marks the output finished (written last). Hidden names (any path part
starting with `.`) are the store's own bookkeeping and scratch, never part of an output:
`.output` marks a location as a step output from the moment it is opened, `.lock` serialises
its writers, `.staging/` holds local writers' unfinished files, `.<name>.tmp` files are
half-written.
"""

from __future__ import annotations

from satk8s.store.uri import join

MANIFEST = "manifest.json"
LOCK = ".lock"
MARKER = ".output"
STAGING = ".staging"


def is_hidden(rel: str) -> bool:
    """Whether a path relative to an output is bookkeeping rather than output data."""
    return any(part.startswith(".") for part in rel.split("/"))


def manifest_uri(out: str) -> str:
    return join(out, MANIFEST)


def lock_uri(out: str) -> str:
    return join(out, LOCK)


def marker_uri(out: str) -> str:
    return join(out, MARKER)
