"""Store errors. Each names the location that failed and what to do about it."""

from __future__ import annotations

from satk8s.errors import DataError, Satk8sError


class StoreError(Satk8sError):
    """A store operation failed (unreachable endpoint, missing bucket, denied access, ...)."""

    def __init__(self, uri: str, message: str) -> None:
        from satk8s.store.redact import redact_text

        self.uri = redact_text(uri)
        super().__init__(redact_text(f"{uri}: {message}"))


class CorruptObjectError(DataError):
    """A stored object's bytes do not match the sha256 recorded for it."""

    def __init__(self, uri: str, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            uri,
            f"sha256 mismatch (recorded {expected}, read {actual}): the stored object is "
            "truncated or corrupted. Recompute the step that wrote it with --force.",
        )
