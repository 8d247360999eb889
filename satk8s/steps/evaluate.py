"""Step `evaluate`: greedy accuracy (and pass@k / maj@k) of one model on every eval set."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from satk8s.errors import ConfigError, DataError
from satk8s.evaluation.evaluate import PER_QUESTION_SCHEMA, EvalConfig, evaluate_model
from satk8s.generation.context import check_context_window
from satk8s.signals.gate import GATED_FILE
from satk8s.steps.outputs import finished_summary, input_path, split_locations, step_output
from satk8s.steps.parts import PartConfig
from satk8s.store.stage_model import resolve_model
from satk8s.tasks.io import read_questions


@dataclass(frozen=True)
class EvaluateStepConfig:
    splits: tuple[str, ...] = ("eval_id", "eval_hard")
    """Eval sets by split name, looked up in the question locations in order (e.g. arith's
    eval_id and eval_hard, gsm8k's test)."""
    model: str = ""
    """The model to evaluate when no trained-model input is given (the base model)."""
    algorithm: str = "base"
    """Label for the report: the training algorithm, or "base"."""
    signal: str = "none"
    """Label for the report: the signal the training set was built with."""
    seed: int = 0
    """Label for the report: the training seed (pairs Δ vs SFT within a seed)."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Backend, max tokens, bootstrap, pass@k settings."""
    part: PartConfig = field(default_factory=PartConfig)
    """This task's share of every eval set (`satk8s.steps.parts`); a grid sets it from
    `parallel.evaluate`. Greedy results do not depend on the split; pass@k / maj@k samples
    are drawn per part, with the same seed."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "splits", tuple(self.splits))
        if not self.splits:
            raise ConfigError("splits", "name at least one eval split")


def _eval_sets(questions: str, splits: tuple[str, ...]) -> dict[str, tuple[list, list]]:
    roots = [input_path(loc, "questions", "step") for loc in split_locations(questions)]
    sets = {}
    for split in splits:
        root = next((r for r in roots if (r / f"{split}.parquet").is_file()), None)
        if root is None:
            raise DataError(questions, f"no question location has the eval split '{split}'")
        sets[split] = read_questions(root, split)
    return sets


def evaluate(
    questions: str, out: str, config: EvaluateStepConfig, model: str = "", force: bool = False
) -> dict[str, Any]:
    """`model` is a train step's output (its `model/` is evaluated); without it, `config.model`.
    Writes `per_question.parquet` and `summary.json`. A gated cell (the train output holds
    `gated.json`) is not evaluated: its summary says gated, with the reasons."""
    if not model and not config.model:
        raise ConfigError("model", "give a trained-model input or config.model")
    inputs = {"questions": questions, "model": model}
    with step_output(out, "evaluate", config, inputs, force) as output:
        if output.cached is not None:
            return output.cached
        started = time.time()
        labels = {"algorithm": config.algorithm, "signal": config.signal, "seed": config.seed}
        trained = input_path(model, "model", "step") if model else None
        if trained is not None and (trained / GATED_FILE).is_file():
            gate = json.loads((trained / GATED_FILE).read_text())
            root = output.open()
            pq.write_table(PER_QUESTION_SCHEMA.empty_table(), root / "per_question.parquet")
            summary = {**labels, "gated": gate, "eval_sets": {}}
            (root / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
            (root / GATED_FILE).write_text(json.dumps(gate, indent=2))
            return output.commit(root, {**labels, "gated": True}, started)
        sets = _eval_sets(questions, config.splits)
        for name, (qs, ps) in sets.items():
            qs, ps = qs[: config.eval.limit], ps[: config.eval.limit]
            start, stop = config.part.bounds(len(qs))
            sets[name] = (qs[start:stop], ps[start:stop])
        model_dir = str(trained / "model") if trained is not None else resolve_model(config.model)
        # Before the model is loaded: every prompt must leave room for max_new_tokens.
        check_context_window(
            model_dir,
            [
                (q.id, p)
                for qs, ps in sets.values()
                for q, p in list(zip(qs, ps, strict=True))[: config.eval.limit]
            ],
            config.eval.max_new_tokens,
            "eval.max_new_tokens",
        )
        per_question, summary = evaluate_model(model_dir, sets, config.eval)
        summary.update(labels)
        if model:
            summary["training_set"] = (finished_summary(model) or {}).get("training_set")
        root = output.open()
        pq.write_table(per_question, root / "per_question.parquet")
        (root / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        return output.commit(root, summary, started)


def load_evaluation(location: str) -> dict[str, Any]:
    """A finished evaluation as a report cell: labels, summary and per-question table path."""
    root = input_path(location, "evaluation", "step")
    summary = json.loads((root / "summary.json").read_text())
    return {
        "algorithm": summary["algorithm"],
        "signal": summary["signal"],
        "seed": summary["seed"],
        "summary": summary,
        "per_question": str(Path(root) / "per_question.parquet"),
        "gated": summary.get("gated"),
    }
