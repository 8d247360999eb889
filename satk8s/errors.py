"""Errors that carry where the bad input is, so a user can fix it before any GPU time is spent."""

from __future__ import annotations


class Satk8sError(Exception):
    """Base class: every error satk8s raises on purpose. Its text never shows a secret: known
    secret values and URL credentials are masked wherever it is printed or logged."""

    def __str__(self) -> str:
        from satk8s.store.redact import redact_text

        return redact_text(super().__str__())


class ConfigError(Satk8sError, ValueError):
    """A config field holds a bad value. The message names the field and what is allowed."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"config field '{field}': {message}")


class DataError(Satk8sError, ValueError):
    """An input file is missing or malformed. The message names the file and, where known, the line."""

    def __init__(self, path: str, message: str, line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = f"{path}, line {line}" if line is not None else path
        super().__init__(f"{where}: {message}")
