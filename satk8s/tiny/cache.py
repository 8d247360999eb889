"""Where built tiny models are kept, so tests and the demo build one only once per machine."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_root() -> Path:
    """`$SATK8S_CACHE/tiny`, by default `./.cache/tiny`."""
    return Path(os.environ.get("SATK8S_CACHE", ".cache")).expanduser().resolve() / "tiny"
