"""How well each signal agrees with the external judge (step 5, "calibrate").

Both sides are SCORES_SCHEMA tables (higher = better). For every pair of solutions of the same
question that both tables score, a side prefers the first solution (lower sample_index) when
its score is higher, the second when lower, and ties otherwise. Three measures:

- pairwise_agreement: the fraction of pairs where signal and judge prefer the same solution, over pairs
  where neither ties (ties are excluded from agreement and kappa, and counted).
- cohen_kappa: Cohen's kappa of the two binary preferences over those pairs ("first" vs "second").
  The pair orientation is the sample order, which carries no meaning, so chance agreement sits
  near 0.5 and kappa near 2 * agreement - 1; it is reported because it is the usual measure.
  When both sides make the same single choice on every pair, chance agreement is 1 and kappa is
  0/0; it is reported as 1.0 (perfect agreement, the only way to get there).
- kendall_tau: the mean over questions of Kendall's tau-b between the two rankings of the
  question's solutions. Questions with fewer than 2 solutions or constant scores on either side
  have no tau: they are excluded and counted.

Every measure is {"mean", "lo", "hi"} ("mean" is the point estimate; the shape of
`satk8s.evaluation.Interval`, which the report reads), with a 95% percentile-bootstrap CI that
resamples QUESTIONS (pairs of one question share solutions, so they are not independent). A
measure with nothing to measure is None (null in JSON), never 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from scipy.stats import kendalltau

from satk8s.errors import ConfigError, DataError

CI_LEVEL = 0.95
# The metric names `satk8s.report` reads.
METRICS = ("pairwise_agreement", "cohen_kappa", "kendall_tau")


@dataclass
class _QuestionStats:
    """Per-question counts: the bootstrap resamples these, never single pairs."""

    pairs: list[int] = field(default_factory=list)
    ties_signal: list[int] = field(default_factory=list)
    ties_judge: list[int] = field(default_factory=list)
    # The 2x2 table of preferences over untied pairs: (signal, judge) prefer (first|second).
    ff: list[int] = field(default_factory=list)
    fs: list[int] = field(default_factory=list)
    sf: list[int] = field(default_factory=list)
    ss: list[int] = field(default_factory=list)
    tau: list[float] = field(default_factory=list)  # nan where the question has no tau


def _scores_by_question(table: pa.Table, name: str) -> tuple[dict[str, dict[int, float]], int]:
    """question_id -> {sample_index: score}, and how many rows had no finite score."""
    out: dict[str, dict[int, float]] = {}
    missing = 0
    columns = [table.column(c).to_pylist() for c in ("question_id", "sample_index", "score")]
    for qid, idx, score in zip(*columns, strict=True):
        if score is None or not math.isfinite(score):
            missing += 1
            continue
        solutions = out.setdefault(qid, {})
        if idx in solutions:
            raise DataError(
                f"scores of {name}",
                f"question {qid!r} sample {idx} is scored twice; one row per solution expected",
            )
        solutions[idx] = float(score)
    return out, missing


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def _question_stats(
    signal: dict[str, dict[int, float]], judge: dict[str, dict[int, float]]
) -> tuple[_QuestionStats, dict[str, int]]:
    """Stats of every question with at least 2 solutions scored by both, and the tau exclusions."""
    stats = _QuestionStats()
    excluded = {"fewer_than_2_solutions": 0, "constant_scores": 0}
    for qid in sorted(signal.keys() & judge.keys()):
        common = sorted(signal[qid].keys() & judge[qid].keys())
        if len(common) < 2:
            excluded["fewer_than_2_solutions"] += int(len(common) == 1)
            continue
        x = [signal[qid][k] for k in common]
        y = [judge[qid][k] for k in common]
        n = len(common)
        counts = {"ts": 0, "tj": 0, "ff": 0, "fs": 0, "sf": 0, "ss": 0}
        for a in range(n):
            for b in range(a + 1, n):
                s, t = _sign(x[a] - x[b]), _sign(y[a] - y[b])
                counts["ts"] += s == 0
                counts["tj"] += t == 0
                if s and t:
                    counts[("f" if s > 0 else "s") + ("f" if t > 0 else "s")] += 1
        stats.pairs.append(n * (n - 1) // 2)
        stats.ties_signal.append(counts["ts"])
        stats.ties_judge.append(counts["tj"])
        for key in ("ff", "fs", "sf", "ss"):
            getattr(stats, key).append(counts[key])
        if len(set(x)) < 2 or len(set(y)) < 2:
            excluded["constant_scores"] += 1
            stats.tau.append(math.nan)
        else:
            stats.tau.append(float(kendalltau(x, y).statistic))
    return stats, excluded


def _metrics(weights: np.ndarray, stats: _QuestionStats) -> dict[str, np.ndarray]:
    """Agreement, kappa and mean tau for each row of question weights (nan where undefined).

    Row b of `weights` says how often each question is drawn: all ones gives the point estimate.
    """
    ff, fs, sf, ss = (
        weights @ np.asarray(getattr(stats, k), float) for k in ("ff", "fs", "sf", "ss")
    )
    n = ff + fs + sf + ss
    tau = np.asarray(stats.tau, float)
    has_tau = ~np.isnan(tau)
    with np.errstate(invalid="ignore", divide="ignore"):
        agreement = (ff + ss) / n
        p_signal_first = (ff + fs) / n
        p_judge_first = (ff + sf) / n
        chance = p_signal_first * p_judge_first + (1 - p_signal_first) * (1 - p_judge_first)
        kappa = np.where(chance >= 1.0, 1.0, (agreement - chance) / (1.0 - chance))
        kappa = np.where(n > 0, kappa, np.nan)
        mean_tau = (weights @ np.where(has_tau, tau, 0.0)) / (weights @ has_tau.astype(float))
    return {"pairwise_agreement": agreement, "cohen_kappa": kappa, "kendall_tau": mean_tau}


def _interval(point: float, replicates: np.ndarray | None) -> dict[str, float | None] | None:
    """{"mean", "lo", "hi"} (the shape of `satk8s.evaluation.Interval`), or None if undefined."""
    if not math.isfinite(point):
        return None
    finite = replicates[np.isfinite(replicates)] if replicates is not None else np.array([])
    if finite.size == 0:
        # Only with a handful of resamples, all drawn from questions with nothing to compare.
        return {"mean": float(point), "lo": None, "hi": None}
    tail = 100 * (1 - CI_LEVEL) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return {"mean": float(point), "lo": float(low), "hi": float(high)}


def _compare(
    signal: dict[str, dict[int, float]],
    judge: dict[str, dict[int, float]],
    seed: int,
    n_boot: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the metrics with their intervals and n_pairs, the counts behind them)."""
    stats, excluded = _question_stats(signal, judge)
    n_questions = len(stats.pairs)
    counts: dict[str, Any] = {
        "n_questions": n_questions,
        "n_pairs": int(sum(stats.pairs)),
        "n_compared": int(sum(stats.ff) + sum(stats.fs) + sum(stats.sf) + sum(stats.ss)),
        "n_ties_signal": int(sum(stats.ties_signal)),
        "n_ties_judge": int(sum(stats.ties_judge)),
        "n_tau_questions": int(sum(not math.isnan(t) for t in stats.tau)),
        "tau_excluded": excluded,
    }
    if n_questions == 0:
        point = dict.fromkeys(METRICS, math.nan)
        replicates = None
    else:
        point = {k: float(v[0]) for k, v in _metrics(np.ones((1, n_questions)), stats).items()}
        # The same seed for every signal: signals that cover the same questions are resampled
        # over the same question draws.
        rng = np.random.default_rng(seed)
        draws = rng.multinomial(n_questions, np.full(n_questions, 1.0 / n_questions), size=n_boot)
        replicates = _metrics(draws.astype(float), stats)
    metrics: dict[str, Any] = {
        key: _interval(point[key], None if replicates is None else replicates[key])
        for key in METRICS
    }
    metrics["n_pairs"] = counts["n_pairs"]
    return metrics, counts


def _plain(value: Any) -> Any:
    """A JSON-safe copy: numpy scalars to Python, nan/inf to None."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def calibrate(
    signals: Mapping[str, pa.Table],
    judge: pa.Table,
    self_judge_diagnostics: Mapping[str, Any] | None = None,
    seed: int = 0,
    n_boot: int = 1000,
) -> dict[str, Any]:
    """Agreement of each signal's scores with the judge's, as a JSON-serialisable summary::

        {"reference": "external_judge",          # the judge table's signal name
         "signals": {"entropy": {"pairwise_agreement": {"mean": .., "lo": .., "hi": ..},
                                 "cohen_kappa": {...}, "kendall_tau": {...},
                                 "n_pairs": 240}, ...},
         "counts": {"entropy": {"n_questions", "n_pairs", "n_compared", "n_ties_signal",
                                "n_ties_judge", "n_tau_questions", "tau_excluded",
                                "missing_scores"}, ...},
         "self_judge": {"position_bias": .., "order_consistency": .., ...} or None,
         "judge_missing_scores", "seed", "n_boot", "ci_level"}

    A metric with nothing to measure (no overlapping pair, every pair tied, no question with a
    tau) is None. `signals` maps a signal name to its SCORES_SCHEMA table; `judge` is the
    external judge's. `self_judge_diagnostics` (`pairwise.pair_diagnostics` of the self-judge)
    is passed through, so the report shows the self-judge's position bias and order
    consistency next to its agreement.
    """
    if n_boot < 1:
        raise ConfigError("n_boot", f"must be at least 1, got {n_boot}")
    judge_names = sorted(set(judge.column("signal").to_pylist()))
    judge_scores, judge_missing = _scores_by_question(judge, "the judge")
    summary: dict[str, Any] = {
        "reference": ",".join(judge_names) if judge_names else None,
        "signals": {},
        "counts": {},
        "self_judge": dict(self_judge_diagnostics) if self_judge_diagnostics else None,
        "judge_missing_scores": judge_missing,
        "seed": seed,
        "n_boot": n_boot,
        "ci_level": CI_LEVEL,
    }
    for name, table in signals.items():
        scores, missing = _scores_by_question(table, name)
        metrics, counts = _compare(scores, judge_scores, seed, n_boot)
        counts["missing_scores"] = missing
        summary["signals"][name] = metrics
        summary["counts"][name] = counts
    return _plain(summary)


def why_unmeasured(metric: str, counts: Mapping[str, Any]) -> str:
    """Why `metric` has no value, from the counts behind it (shown next to every n/a)."""
    pairs, compared = counts.get("n_pairs", 0), counts.get("n_compared", 0)
    if not counts.get("n_questions"):
        return "no question has two solutions scored by both the signal and the judge"
    if metric == "kendall_tau" and not counts.get("n_tau_questions"):
        return "no question has distinct scores on both sides"
    if compared == 0 and counts.get("n_ties_judge") == pairs:
        return f"the judge ties all {pairs} pairs; are its verdicts usable?"
    if compared == 0 and counts.get("n_ties_signal") == pairs:
        return f"the signal ties all {pairs} pairs"
    if compared == 0:
        return f"every one of the {pairs} pairs is tied by the signal or the judge"
    return "nothing to measure"


def _cell(interval: Mapping[str, float | None] | None, why: str = "nothing to measure") -> str:
    if interval is None:
        return f"n/a ({why})"
    if interval["lo"] is None or interval["hi"] is None:
        return f"{interval['mean']:.3f}"
    return f"{interval['mean']:.3f} [{interval['lo']:.3f}, {interval['hi']:.3f}]"


def calibration_markdown(summary: Mapping[str, Any]) -> str:
    """The summary of `calibrate` as a Markdown table, one row per signal."""
    level = round(100 * summary.get("ci_level", CI_LEVEL))
    lines = [
        f"Agreement with the external judge ({summary.get('reference') or 'no scores'}); "
        f"{level}% bootstrap CIs over questions ({summary.get('n_boot')} resamples).",
        "",
        f"| signal | pairs | agreement [{level}% CI] | kappa [{level}% CI] "
        f"| Kendall tau [{level}% CI] |",
        "|---|---:|---|---|---|",
    ]
    for name, metrics in summary["signals"].items():
        counts = summary.get("counts", {}).get(name, {})
        tied = metrics["n_pairs"] - counts.get("n_compared", metrics["n_pairs"])
        pairs = f"{metrics['n_pairs']} ({tied} tied)" if tied else str(metrics["n_pairs"])
        cells = [_cell(metrics[m], why_unmeasured(m, counts)) for m in METRICS]
        lines.append(f"| {name} | {pairs} | " + " | ".join(cells) + " |")
    self_judge = summary.get("self_judge")
    if self_judge:
        bias, consistency = self_judge.get("position_bias"), self_judge.get("order_consistency")
        lines += [
            "",
            "Self-judge: position bias "
            + ("n/a (no valid verdict)" if bias is None else f"{bias:.3f}")
            + " (share of verdicts won by the solution shown first; 0.5 = none), order "
            "consistency "
            + (
                "n/a (no pair judged validly in both orders)"
                if consistency is None
                else f"{consistency:.3f}"
            )
            + ".",
        ]
    return "\n".join(lines) + "\n"
