"""Store locations: `file:///abs/path`, a plain local path, or `s3://bucket/key`."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from satk8s.errors import ConfigError

SCHEMES = ("file", "s3")


def scheme_of(uri: str) -> str:
    """The location's scheme; a plain path counts as `file`."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return "file"
    if parsed.scheme not in SCHEMES or len(parsed.scheme) == 1:  # one letter: a Windows drive
        raise ConfigError("location", f"'{uri}' has scheme '{parsed.scheme}'; use one of {SCHEMES}")
    return parsed.scheme


def local_path(uri: str) -> Path:
    """The filesystem path of a `file://` location or a plain path."""
    if scheme_of(uri) != "file":
        raise ConfigError("location", f"'{uri}' is not a local location")
    parsed = urlparse(uri)
    return Path(parsed.path if parsed.scheme == "file" else uri).expanduser().resolve()


def absolute_uri(uri: str) -> str:
    """The location as a scheme URI: a local one as an absolute `file://` URI (steps may run in
    another directory), any other without its trailing slash."""
    if scheme_of(uri) != "file":
        return uri.rstrip("/")
    return local_path(uri).as_uri()


def join(uri: str, *parts: str) -> str:
    """`uri/part/part`, keeping the scheme."""
    return "/".join([uri.rstrip("/"), *(p.strip("/") for p in parts)])
