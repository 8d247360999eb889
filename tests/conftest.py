"""Shared fixtures: the tiny model is built once per test session and reused (cached on disk)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# One thread per process: matmuls this small gain nothing from two, and two threads spin at
# barriers (10-20x slower) whenever another process shares a 2-core machine.
torch.set_num_threads(int(os.environ.get("SATK8S_TEST_THREADS", "1")))
# Steps run in this process (run_component) set their threads too (satk8s.threads): the same.
os.environ.setdefault("SATK8S_THREADS", os.environ.get("SATK8S_TEST_THREADS", "1"))

REPO = Path(__file__).resolve().parents[1]
GSM8K_DIR = REPO.parent / "shared" / "data" / "gsm8k"
GSM8K_FIXTURE = REPO / "tests" / "fixtures" / "gsm8k"


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """The default tiny base model: the checkpoint that ships with satk8s (no training)."""
    from satk8s.tiny.build import TinyBuildConfig, build_or_reuse
    from satk8s.tiny.cache import default_cache_root

    return build_or_reuse(default_cache_root(), TinyBuildConfig())


@pytest.fixture(scope="session")
def random_tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init tiny Qwen3 and its tokenizer, saved like any hub checkpoint: instant, for
    tests that need a model to run but not a good one."""
    from satk8s.tiny.model import new_model
    from satk8s.tiny.tokenizer import build_tokenizer

    path = tmp_path_factory.mktemp("random-tiny")
    tokenizer = build_tokenizer()
    new_model(tokenizer, seed=0).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


pytest_plugins = ["tests.s3_fixtures", "tests.kube_fake", "tests.kfp_fake"]
