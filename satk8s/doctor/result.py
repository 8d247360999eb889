"""What one doctor check found: a status, what was seen, and how to fix it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Status(str, Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome. `fix` is set whenever status is FAIL or WARN."""

    name: str
    status: Status
    message: str
    fix: str = ""
    details: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def ok(cls, name: str, message: str, details: tuple[str, ...] = ()) -> CheckResult:
        return cls(name, Status.OK, message, "", details)

    @classmethod
    def fail(cls, name: str, message: str, fix: str, details: tuple[str, ...] = ()) -> CheckResult:
        return cls(name, Status.FAIL, message, fix, details)

    @classmethod
    def warn(cls, name: str, message: str, fix: str, details: tuple[str, ...] = ()) -> CheckResult:
        return cls(name, Status.WARN, message, fix, details)

    @classmethod
    def skip(cls, name: str, message: str) -> CheckResult:
        return cls(name, Status.SKIP, message)
