"""Shared fixtures: the tiny model is built once per test session and reused (cached on disk)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GSM8K_DIR = REPO.parent / "shared" / "data" / "gsm8k"
GSM8K_FIXTURE = REPO / "tests" / "fixtures" / "gsm8k"


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """The default tiny base model, trained once (a few minutes on 2 cores) and reused."""
    from satk8s.tiny.build import TinyBuildConfig, build_or_reuse
    from satk8s.tiny.cache import default_cache_root

    return build_or_reuse(default_cache_root(), TinyBuildConfig())


pytest_plugins = ["tests.s3_fixtures"]
