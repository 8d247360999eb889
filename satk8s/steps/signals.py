"""Step `signals`: score every correct solution of every saturated question with one signal."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from satk8s.errors import ConfigError
from satk8s.signals.controls import LengthConfig, LogprobConfig, length_scores, logprob_scores
from satk8s.signals.entropy import EntropyConfig, entropy_scores
from satk8s.signals.external_judge import ExternalJudgeConfig, external_judge_scores
from satk8s.signals.random_control import random_scores
from satk8s.signals.self_judge import SelfJudgeConfig, self_judge_scores
from satk8s.steps.outputs import input_path, step_output
from satk8s.steps.parts import PartConfig
from satk8s.store.stage_model import resolve_model

SIGNALS = ("entropy", "self_judge", "external_judge", "random", "length", "logprob")
# Signals that read the policy (its weights, or for length and logprob its tokenizer only).
POLICY_SIGNALS = ("entropy", "self_judge", "length", "logprob")
# The judge health a judged signal's summary carries (see `pair_diagnostics`).
JUDGE_HEALTH = (
    "mean_label_mass",
    "invalid_share",
    "position_bias",
    "order_consistency",
    "distinct_pairs",
    "identical_pairs",
)


@dataclass(frozen=True)
class SignalConfig:
    signal: str = "entropy"
    """Which signal: `entropy`, `self_judge`, `external_judge`, or a control: `random`,
    `length` (content tokens), `logprob` (mean sampled-token log-probability)."""
    model: str = ""
    """The policy model (entropy, self_judge; its tokenizer for length and logprob): the model
    that generated the samples."""
    entropy: EntropyConfig = field(default_factory=EntropyConfig)
    """Settings of the entropy signal."""
    self_judge: SelfJudgeConfig = field(default_factory=SelfJudgeConfig)
    """Settings of the self-judge signal."""
    external_judge: ExternalJudgeConfig = field(default_factory=ExternalJudgeConfig)
    """Settings of the external judge (kind, model or endpoint, template)."""
    random_seed: int = 0
    """Seed of the random control."""
    length: LengthConfig = field(default_factory=LengthConfig)
    """Settings of the length control (direction)."""
    logprob: LogprobConfig = field(default_factory=LogprobConfig)
    """Settings of the logprob control (direction)."""
    part: PartConfig = field(default_factory=PartConfig)
    """This task's share of the saturated questions (`satk8s.steps.parts`); a grid sets it
    from `parallel.signals`."""

    def __post_init__(self) -> None:
        if self.signal not in SIGNALS:
            raise ConfigError(
                "signal", f"unknown signal '{self.signal}'; choose one of: {', '.join(SIGNALS)}"
            )
        if self.signal in POLICY_SIGNALS and not self.model:
            raise ConfigError("model", f"signal '{self.signal}' needs the policy model")


def _compute(
    kept: pa.Table, config: SignalConfig, model: str
) -> tuple[pa.Table, pa.Table | None, dict]:
    if config.signal == "random":
        return random_scores(kept, config.random_seed), None, {}
    if config.signal == "entropy":
        return entropy_scores(kept, model, config.entropy), None, {}
    if config.signal == "length":
        return length_scores(kept, model, config.length), None, {}
    if config.signal == "logprob":
        return logprob_scores(kept, model, config.logprob), None, {}
    if config.signal == "self_judge":
        return self_judge_scores(kept, model, config.self_judge)
    return external_judge_scores(kept, config.external_judge)


def score(kept: str, out: str, config: SignalConfig, force: bool = False) -> dict[str, Any]:
    """Writes `scores.parquet` (SCORES_SCHEMA), and for judges `pairs.parquet` and
    `diagnostics.json` (position bias, order consistency, invalid verdicts)."""
    with step_output(out, "signals", config, {"kept": kept}, force) as output:
        if output.cached is not None:
            return output.cached
        started = time.time()
        table = part_of(
            pq.read_table(input_path(kept, "kept", "step") / "kept.parquet"), config.part
        )
        # A hub id, a local directory, or a store prefix (fetched and verified once).
        model = resolve_model(config.model) if config.model else ""
        scores, pairs, diagnostics = _compute(table, config, model)
        root = output.open()
        pq.write_table(scores, root / "scores.parquet")
        if pairs is not None:
            pq.write_table(pairs, root / "pairs.parquet")
        (root / "diagnostics.json").write_text(json.dumps(diagnostics, indent=2, default=str))
        summary = {
            "signal": config.signal,
            "solutions": table.num_rows,
            "scored": scores.num_rows,
            "questions": len(set(table.column("question_id").to_pylist())),
            **({"note": "empty saturated set"} if table.num_rows == 0 else {}),
            **{k: v for k, v in diagnostics.items() if k in JUDGE_HEALTH},
        }
        return output.commit(root, summary, started)


def part_of(kept: pa.Table, part: PartConfig) -> pa.Table:
    """The kept solutions of this part's questions (contiguous, in the table's order)."""
    if part.count == 1:
        return kept
    import pyarrow.compute as pc

    questions = list(dict.fromkeys(kept.column("question_id").to_pylist()))
    start, stop = part.bounds(len(questions))
    return kept.filter(pc.is_in(kept.column("question_id"), pa.array(questions[start:stop])))
