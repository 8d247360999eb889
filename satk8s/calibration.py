"""How well each signal agrees with the external judge (step 5, "calibrate").

The judge's side is its own verdicts: the pairs it judged (`pairs.parquet` of a judge step,
PAIRS_SCHEMA), each pair's p_ij deciding "i better" (p_ij > 0.5), "j better" (< 0.5) or a tie
(0.5, within `P_TIE_TOLERANCE`; pairs of identical texts are ties by definition). Invalid
verdicts are left out and counted. Without a pairs table the judge's scores decide every pair
of its scored solutions (basis "scores"). The signal's side is its scores (SCORES_SCHEMA,
higher = better), two scores within `SCORE_TOLERANCE` being a tie. Every signal is compared on
the same judged pairs, so the judge's tie count is the same in every signal's row.

- pairwise_agreement: the fraction of pairs where signal and judge prefer the same solution,
  over pairs where neither ties (ties are excluded from agreement and kappa, and counted).
- cohen_kappa: Cohen's kappa of the two binary preferences over those pairs ("first" = the
  lower sample_index vs "second"). The orientation carries no meaning, so chance agreement
  sits near 0.5 and kappa near 2 * agreement - 1; it is reported because it is the usual
  measure. When both sides make the same single choice on every pair, chance agreement is 1
  and kappa is 0/0; it is reported as 1.0 (perfect agreement, the only way to get there).
- kendall_tau: the mean over questions of Kendall's tau-b between the signal's ranking and the
  judge's ranking of the question's solutions (its Bradley-Terry scores, ties snapped). With a
  pair budget the judge's ranking is imputed for pairs it never saw, so even the judge's own
  verdicts would not reach tau 1; the summary's `tau_caveat` says so, with the coverage.
  Questions with fewer than 2 solutions or constant scores on either side have no tau.

Every measure is {"mean", "lo", "hi"} ("mean" is the point estimate; the shape of
`satk8s.evaluation.Interval`, which the report reads), with a 95% percentile-bootstrap CI that
resamples QUESTIONS (pairs of one question share solutions, so they are not independent). A
measure with nothing to measure is None (null in JSON), never 0.

Judge health (label mass, invalid share, position bias and order consistency on distinct
pairs; `satk8s.signals.pairwise.pair_diagnostics`) is carried beside each judged signal, and
the controls (`CONTROLS`) always get a row, "not scored" when missing.
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
from satk8s.signals.pairwise import IDENTICAL, P_TIE_TOLERANCE
from satk8s.signals.schema import snap_ties

CI_LEVEL = 0.95
# The metric names `satk8s.report` reads.
METRICS = ("pairwise_agreement", "cohen_kappa", "kendall_tau")
CONTROLS = ("random", "length", "logprob")
"""Signals that carry no quality information by design (random) or only a trivial one
(length, sampling confidence): a quality signal is worth something where it beats them."""
HEALTH = {
    "label_mass": "mean_label_mass",
    "invalid_share": "invalid_share",
    "position_bias": "position_bias",
    "order_consistency": "order_consistency",
    "distinct_pairs": "distinct_pairs",
    "identical_pairs": "identical_pairs",
}
"""Calibration row key -> `pair_diagnostics` key of a judged signal's health."""
TAU_CAVEAT = (
    "Kendall tau compares rankings: the judge's ranking is its Bradley-Terry fit, imputed for "
    "the pairs it never judged, so under a pair budget even the judge's own verdicts would not "
    "reach 1. Agreement and kappa use only the judged pairs."
)

Verdicts = dict[str, list[tuple[int, int, int]]]
"""question_id -> [(i, j, side)], side +1 (i better), -1 (j better), 0 (tie)."""


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


def _snapped(scores: dict[str, dict[int, float]]) -> dict[str, dict[int, float]]:
    """Each question's scores with ties (within tolerance) made exact."""
    out = {}
    for qid, by_index in scores.items():
        keys = sorted(by_index)
        out[qid] = dict(zip(keys, snap_ties([by_index[k] for k in keys]), strict=True))
    return out


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def _verdicts_from_pairs(pairs: pa.Table) -> tuple[Verdicts, dict[str, Any]]:
    """The judge's verdicts from its pairs table, and what it judged (counts)."""
    verdicts: Verdicts = {}
    counts = {"basis": "verdicts", "pairs": 0, "identical_pairs": 0, "invalid_pairs": 0}
    columns = [pairs.column(c).to_pylist() for c in ("question_id", "i", "j", "p_ij", "method")]
    for qid, i, j, p, method in zip(*columns, strict=True):
        counts["pairs"] += 1
        counts["identical_pairs"] += method == IDENTICAL
        if p is None or not math.isfinite(p):
            counts["invalid_pairs"] += 1
            continue
        side = 0 if abs(p - 0.5) <= P_TIE_TOLERANCE else (1 if p > 0.5 else -1)
        a, b = (i, j) if i < j else (j, i)
        verdicts.setdefault(qid, []).append((a, b, side if i < j else -side))
    return verdicts, counts


def _verdicts_from_scores(judge: dict[str, dict[int, float]]) -> tuple[Verdicts, dict[str, Any]]:
    """Every pair of the judge's scored solutions, decided by its (tie-snapped) scores."""
    verdicts: Verdicts = {}
    for qid, by_index in _snapped(judge).items():
        keys = sorted(by_index)
        verdicts[qid] = [
            (a, b, _sign(by_index[a] - by_index[b]))
            for n, a in enumerate(keys)
            for b in keys[n + 1 :]
        ]
    pairs = sum(len(v) for v in verdicts.values())
    return verdicts, {"basis": "scores", "pairs": pairs, "identical_pairs": 0, "invalid_pairs": 0}


def _question_stats(
    signal: dict[str, dict[int, float]],
    judge: dict[str, dict[int, float]],
    verdicts: Verdicts,
) -> tuple[_QuestionStats, dict[str, int]]:
    """Stats of every question with at least 2 solutions scored by both, and the tau exclusions."""
    stats = _QuestionStats()
    excluded = {"fewer_than_2_solutions": 0, "constant_scores": 0}
    signal, judge = _snapped(signal), _snapped(judge)
    for qid in sorted(signal.keys() & (judge.keys() | verdicts.keys())):
        common = sorted(signal[qid].keys() & judge.get(qid, {}).keys())
        counts = {"pairs": 0, "ts": 0, "tj": 0, "ff": 0, "fs": 0, "sf": 0, "ss": 0}
        for i, j, t in verdicts.get(qid, []):
            if i not in signal[qid] or j not in signal[qid]:
                continue
            s = _sign(signal[qid][i] - signal[qid][j])
            counts["pairs"] += 1
            counts["ts"] += s == 0
            counts["tj"] += t == 0
            if s and t:
                counts[("f" if s > 0 else "s") + ("f" if t > 0 else "s")] += 1
        if counts["pairs"] == 0 and len(common) < 2:
            excluded["fewer_than_2_solutions"] += int(len(common) == 1)
            continue
        stats.pairs.append(counts["pairs"])
        stats.ties_signal.append(counts["ts"])
        stats.ties_judge.append(counts["tj"])
        for key in ("ff", "fs", "sf", "ss"):
            getattr(stats, key).append(counts[key])
        x = [signal[qid][k] for k in common]
        y = [judge[qid][k] for k in common]
        if len(common) < 2:
            excluded["fewer_than_2_solutions"] += 1
            stats.tau.append(math.nan)
        elif len(set(x)) < 2 or len(set(y)) < 2:
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
    verdicts: Verdicts,
    seed: int,
    n_boot: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the metrics with their intervals and pair counts, the counts behind them)."""
    stats, excluded = _question_stats(signal, judge, verdicts)
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
    metrics["n_judge_ties"] = counts["n_ties_judge"]
    metrics["n_signal_ties"] = counts["n_ties_signal"]
    metrics["n_compared"] = counts["n_compared"]
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
    judge_pairs: pa.Table | None = None,
    health: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int = 0,
    n_boot: int = 1000,
) -> dict[str, Any]:
    """Agreement of each signal's scores with the judge's, as a JSON-serialisable summary::

        {"reference": "external_judge",          # the judge table's signal name
         "judge": {"basis": "verdicts", "pairs", "identical_pairs", "invalid_pairs",
                   "possible_pairs", "coverage"},
         "signals": {"entropy": {"pairwise_agreement": {"mean": .., "lo": .., "hi": ..},
                                 "cohen_kappa": {...}, "kendall_tau": {...},
                                 "n_pairs", "n_judge_ties", "n_signal_ties", "n_compared",
                                 "label_mass", "invalid_share", "position_bias",
                                 "order_consistency", "distinct_pairs", "identical_pairs",
                                 "control": false}, ...},
         "counts": {"entropy": {"n_questions", "n_pairs", "n_compared", "n_ties_signal",
                                "n_ties_judge", "n_tau_questions", "tau_excluded",
                                "missing_scores"}, ...},
         "controls": [...], "tau_caveat": "...", "judge_missing_scores", "seed", "n_boot",
         "ci_level"}

    `signals` maps a signal name to its SCORES_SCHEMA table; `judge` is the external judge's
    scores and `judge_pairs` its PAIRS_SCHEMA verdicts (None: decide pairs by its scores).
    `health` maps a judged signal's name to its `pair_diagnostics`; its numbers go into that
    signal's row (None for signals without). A metric with nothing to measure is None.
    """
    if n_boot < 1:
        raise ConfigError("n_boot", f"must be at least 1, got {n_boot}")
    judge_names = sorted(set(judge.column("signal").to_pylist()))
    judge_scores, judge_missing = _scores_by_question(judge, "the judge")
    if judge_pairs is None:
        verdicts, judged = _verdicts_from_scores(judge_scores)
    else:
        verdicts, judged = _verdicts_from_pairs(judge_pairs)
    possible = sum(len(s) * (len(s) - 1) // 2 for s in judge_scores.values())
    judged["possible_pairs"] = possible
    judged["coverage"] = judged["pairs"] / possible if possible else None
    summary: dict[str, Any] = {
        "reference": ",".join(judge_names) if judge_names else None,
        "judge": judged,
        "signals": {},
        "counts": {},
        "controls": list(CONTROLS),
        "tau_caveat": TAU_CAVEAT,
        "judge_missing_scores": judge_missing,
        "seed": seed,
        "n_boot": n_boot,
        "ci_level": CI_LEVEL,
    }
    for name, table in signals.items():
        scores, missing = _scores_by_question(table, name)
        metrics, counts = _compare(scores, judge_scores, verdicts, seed, n_boot)
        counts["missing_scores"] = missing
        diagnostics = (health or {}).get(name) or {}
        metrics.update({key: diagnostics.get(source) for key, source in HEALTH.items()})
        metrics["control"] = name in CONTROLS
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


def _number(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" if abs(value) >= 0.01 or value == 0 else f"{value:.5f}"


def calibration_markdown(summary: Mapping[str, Any]) -> str:
    """The summary of `calibrate` as a Markdown table, one row per signal, controls last."""
    level = round(100 * summary.get("ci_level", CI_LEVEL))
    judge = summary.get("judge") or {}
    basis = (
        f"{judge.get('pairs', 0)} judged pairs ({judge.get('identical_pairs', 0)} of identical "
        f"texts, ties by definition; {judge.get('invalid_pairs', 0)} invalid, left out)"
        if judge.get("basis") == "verdicts"
        else "the judge's scores on every pair"
    )
    lines = [
        f"Agreement with the external judge ({summary.get('reference') or 'no scores'}) on "
        f"{basis}; {level}% bootstrap CIs over questions ({summary.get('n_boot')} resamples).",
        "",
        f"| signal | pairs | judge ties | signal ties | agreement [{level}% CI] "
        f"| kappa [{level}% CI] | Kendall tau* [{level}% CI] | label mass | position bias "
        "| consistency |",
        "|---|---:|---:|---:|---|---|---|---:|---:|---:|",
    ]
    rows = summary["signals"]
    controls = list(summary.get("controls", CONTROLS))
    ordered = [n for n in rows if n not in controls] + [n for n in controls if n in rows]
    for name in ordered:
        m = rows[name]
        counts = summary.get("counts", {}).get(name, {})
        label = f"{name} (control)" if name in controls else name
        agreement, kappa, tau = (_cell(m[k], why_unmeasured(k, counts)) for k in METRICS)
        lines.append(
            f"| {label} | {m['n_pairs']} | {m.get('n_judge_ties', '—')} "
            f"| {m.get('n_signal_ties', '—')} | {agreement} | {kappa} | {tau} "
            f"| {_number(m.get('label_mass'))} | {_number(m.get('position_bias'))} "
            f"| {_number(m.get('order_consistency'))} |"
        )
    for name in controls:
        if name not in rows:
            lines.append(f"| {name} (control) | not scored | | | | | | | | |")
    coverage = judge.get("coverage")
    lines += [
        "",
        "Agreement and kappa: judged pairs where neither side ties. Ties: the judge's verdict "
        "at 0.5 (the same pairs for every signal), the signal's scores within tolerance.",
        "*"
        + str(summary.get("tau_caveat", TAU_CAVEAT))
        + (f" The judge saw {coverage:.0%} of all pairs." if coverage is not None else ""),
        "Judge health (judged signals, on distinct pairs): label mass = mean probability on the "
        "two verdict labels; position bias = share of verdicts won by the solution shown first "
        "(0.5 = none); consistency = share of pairs whose two orders pick the same winner.",
    ]
    return "\n".join(lines) + "\n"
