"""Step `prepare`: build a task's question sets, one Parquet per split, with their prompts."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

from satk8s.errors import ConfigError
from satk8s.steps.outputs import step_output
from satk8s.tasks.arith import ArithTaskConfig, fewshot_examples, make_splits
from satk8s.tasks.base import Question, format_prompt
from satk8s.tasks.gsm8k import load_gsm8k
from satk8s.tasks.io import write_questions

TASKS = ("arith", "gsm8k")


@dataclass(frozen=True)
class PrepareConfig:
    task: str = "arith"
    """Which task: `arith` (synthetic, seeded) or `gsm8k`."""
    fewshot: int = 0
    """Worked examples put before every prompt (base-model few-shot). 0 for the tiny model."""
    seed: int = 0
    """Seed for choosing the few-shot examples."""
    arith: ArithTaskConfig = field(default_factory=ArithTaskConfig)
    """Difficulty levels, counts and seed of the arith splits."""
    gsm8k_path: str | None = None
    """A directory with train.jsonl/test.jsonl (or None: the `openai/gsm8k` hub dataset)."""
    train_limit: int | None = None
    """Keep only the first N questions of the sampling pool (gsm8k)."""
    test_limit: int | None = None
    """Keep only the first N questions of the test split (gsm8k)."""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(
                "task", f"unknown task '{self.task}'; choose one of: {', '.join(TASKS)}"
            )
        if self.fewshot < 0:
            raise ConfigError("fewshot", f"must be >= 0, got {self.fewshot}")
        for name in ("train_limit", "test_limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(name, f"must be >= 1 or unset, got {value}")


def _gsm8k_splits(config: PrepareConfig) -> tuple[dict[str, list[Question]], list[Question]]:
    train = load_gsm8k("train", config.gsm8k_path)
    test = load_gsm8k("test", config.gsm8k_path, limit=config.test_limit)
    # Few-shot examples come out of the train split and are removed from the sampling pool.
    shots = set(random.Random(config.seed).sample(range(len(train)), config.fewshot))
    fewshot = [train[i] for i in sorted(shots)]
    pool = [q for i, q in enumerate(train) if i not in shots][: config.train_limit]
    return {"train": pool, "test": test}, fewshot


def build_splits(config: PrepareConfig) -> tuple[dict[str, list[Question]], list[Question]]:
    """The task's splits and the few-shot examples used in every prompt."""
    if config.task == "gsm8k":
        return _gsm8k_splits(config)
    fewshot = fewshot_examples(config.fewshot, config.seed) if config.fewshot else []
    return make_splits(config.arith), fewshot


def prepare(
    out: str, config: PrepareConfig = PrepareConfig(), force: bool = False
) -> dict[str, Any]:
    """Writes `<split>.parquet` for every split of the task; returns the question counts."""
    with step_output(out, "prepare", config, {}, force) as output:
        if output.cached is not None:
            return output.cached
        started = time.time()
        splits, fewshot = build_splits(config)
        root = output.open()
        for name, questions in splits.items():
            prompts = [format_prompt(q.question, fewshot) for q in questions]
            write_questions(root / f"{name}.parquet", questions, prompts)
        summary = {
            "task": config.task,
            "fewshot": len(fewshot),
            "questions": {name: len(qs) for name, qs in splits.items()},
        }
        return output.commit(root, summary, started)
