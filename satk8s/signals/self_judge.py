"""Signal `self_judge`: the policy compares pairs of its own correct solutions.

Pairs are judged in both orders by next-token label probabilities (HFPairJudge with the policy
model), averaged, and aggregated per question (Bradley-Terry by default). Besides the scores
it returns the pairs table and the judge's diagnostics (position bias, order consistency,
invalid verdicts, label mass), which say how far the scores can be trusted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from satk8s.errors import ConfigError
from satk8s.signals.external_judge import judged_scores
from satk8s.signals.pairwise import AGGREGATES, JudgeTemplate

SIGNAL = "self_judge"


@dataclass(frozen=True)
class SelfJudgeConfig:
    judge: JudgeTemplate = field(default_factory=JudgeTemplate)
    """The judge prompt: `judge.template` (ends where the label comes) and `judge.labels`."""
    max_all_pairs_n: int = 8
    """Questions with at most this many solutions get all n(n-1)/2 pairs judged."""
    pair_budget: int = 32
    """Pairs judged per question beyond max_all_pairs_n (each in both orders: 2x the calls)."""
    seed: int = 0
    """Seeds the choice of pairs (with the question id, so each question draws its own)."""
    aggregate: str = "bradley_terry"
    """"bradley_terry" (score = log-strength) or "win_rate" (score = soft win rate)."""
    batch_size: int = 8
    """Judge prompts per forward pass."""
    device: str = "auto"
    """"auto" (cuda when available, else cpu), "cpu", "cuda", ..."""
    dtype: str = "auto"
    """Model weights dtype: "auto" (the checkpoint's own), "float32", "bfloat16", "float16"."""

    def __post_init__(self) -> None:
        if self.aggregate not in AGGREGATES:
            raise ConfigError(
                "aggregate", f"must be one of {', '.join(AGGREGATES)}, got '{self.aggregate}'"
            )
        for name in ("max_all_pairs_n", "pair_budget", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(name, f"must be at least 1, got {getattr(self, name)}")


def self_judge_scores(
    kept: pa.Table, model_dir: str, config: SelfJudgeConfig = SelfJudgeConfig()
) -> tuple[pa.Table, pa.Table, dict[str, Any]]:
    """(scores in SCORES_SCHEMA with signal "self_judge", pairs in PAIRS_SCHEMA, diagnostics)."""
    if kept.num_rows == 0:
        return judged_scores(kept, None, config, SIGNAL, config.aggregate)
    from satk8s.signals.hf_judge import HFPairJudge  # torch: only when judging

    judge = HFPairJudge(
        model_dir,
        config.judge.template,
        config.judge.labels,
        batch_size=config.batch_size,
        device=config.device,
        dtype=config.dtype,
        name="self",
    )
    return judged_scores(kept, judge, config, SIGNAL, config.aggregate)
