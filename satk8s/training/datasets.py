"""Training sets from the kept solutions and one signal's scores (step 6: signal x algorithm).

Every set is plain text, tokenizer-free, so one table trains any model (no eos text, no chat
template: `TrainConfig.chat_template` wraps the turns at training time, when the tokenizer is
known):

- `sft`: every kept (correct) solution, weight 1 -- the baseline that ignores the signal.
- `best_of_n`: the top-k solutions of each question by score.
- `weighted_sft`: every solution, weighted by softmax(z / temperature) within its question,
  where z is the solution's score standardised within the question (z-score), scaled so a
  question's weights sum to its solution count (mean 1 within the question). Standardising
  makes the weighting the same for every signal's scale: entropies that span 0.1 nats weight
  as strongly as Bradley-Terry log-strengths that span 3.
- `dpo`: (chosen, rejected) pairs within a question: best vs worst, or every pair whose score
  margin exceeds `dpo_margin`.

SFT-family columns: prompt, completion, question_id, sample_index, weight.
DPO columns: prompt, chosen, rejected, question_id, chosen_index, rejected_index, margin.
Rows come out in a fixed order (question_id, then rank or sample_index; see each builder), and
the table's schema metadata `satk8s.build` records the config, the questions a builder
skipped and the spread of the weights (`weight_spread`), so a run can report them.

Scores within `SCORE_TOLERANCE` of each other are ties (`snap_ties`). Ranking ties are broken
by a shuffle seeded with (seed, question_id): the same seed always picks the same solution, and
a question's pick does not depend on which other questions are in the table.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from satk8s.errors import ConfigError, DataError
from satk8s.signals.gate import JudgeGate
from satk8s.signals.schema import snap_ties

ALGORITHMS = ("sft", "best_of_n", "weighted_sft", "dpo")
WEIGHT_SCORES = ("zscore", "raw")
DPO_PAIRS = ("best_vs_worst", "margin")
METADATA_KEY = b"satk8s.build"

SFT_SCHEMA = pa.schema(
    [
        ("prompt", pa.string()),
        ("completion", pa.string()),
        ("question_id", pa.string()),
        ("sample_index", pa.int32()),
        ("weight", pa.float64()),
    ]
)
DPO_SCHEMA = pa.schema(
    [
        ("prompt", pa.string()),
        ("chosen", pa.string()),
        ("rejected", pa.string()),
        ("question_id", pa.string()),
        ("chosen_index", pa.int32()),
        ("rejected_index", pa.int32()),
        ("margin", pa.float64()),
    ]
)
# What training reads; the other columns are there for provenance.
REQUIRED_COLUMNS = {
    "sft": ("prompt", "completion"),
    "best_of_n": ("prompt", "completion"),
    "weighted_sft": ("prompt", "completion", "weight"),
    "dpo": ("prompt", "chosen", "rejected"),
}


@dataclass(frozen=True)
class BuildConfig:
    """How one training set is built from the kept solutions and a signal's scores."""

    algorithm: str = "sft"
    """One of "sft", "best_of_n", "weighted_sft", "dpo". Every one but "sft" needs scores."""
    k: int = 1
    """best_of_n: solutions kept per question (all of them when a question has fewer)."""
    temperature: float = 1.0
    """weighted_sft: softmax temperature tau over the within-question z-scores; small tau
    approaches best-of-1, large tau plain SFT. At 1, two solutions weigh 1.76 and 0.24."""
    weight_scores: str = "zscore"
    """weighted_sft: "zscore" (standardised within the question, so the signal's scale does not
    matter; a question whose scores all tie gets weight 1 everywhere) or "raw" (the scores as
    they are: softmax(score / temperature))."""
    dpo_pairs: str = "best_vs_worst"
    """dpo: "best_vs_worst" (one pair per question) or "margin" (every pair whose score margin
    exceeds `dpo_margin`)."""
    dpo_margin: float = 0.0
    """dpo with dpo_pairs="margin": keep pairs with score(chosen) - score(rejected) > this (>= 0)."""
    seed: int = 0
    """Seeds the tie-breaking shuffle (per question, with the question id)."""
    append_eos: bool = True
    """Train the model to stop after the solution. The table itself holds no eos text (it knows
    no tokenizer): TRL 1.16's SFT and DPO trainers append the tokenizer's eos token to every
    plain-text completion at tokenization, which is what True means. They offer no way to turn
    this off, so False is rejected rather than silently ignored."""

    judge_gate: JudgeGate = field(default_factory=JudgeGate)
    """When a judged signal may train this cell (label mass, position bias, ...): a set built
    on a judge that fails it is not built, and the cell is reported as gated (the
    `build_dataset` step; `satk8s.signals.gate`)."""

    def __post_init__(self) -> None:
        if isinstance(self.judge_gate, dict):  # a plain dict from JSON or a test
            object.__setattr__(self, "judge_gate", JudgeGate(**self.judge_gate))
        if self.algorithm not in ALGORITHMS:
            raise ConfigError(
                "algorithm", f"must be one of {', '.join(ALGORITHMS)}; got {self.algorithm!r}"
            )
        if self.k < 1:
            raise ConfigError("k", f"must be at least 1, got {self.k}")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ConfigError(
                "temperature", f"must be a positive finite number, got {self.temperature}"
            )
        if self.weight_scores not in WEIGHT_SCORES:
            raise ConfigError(
                "weight_scores",
                f"must be one of {', '.join(WEIGHT_SCORES)}; got {self.weight_scores!r}",
            )
        if self.dpo_pairs not in DPO_PAIRS:
            raise ConfigError(
                "dpo_pairs", f"must be one of {', '.join(DPO_PAIRS)}; got {self.dpo_pairs!r}"
            )
        if not (self.dpo_margin >= 0 and math.isfinite(self.dpo_margin)):
            raise ConfigError("dpo_margin", f"must be a finite number >= 0, got {self.dpo_margin}")
        if not self.append_eos:
            raise ConfigError(
                "append_eos",
                "False is not supported: TRL's SFTTrainer and DPOTrainer always append the "
                "tokenizer's eos token to plain-text completions",
            )


@dataclass(frozen=True)
class _Solution:
    question_id: str
    sample_index: int
    prompt: str
    completion: str
    score: float


def build_training_set(kept: pa.Table, scores: pa.Table | None, config: BuildConfig) -> pa.Table:
    """The training set for `config.algorithm`, deterministic given `config.seed`.

    `kept` is the saturate step's table (rows with `correct == False`, if any, are dropped);
    `scores` is one signal's SCORES_SCHEMA table and must cover every kept row unless the
    algorithm is "sft".
    """
    by_question = _group(kept, scores, config.algorithm)
    skipped: list[str] = []
    if config.algorithm == "sft":
        rows = [_sft_row(s, 1.0) for sols in by_question.values() for s in sols]
    elif config.algorithm == "best_of_n":
        rows = [
            _sft_row(s, 1.0)
            for qid, sols in by_question.items()
            for s in _ranked(sols, qid, config.seed)[: config.k]
        ]
    elif config.algorithm == "weighted_sft":
        rows = [
            _sft_row(s, w)
            for sols in by_question.values()
            for s, w in zip(
                sols,
                softmax_weights(
                    [s.score for s in sols], config.temperature, config.weight_scores == "zscore"
                ),
                strict=True,
            )
        ]
    else:
        rows = []
        for qid, sols in by_question.items():
            pairs = _dpo_pairs(sols, qid, config)
            if not pairs:
                skipped.append(qid)
            rows.extend(_dpo_row(chosen, rejected) for chosen, rejected in pairs)
    schema = DPO_SCHEMA if config.algorithm == "dpo" else SFT_SCHEMA
    metadata = {
        "config": asdict(config),
        "questions": len(by_question),
        "rows": len(rows),
        "skipped_questions": len(skipped),
        "skipped_question_ids": skipped,
        "weights": None
        if config.algorithm == "dpo"
        else weight_spread([r["weight"] for r in rows]),
    }
    schema = schema.with_metadata({METADATA_KEY: json.dumps(metadata, sort_keys=True)})
    return pa.Table.from_pylist(rows, schema=schema)


def build_metadata(table: pa.Table) -> dict[str, Any]:
    """What `build_training_set` recorded about a table (empty for a table it did not build)."""
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else {}


def softmax_weights(
    scores: list[float], temperature: float, standardise: bool = True
) -> list[float]:
    """softmax(z / temperature) scaled to mean 1, so the weights sum to len(scores); z is the
    population z-score of each score within `scores` (or the score itself without
    `standardise`). Tied scores (all within tolerance) give weight 1 everywhere."""
    values = snap_ties(scores)
    if standardise:
        mean = math.fsum(values) / len(values)
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))
        if std == 0.0:
            return [1.0] * len(values)
        values = [(v - mean) / std for v in values]
    top = max(values)
    # Shifting by the max keeps exp() from overflowing; the softmax is unchanged.
    exps = [math.exp((v - top) / temperature) for v in values]
    total = math.fsum(exps)
    return [len(values) * e / total for e in exps]


def weight_spread(weights: list[float]) -> dict[str, float | int] | None:
    """How unequal a training set's weights are: min, max, max/min, Kish's effective sample
    size (sum w)^2 / sum w^2 and its fraction of the rows (1.0: plain SFT). None when empty."""
    if not weights:
        return None
    total, squares = math.fsum(weights), math.fsum(w * w for w in weights)
    low, high = min(weights), max(weights)
    ess = total * total / squares if squares else 0.0
    return {
        "rows": len(weights),
        "min": low,
        "max": high,
        "max_over_min": high / low if low > 0 else math.inf,
        "ess": ess,
        "ess_fraction": ess / len(weights),
    }


def validate_training_set(table: pa.Table, algorithm: str, source: str) -> None:
    """Reject a training set that would waste a training run; raises before any model loads."""
    if algorithm not in ALGORITHMS:
        raise ConfigError("algorithm", f"must be one of {', '.join(ALGORITHMS)}; got {algorithm!r}")
    required = REQUIRED_COLUMNS[algorithm]
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise DataError(
            source,
            f"missing columns {missing} for algorithm {algorithm!r} (needs {list(required)}; "
            f"has {table.column_names}); build it with build_training_set",
        )
    if table.num_rows == 0:
        raise DataError(
            source,
            f"no rows: nothing to train on with {algorithm!r} (no saturated questions kept, "
            "or every question skipped by the builder); check the saturate and build summaries",
        )
    for column in required:
        nulls = table.column(column).null_count
        if nulls and column != "weight":
            first = table.column(column).is_null().to_pylist().index(True)
            raise DataError(source, f"{_row_name(table, first)}: column {column!r} is null")
    if "weight" in table.column_names:
        _check_weights(table, source)
    if algorithm == "dpo":
        same = pc.equal(table.column("chosen"), table.column("rejected")).to_pylist()
        if True in same:
            raise DataError(
                source,
                f"{_row_name(table, same.index(True))}: chosen == rejected, a pair that teaches "
                "nothing; rebuild the pairs (identical texts must not be paired)",
            )


def _check_weights(table: pa.Table, source: str) -> None:
    weights = table.column("weight").to_pylist()
    for i, w in enumerate(weights):
        if w is None or not math.isfinite(w) or w < 0:
            raise DataError(
                source,
                f"{_row_name(table, i)}: weight {w} is not a finite number >= 0 "
                "(check the signal's scores for NaN or inf)",
            )
    if sum(weights) == 0:
        raise DataError(source, "every weight is 0: the loss would be 0 on every step")


def _row_name(table: pa.Table, i: int) -> str:
    """'row i (question_id=..., <index>=...)', naming whatever keys the table has."""
    names = ("question_id", "sample_index", "chosen_index", "rejected_index")
    keys = [c for c in names if c in table.column_names]
    where = ", ".join(f"{c}={table.column(c)[i].as_py()!r}" for c in keys)
    return f"row {i}" + (f" ({where})" if where else "")


# ----------------------------------------------------------------------------- grouping


def _group(kept: pa.Table, scores: pa.Table | None, algorithm: str) -> dict[str, list[_Solution]]:
    """Kept correct solutions per question, questions and solutions in sorted order, with scores."""
    needed = ["question_id", "sample_index", "prompt", "completion"]
    missing = [c for c in needed if c not in kept.column_names]
    if missing:
        raise DataError(
            "kept table", f"missing columns {missing}; expected the saturate step's kept.parquet"
        )
    if "correct" in kept.column_names:
        # Saturate already keeps only correct solutions; a wrong one must never become a target.
        kept = kept.filter(pc.fill_null(kept.column("correct"), False))
    keys = list(
        zip(
            kept.column("question_id").to_pylist(),
            kept.column("sample_index").to_pylist(),
            strict=True,
        )
    )
    seen: set[tuple[str, int]] = set()
    for qid, idx in keys:
        if (qid, idx) in seen:
            raise DataError(
                "kept table", f"duplicate row (question_id={qid!r}, sample_index={idx})"
            )
        seen.add((qid, idx))
    score_of = _score_map(scores, algorithm)
    prompts = kept.column("prompt").to_pylist()
    completions = kept.column("completion").to_pylist()
    grouped: dict[str, list[_Solution]] = {}
    for (qid, idx), prompt, completion in sorted(
        zip(keys, prompts, completions, strict=True), key=lambda r: r[0]
    ):
        if score_of is None:
            score = 0.0
        elif (qid, idx) in score_of:
            score = score_of[(qid, idx)]
        else:
            raise DataError(
                "scores table",
                f"no score for kept row (question_id={qid!r}, sample_index={idx}); "
                "the signal must score every kept solution",
            )
        grouped.setdefault(qid, []).append(_Solution(qid, idx, prompt, completion, score))
    # Ties within tolerance become exact, so every builder ranks, pairs and weighs alike.
    for qid, sols in grouped.items():
        snapped = snap_ties([s.score for s in sols])
        grouped[qid] = [
            _Solution(s.question_id, s.sample_index, s.prompt, s.completion, v)
            for s, v in zip(sols, snapped, strict=True)
        ]
    return grouped


def _score_map(scores: pa.Table | None, algorithm: str) -> dict[tuple[str, int], float] | None:
    if algorithm == "sft":
        return None
    if scores is None:
        raise ConfigError(
            "algorithm", f"{algorithm!r} ranks solutions by a signal; pass a scores table"
        )
    missing = [c for c in ("question_id", "sample_index", "score") if c not in scores.column_names]
    if missing:
        raise DataError("scores table", f"missing columns {missing}; expected SCORES_SCHEMA")
    if "signal" in scores.column_names:
        signals = sorted(set(scores.column("signal").to_pylist()))
        if len(signals) > 1:
            raise DataError(
                "scores table", f"holds several signals {signals}; pass one signal's scores"
            )
    result: dict[tuple[str, int], float] = {}
    for qid, idx, score in zip(
        scores.column("question_id").to_pylist(),
        scores.column("sample_index").to_pylist(),
        scores.column("score").to_pylist(),
        strict=True,
    ):
        if score is None or not math.isfinite(score):
            raise DataError(
                "scores table",
                f"(question_id={qid!r}, sample_index={idx}): score {score} is not finite",
            )
        if (qid, idx) in result:
            raise DataError(
                "scores table", f"duplicate score for (question_id={qid!r}, sample_index={idx})"
            )
        result[(qid, idx)] = float(score)
    return result


def _ranked(solutions: list[_Solution], question_id: str, seed: int) -> list[_Solution]:
    """Best first. Ties keep the order of a shuffle seeded by (seed, question_id)."""
    order = list(solutions)
    random.Random(f"{seed}/{question_id}").shuffle(order)
    return sorted(order, key=lambda s: -s.score)  # sorted() is stable: ties keep the shuffle order


def _dpo_pairs(
    solutions: list[_Solution], question_id: str, config: BuildConfig
) -> list[tuple[_Solution, _Solution]]:
    # A pair needs a strictly better chosen and a different text: an identical text teaches nothing.
    if config.dpo_pairs == "best_vs_worst":
        best, *rest = _ranked(solutions, question_id, config.seed)
        worse = [s for s in rest if s.score < best.score and s.completion != best.completion]
        # Fewer than 2 solutions or all scores equal: no preference to learn, the question is skipped.
        return [(best, worse[-1])] if worse else []
    return [
        (a, b)
        for a in solutions
        for b in solutions
        if a.score - b.score > config.dpo_margin and a.completion != b.completion
    ]


def _sft_row(s: _Solution, weight: float) -> dict[str, Any]:
    return {
        "prompt": s.prompt,
        "completion": s.completion,
        "question_id": s.question_id,
        "sample_index": s.sample_index,
        "weight": weight,
    }


def _dpo_row(chosen: _Solution, rejected: _Solution) -> dict[str, Any]:
    return {
        "prompt": chosen.prompt,
        "chosen": chosen.completion,
        "rejected": rejected.completion,
        "question_id": chosen.question_id,
        "chosen_index": chosen.sample_index,
        "rejected_index": rejected.sample_index,
        "margin": chosen.score - rejected.score,
    }
