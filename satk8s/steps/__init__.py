"""The pipeline steps, in data order. Each is one plain function:
input locations and a typed config in, an output location written and a small summary out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from satk8s.steps.build_dataset import BuildConfig, build_dataset
from satk8s.steps.calibrate import CalibrateConfig, calibrate
from satk8s.steps.evaluate import EvaluateStepConfig, evaluate
from satk8s.steps.generate import GenerateConfig, generate
from satk8s.steps.prepare import PrepareConfig, prepare
from satk8s.steps.report import ReportConfig, report
from satk8s.steps.saturate import SaturateConfig, saturate
from satk8s.steps.signals import SignalConfig, score
from satk8s.steps.train import TrainStepConfig, train_model


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[..., dict[str, Any]]
    config: type
    inputs: tuple[str, ...]
    """Names of the step's required input locations, keyword arguments of `run`."""
    optional_inputs: tuple[str, ...] = ()
    """Input locations the step can do without (an empty string when absent)."""


STEPS: dict[str, Step] = {
    step.name: step
    for step in (
        Step("prepare", prepare, PrepareConfig, ()),
        Step("generate", generate, GenerateConfig, ("questions",)),
        Step("saturate", saturate, SaturateConfig, ("questions", "samples")),
        Step("signals", score, SignalConfig, ("kept",)),
        Step("calibrate", calibrate, CalibrateConfig, ("scores", "judge")),
        Step("build_dataset", build_dataset, BuildConfig, ("kept",), ("scores",)),
        Step("train", train_model, TrainStepConfig, ("dataset",)),
        Step("evaluate", evaluate, EvaluateStepConfig, ("questions",), ("model",)),
        Step("report", report, ReportConfig, ("evaluations",), ("saturation", "calibration")),
    )
}

__all__ = [
    "STEPS",
    "BuildConfig",
    "CalibrateConfig",
    "EvaluateStepConfig",
    "GenerateConfig",
    "PrepareConfig",
    "ReportConfig",
    "SaturateConfig",
    "SignalConfig",
    "Step",
    "TrainStepConfig",
    "build_dataset",
    "calibrate",
    "evaluate",
    "generate",
    "prepare",
    "report",
    "saturate",
    "score",
    "train_model",
]
