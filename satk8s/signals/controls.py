"""Two cheap control signals, scored from what generation already recorded.

- `length`: the solution's content tokens (`satk8s.signals.content`). A quality signal that
  agrees with the judge no better than length does is length in disguise.
- `logprob`: the mean log-probability of the sampled content tokens under the policy, as
  generation recorded it (raw distribution, no temperature). Unlike mean entropy, it sees a
  sampled mistake: a wrong token drawn from a confident distribution keeps entropy low but has
  a low log-probability.

Neither needs the model's weights, only its tokenizer. Solutions with the same tokens get the
same score (logprobs recorded in different batches differ in the last bits; they are averaged).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyarrow as pa

from satk8s.errors import ConfigError, DataError
from satk8s.signals.content import content_lengths, load_tokenizer
from satk8s.signals.schema import ScoreRow, scores_table

LENGTH_DIRECTIONS = ("shorter_is_better", "longer_is_better")
LOGPROB_DIRECTIONS = ("higher_is_better", "lower_is_better")


@dataclass(frozen=True)
class LengthConfig:
    direction: str = "shorter_is_better"
    """"shorter_is_better" (score = -tokens) or "longer_is_better" (score = +tokens); raw_score
    is always the token count. Calibration's agreement flips with it (a - 1 - a), kappa's sign
    too: pick the direction a judge would reward, or read the table either way."""

    def __post_init__(self) -> None:
        if self.direction not in LENGTH_DIRECTIONS:
            raise ConfigError(
                "direction",
                f"must be one of {', '.join(LENGTH_DIRECTIONS)}, got '{self.direction}'",
            )


@dataclass(frozen=True)
class LogprobConfig:
    direction: str = "higher_is_better"
    """"higher_is_better" (score = mean log-probability: the solution the policy found most
    likely is best) or "lower_is_better"; raw_score is always the mean."""

    def __post_init__(self) -> None:
        if self.direction not in LOGPROB_DIRECTIONS:
            raise ConfigError(
                "direction",
                f"must be one of {', '.join(LOGPROB_DIRECTIONS)}, got '{self.direction}'",
            )


def length_scores(
    kept: pa.Table, model_dir: str, config: LengthConfig = LengthConfig()
) -> pa.Table:
    """A SCORES_SCHEMA table (signal "length") with one row per kept solution."""
    if kept.num_rows == 0:
        return scores_table([])
    lengths = content_lengths(kept, load_tokenizer(model_dir))
    sign = -1.0 if config.direction == "shorter_is_better" else 1.0
    rows = [
        ScoreRow(qid, idx, "length", sign * n, float(n), {"n_tokens": n, "n_generated": len(ids)})
        for qid, idx, ids, n in zip(
            kept.column("question_id").to_pylist(),
            kept.column("sample_index").to_pylist(),
            kept.column("token_ids").to_pylist(),
            lengths,
            strict=True,
        )
    ]
    return scores_table(rows)


def logprob_scores(
    kept: pa.Table, model_dir: str, config: LogprobConfig = LogprobConfig()
) -> pa.Table:
    """A SCORES_SCHEMA table (signal "logprob") with one row per kept solution."""
    if kept.num_rows == 0:
        return scores_table([])
    if "token_logprobs" not in kept.column_names:
        raise DataError("kept", "missing column token_logprobs; re-run generate and saturate")
    lengths = content_lengths(kept, load_tokenizer(model_dir))
    keys, stats = [], []
    for qid, idx, prompt, ids, logprobs, n in zip(
        kept.column("question_id").to_pylist(),
        kept.column("sample_index").to_pylist(),
        kept.column("prompt").to_pylist(),
        kept.column("token_ids").to_pylist(),
        kept.column("token_logprobs").to_pylist(),
        lengths,
        strict=True,
    ):
        values = logprobs[:n]
        if len(values) != n or not all(v is not None and math.isfinite(v) for v in values):
            raise DataError(
                "kept", f"question {qid} sample {idx}: token_logprobs missing or not finite"
            )
        keys.append((prompt, tuple(ids[:n])))
        stats.append((qid, idx, math.fsum(values) / n, math.fsum(values), min(values), n))
    # One value per distinct token sequence: the mean over its copies.
    groups: dict[tuple, list[float]] = {}
    for key, (_, _, mean, _, _, _) in zip(keys, stats, strict=True):
        groups.setdefault(key, []).append(mean)
    sign = 1.0 if config.direction == "higher_is_better" else -1.0
    rows = []
    for key, (qid, idx, _, total, low, n) in zip(keys, stats, strict=True):
        mean = math.fsum(groups[key]) / len(groups[key])
        details = {"mean": mean, "sum": total, "min": low, "n_tokens": n}
        rows.append(ScoreRow(qid, idx, "logprob", sign * mean, mean, details))
    return scores_table(rows)
