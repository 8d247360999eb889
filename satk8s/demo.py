"""`make demo`: the method end to end on CPU, with the tiny model satk8s builds itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from satk8s.generation import SamplingConfig
from satk8s.steps import GenerateConfig, SaturateConfig, generate, prepare, saturate
from satk8s.steps.prepare import PrepareConfig
from satk8s.tiny import TinyBuildConfig, build_or_reuse


def _say(title: str, summary: dict[str, Any]) -> None:
    state = "cached" if summary.get("cached") else f"{summary.get('seconds', 0):.1f}s"
    print(f"== {title} ({state})")


def run_demo(workdir: Path, force: bool = False) -> dict[str, Any]:
    """Build (or reuse) the tiny model, then prepare → generate → saturate on arith."""
    workdir = workdir.resolve()
    print(f"== tiny model (built once, reused from {workdir / 'models'})")
    model_dir = build_or_reuse(workdir / "models", TinyBuildConfig())
    runs = workdir / "runs"

    questions = str(runs / "prepare")
    _say("prepare", prepare(questions, PrepareConfig(task="arith"), force=force))
    samples = str(runs / "generate")
    config = GenerateConfig(model=str(model_dir), sampling=SamplingConfig(n=8, max_new_tokens=48))
    _say("generate", generate(questions, samples, config, force=force))
    saturated = str(runs / "saturate")
    summary = saturate(questions, samples, saturated, SaturateConfig(), force=force)
    _say("saturate", summary)
    print("saturation summary:")
    print(
        json.dumps({k: v for k, v in summary.items() if k not in ("cached", "seconds")}, indent=2)
    )
    return summary
