"""How to reach an S3-compatible store: AWS S3, MinIO, Ceph, moto, ...

Every field comes from config (`S3Settings.from_config`) or else the environment:

| field                | environment (first set wins)                               |
|----------------------|------------------------------------------------------------|
| endpoint_url         | SATK8S_S3_ENDPOINT_URL, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL |
| region               | SATK8S_S3_REGION, AWS_REGION, AWS_DEFAULT_REGION           |
| addressing_style     | SATK8S_S3_ADDRESSING_STYLE (path, virtual, auto)           |
| access_key_id        | AWS_ACCESS_KEY_ID                                          |
| secret_access_key    | AWS_SECRET_ACCESS_KEY                                      |
| session_token        | AWS_SESSION_TOKEN                                          |
| multipart_threshold_mb, multipart_chunk_mb, max_concurrency, max_attempts, lock_ttl_s | SATK8S_S3_<NAME> |

Unset credentials fall through to boto3's own chain (profile, IRSA, instance role). The
credentials never appear in `repr` or `str`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from satk8s.errors import ConfigError
from satk8s.store.redact import redact_text, register_secrets

ADDRESSING_STYLES = ("auto", "path", "virtual")
_ENV = {
    "endpoint_url": ("SATK8S_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
    "region": ("SATK8S_S3_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"),
    "addressing_style": ("SATK8S_S3_ADDRESSING_STYLE",),
    "access_key_id": ("AWS_ACCESS_KEY_ID",),
    "secret_access_key": ("AWS_SECRET_ACCESS_KEY",),
    "session_token": ("AWS_SESSION_TOKEN",),
    "multipart_threshold_mb": ("SATK8S_S3_MULTIPART_THRESHOLD_MB",),
    "multipart_chunk_mb": ("SATK8S_S3_MULTIPART_CHUNK_MB",),
    "max_concurrency": ("SATK8S_S3_MAX_CONCURRENCY",),
    "max_attempts": ("SATK8S_S3_MAX_ATTEMPTS",),
    "lock_ttl_s": ("SATK8S_S3_LOCK_TTL_S",),
}
_CREDENTIALS = ("access_key_id", "secret_access_key", "session_token")


@dataclass(frozen=True)
class S3Settings:
    endpoint_url: str | None = None
    """S3 API endpoint, e.g. `http://minio:9000`; None means AWS S3 itself."""
    region: str | None = None
    """Signing region; None lets boto3 decide (us-east-1 for a custom endpoint)."""
    addressing_style: str = "auto"
    """`path` (bucket in the path: MinIO and most self-hosted stores), `virtual` or `auto`.
    Left `auto` with a custom endpoint, it becomes `path`."""
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    multipart_threshold_mb: int = 64
    """Files at least this large go up (and come down) in parts, in parallel."""
    multipart_chunk_mb: int = 16
    """Part size (S3 needs at least 5 MiB per part)."""
    max_concurrency: int = 8
    """Parallel transfer threads (parts and files)."""
    max_attempts: int = 5
    """Tries per request (throttling, 5xx and connection errors are retried with backoff)."""
    lock_ttl_s: float = 60.0
    """A writer's lock that is not renewed for this long is taken over (the writer died)."""

    def __post_init__(self) -> None:
        if self.addressing_style not in ADDRESSING_STYLES:
            raise ConfigError(
                "addressing_style", f"'{self.addressing_style}'; use one of {ADDRESSING_STYLES}"
            )
        if self.multipart_chunk_mb < 5:
            raise ConfigError(
                "multipart_chunk_mb", f"S3 parts must be >= 5 MiB, got {self.multipart_chunk_mb}"
            )
        for name in ("multipart_threshold_mb", "max_concurrency", "max_attempts", "lock_ttl_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(name, f"must be > 0, got {getattr(self, name)}")
        register_secrets(getattr(self, name) for name in _CREDENTIALS)

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
    ) -> S3Settings:
        """Settings from `config` (field name -> value), each missing field from `env`."""
        config = dict(config or {})
        env = os.environ if env is None else env
        unknown = sorted(set(config) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError("store.s3", f"unknown settings {unknown}")
        values: dict[str, Any] = {}
        for f in fields(cls):
            if config.get(f.name) is not None:
                values[f.name] = config[f.name]
                continue
            found = next((env[n] for n in _ENV[f.name] if env.get(n)), None)
            if found is not None:
                values[f.name] = _parse(f.name, found, f.type)
        if values.get("endpoint_url") and values.get("addressing_style", "auto") == "auto":
            values["addressing_style"] = "path"
        return cls(**values)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> S3Settings:
        return cls.from_config(None, env)

    def __repr__(self) -> str:
        given = "given" if self.access_key_id or self.secret_access_key else "default chain"
        endpoint = redact_text(self.endpoint_url) if self.endpoint_url else "AWS"
        return (
            f"S3Settings(endpoint={endpoint}, region={self.region}, "
            f"addressing_style={self.addressing_style}, credentials=<{given}, hidden>)"
        )

    __str__ = __repr__


def _parse(name: str, raw: str, kind: Any) -> Any:
    kind = str(kind)
    try:
        if "int" in kind:
            return int(raw)
        if "float" in kind:
            return float(raw)
    except ValueError:
        raise ConfigError(name, f"expected a number, got {raw!r}") from None
    return raw
