"""The pipeline steps, in data order. Each is one plain function:
input locations and a typed config in, an output location written and a small summary out.

The registry is lazy: a step's module (which may import torch, transformers or TRL) loads only
when its function or config class is first used, so `satk8s --help`, a cache-hit check and the
grid compiler's bookkeeping stay fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Step:
    name: str
    module: str
    """Module below `satk8s.steps` that defines the step function and its config class."""
    function: str
    config_class: str
    summary: str
    """What the step does, one sentence (command-line help)."""
    inputs: tuple[str, ...]
    """Names of the step's required input locations, keyword arguments of `run`."""
    optional_inputs: tuple[str, ...] = ()
    """Input locations the step can do without (an empty string when absent)."""

    @property
    def run(self) -> Callable[..., dict[str, Any]]:
        return getattr(importlib.import_module(f"satk8s.steps.{self.module}"), self.function)

    @property
    def config(self) -> type:
        return getattr(importlib.import_module(f"satk8s.steps.{self.module}"), self.config_class)


STEPS: dict[str, Step] = {
    step.name: step
    for step in (
        Step(
            "tiny", "tiny", "tiny", "TinyStepConfig",
            "Build (or reuse) the tiny embedded base model and store its checkpoint.", (),
        ),
        Step(
            "stage_model", "stage_model", "stage_model", "StageModelConfig",
            "Mirror a hub model into the store at the commit its revision resolves to.", (),
        ),
        Step(
            "prepare", "prepare", "prepare", "PrepareConfig",
            "Build a task's question sets, one Parquet per split, with their prompts.", (),
        ),
        Step(
            "generate", "generate", "generate", "GenerateConfig",
            "Sample n solutions per question with token ids and logprobs, in resumable shards.",
            ("questions",),
        ),
        Step(
            "saturate", "saturate", "saturate", "SaturateConfig",
            "Verify every sample and keep the saturated questions' correct solutions.",
            ("questions", "samples"),
        ),
        Step(
            "signals", "signals", "score", "SignalConfig",
            "Score every correct solution of every saturated question with one signal.",
            ("kept",),
        ),
        Step(
            "calibrate", "calibrate", "calibrate", "CalibrateConfig",
            "Measure how well each signal agrees with the external judge.",
            ("scores", "judge"),
        ),
        Step(
            "build_dataset", "build_dataset", "build_dataset", "BuildConfig",
            "Build one training set (signal x algorithm) from the kept solutions.",
            ("kept",), ("scores",),
        ),
        Step(
            "train", "train", "train_model", "TrainStepConfig",
            "Fine-tune the policy on one training set with TRL.",
            ("dataset",),
        ),
        Step(
            "evaluate", "evaluate", "evaluate", "EvaluateStepConfig",
            "Greedy accuracy (and pass@k / maj@k) of one model on every eval set.",
            ("questions",), ("model",),
        ),
        Step(
            "merge", "merge", "merge", "MergeConfig",
            "Merge the part outputs of a step split over tasks into one output.",
            ("parts",),
        ),
        Step(
            "report", "report", "report", "ReportConfig",
            "The results table, figures and calibration, as Markdown, HTML and JSON.",
            ("evaluations",), ("saturation", "calibration"),
        ),
    )
}  # fmt: skip

# `from satk8s.steps import GenerateConfig` loads the config class on first use. Step functions
# are imported from their modules (`from satk8s.steps.generate import generate`): most share
# their module's name, which the import system binds on the package.
_EXPORTS = {s.config_class: (s.module, s.config_class) for s in STEPS.values()}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'satk8s.steps' has no attribute {name!r}")
    module, attr = _EXPORTS[name]
    return getattr(importlib.import_module(f"satk8s.steps.{module}"), attr)


__all__ = ["STEPS", "Step", *_EXPORTS]
