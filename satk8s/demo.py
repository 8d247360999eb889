"""`make demo`: the whole method end to end on CPU, with the tiny model satk8s builds itself.

prepare → generate → saturate → signals (entropy, self_judge, random, and the arith oracle as
the external judge) → calibrate → build datasets (sft, and best_of_n / weighted_sft / dpo for
two signals) → train → evaluate (base model and every cell) → report. Smoke-sized: every step
does real work on the tiny model, with few questions and few training steps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from satk8s.evaluation.evaluate import EvalConfig
from satk8s.generation import SamplingConfig
from satk8s.signals.external_judge import ExternalJudgeConfig
from satk8s.steps import (
    BuildConfig,
    CalibrateConfig,
    EvaluateStepConfig,
    GenerateConfig,
    PrepareConfig,
    SaturateConfig,
    SignalConfig,
    TrainStepConfig,
    build_dataset,
    calibrate,
    evaluate,
    generate,
    prepare,
    report,
    saturate,
    score,
    train_model,
)
from satk8s.tasks.arith import ArithTaskConfig
from satk8s.tiny import TinyBuildConfig, build_or_reuse
from satk8s.tiny.cache import default_cache_root
from satk8s.training.train import TrainConfig

SIGNALS = ("entropy", "self_judge")
ALGORITHMS = ("best_of_n", "weighted_sft", "dpo")
# Smoke-sized sets: the pool mixes levels so some questions saturate and some do not.
TASK = ArithTaskConfig(
    train={"easy": 48, "medium": 24}, eval_id={"easy": 40, "medium": 20}, eval_hard={"hard": 60}
)
SAMPLING = SamplingConfig(n=8, temperature=1.0, max_new_tokens=48, seed=0)


def _say(title: str, summary: dict[str, Any]) -> None:
    state = "cached" if summary.get("cached") else f"{summary.get('seconds', 0):.1f}s"
    print(f"== {title} ({state})", flush=True)


def _train_config(algorithm: str, steps: int) -> TrainConfig:
    return TrainConfig(
        algorithm=algorithm,
        learning_rate=5e-4 if algorithm != "dpo" else 1e-4,
        max_steps=steps,
        per_device_batch_size=16,
        max_length=128,
        logging_steps=5,
        save_steps=15,
        seed=0,
    )


def run_demo(
    workdir: Path,
    force: bool = False,
    tiny: TinyBuildConfig = TinyBuildConfig(),
    task: ArithTaskConfig = TASK,
    train_steps: int = 30,
) -> dict[str, Any]:
    """Run every step into `workdir/runs` (cache hits for finished outputs); returns the report
    step's summary."""
    runs = workdir.resolve() / "runs"
    print(f"== tiny model (built once, then reused from {default_cache_root()})", flush=True)
    model = str(build_or_reuse(default_cache_root(), tiny))

    def at(name: str) -> str:
        return str(runs / name)

    _say("prepare", prepare(at("prepare"), PrepareConfig(task="arith", arith=task), force=force))
    gen = GenerateConfig(model=model, sampling=SAMPLING)
    _say("generate", generate(at("prepare"), at("generate"), gen, force=force))
    sat = saturate(at("prepare"), at("generate"), at("saturate"), SaturateConfig(), force=force)
    _say("saturate", sat)
    print(
        json.dumps(
            {
                k: sat[k]
                for k in ("questions", "saturated_questions", "kept_solutions", "histogram")
            },
            indent=2,
        )
    )

    judge = SignalConfig(signal="external_judge", external_judge=ExternalJudgeConfig(kind="oracle"))
    signal_configs = {
        "entropy": SignalConfig(signal="entropy", model=model),
        "self_judge": SignalConfig(signal="self_judge", model=model),
        "random": SignalConfig(signal="random"),
        "external_judge": judge,
    }
    for name, config in signal_configs.items():
        _say(f"signal {name}", score(at("saturate"), at(f"signal-{name}"), config, force=force))
    scored = ",".join(at(f"signal-{n}") for n in ("entropy", "self_judge", "random"))
    cal = calibrate(
        scored, at("signal-external_judge"), at("calibrate"), CalibrateConfig(), force=force
    )
    _say("calibrate", cal)

    evaluate_config = EvalConfig(max_new_tokens=48, n_boot=1000)
    base = EvaluateStepConfig(model=model, eval=evaluate_config)
    evaluations = [at("evaluate-base")]
    _say("evaluate base", evaluate(at("prepare"), evaluations[0], base, force=force))
    cells = [("sft", "none")] + [(a, s) for s in SIGNALS for a in ALGORITHMS]
    for algorithm, signal in cells:
        cell = f"{algorithm}-{signal}"
        scores = "" if signal == "none" else at(f"signal-{signal}")
        built = build_dataset(
            at("saturate"),
            at(f"dataset-{cell}"),
            BuildConfig(algorithm=algorithm),
            scores=scores,
            force=force,
        )
        _say(f"dataset {cell} ({built['rows']} rows)", built)
        trained = train_model(
            at(f"dataset-{cell}"),
            at(f"train-{cell}"),
            TrainStepConfig(model=model, train=_train_config(algorithm, train_steps)),
            force=force,
        )
        _say(f"train {cell}", trained)
        config = EvaluateStepConfig(algorithm=algorithm, signal=signal, eval=evaluate_config)
        evaluations.append(at(f"evaluate-{cell}"))
        _say(
            f"evaluate {cell}",
            evaluate(
                at("prepare"), evaluations[-1], config, model=at(f"train-{cell}"), force=force
            ),
        )

    result = report(
        ",".join(evaluations),
        at("report"),
        saturation=at("saturate"),
        calibration=at("calibrate"),
        force=force,
    )
    _say("report", result)
    print(Path(at("calibrate"), "calibration.md").read_text())
    print(result["table_markdown"])
    print(f"report: {result['report']}\n        {result['html']}")
    return result
