"""The tiny embedded base model: a small Qwen3 trained from scratch on worked arithmetic.

`TinyBuildConfig` loads without torch; the builder (`build_or_reuse`, `build_tiny_model`) loads
torch and transformers on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from satk8s.tiny.config import TinyArchitecture, TinyBuildConfig

_BUILDER = ("build_or_reuse", "build_tiny_model")


def __getattr__(name: str) -> Any:
    if name not in _BUILDER:
        raise AttributeError(f"module 'satk8s.tiny' has no attribute {name!r}")
    return getattr(importlib.import_module("satk8s.tiny.build"), name)


__all__ = ["TinyArchitecture", "TinyBuildConfig", *_BUILDER]
