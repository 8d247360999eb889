"""The shipped tiny checkpoint: built by the current recipe, small, and a positive control;
a fresh build of the recipe reaches the same targets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from satk8s.tiny import TinyBuildConfig
from satk8s.tiny.build import (
    SHIPPED,
    SUMMARY_FILE,
    build_tiny_model,
    recipe,
    recipe_fingerprint,
)
from satk8s.tiny.measure import TARGETS, missed_targets

REBUILD = (
    "rebuild and re-ship it: rm -r satk8s/tiny/checkpoint && "
    "satk8s tiny build --out satk8s/tiny/checkpoint (about 4 minutes on one core)"
)


@pytest.fixture(scope="module")
def shipped_summary() -> dict:
    return json.loads((SHIPPED / SUMMARY_FILE).read_text())


def test_the_shipped_checkpoint_was_built_by_the_current_recipe(shipped_summary: dict) -> None:
    config = TinyBuildConfig()
    assert shipped_summary["config"] == recipe(config), f"the default recipe changed; {REBUILD}"
    assert shipped_summary["recipe_fingerprint"] == recipe_fingerprint(config), (
        f"the builder's code changed since the checkpoint was built; {REBUILD}"
    )


def test_the_shipped_checkpoint_is_small_and_loads_like_a_hub_checkpoint() -> None:
    size = sum(p.stat().st_size for p in SHIPPED.iterdir())
    assert size < 1_000_000
    model = AutoModelForCausalLM.from_pretrained(SHIPPED)
    tokenizer = AutoTokenizer.from_pretrained(SHIPPED)
    assert type(model).__name__ == "Qwen3ForCausalLM"
    assert tokenizer.padding_side == "left"


def test_the_shipped_checkpoint_meets_every_target(shipped_summary: dict) -> None:
    assert shipped_summary["missed_targets"] == []
    assert missed_targets(shipped_summary) == []
    assert {section for section, *_ in TARGETS} <= set(shipped_summary["measured"])


def test_missed_targets_names_the_measurement_and_its_bound() -> None:
    summary = {"measured": {"easy": {"greedy_accuracy": 0.5}}}
    missed = missed_targets(summary)
    assert "easy.greedy_accuracy = 0.5 (target >= 0.95)" in missed
    assert any(line.startswith("judge.label_mass = None") for line in missed)


@pytest.mark.slow
def test_a_fresh_build_of_the_recipe_reaches_its_targets(tmp_path: Path) -> None:
    """What CI checks on its own CPU: the recipe, trained from scratch, is a positive control
    (its weights differ from the shipped ones in the last bits on another CPU)."""
    summary = build_tiny_model(tmp_path / "model", TinyBuildConfig(shipped=False), progress=False)
    assert summary["missed_targets"] == [], json.dumps(summary["measured"], indent=1)


def test_the_tiny_step_stores_the_shipped_checkpoint(tmp_path: Path) -> None:
    from satk8s.steps.tiny import tiny

    summary = tiny(str(tmp_path / "out"), TinyBuildConfig())
    assert summary["shipped"] is True
    stored = tmp_path / "out" / "model.safetensors"
    assert stored.read_bytes() == (SHIPPED / "model.safetensors").read_bytes()
