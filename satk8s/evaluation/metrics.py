"""The statistics behind every reported number: bootstrap CIs, paired differences, pass@k, maj@k,
and the multiplicity adjustment of a report's comparisons.

Questions are the unit of resampling everywhere: an eval set is a sample of questions from a
population, and the CI says how much the number would move on another draw of them. With
several training seeds, seeds are resampled too (`hierarchical_bootstrap_diff`): a seed is a
draw from the population of training runs.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import NamedTuple

import numpy as np

from satk8s.errors import DataError
from satk8s.tasks.answers import answers_match, canonical_number

# Resampled values held in memory at once (n_boot x questions); larger jobs go in chunks.
_CHUNK_ELEMENTS = 4_000_000


class Interval(NamedTuple):
    """A point estimate and its (1 - alpha) percentile-bootstrap interval."""

    mean: float
    lo: float
    hi: float


class PairedDiff(NamedTuple):
    """mean(a - b) over the same questions, its percentile-bootstrap interval, `p_le_zero`:
    the fraction of resampled differences <= 0, and `p_two_sided` (see `paired_bootstrap_diff`)."""

    diff: float
    lo: float
    hi: float
    p_le_zero: float
    p_two_sided: float


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> Interval:
    """The mean of per-question `values` with a percentile bootstrap CI over questions.

    `values` are per-question scores (1.0/0.0 for correct/wrong, or pass@k values). The
    resamples are drawn from `numpy.random.default_rng(seed)`, so the same inputs always give
    the same interval. With identical values the interval collapses onto the mean.
    """
    x = _as_values(values, "values")
    _check_bootstrap(n_boot, alpha)
    means = _resampled_means(x, n_boot, np.random.default_rng(seed))
    lo, hi = _percentiles(means, alpha)
    return Interval(float(x.mean()), lo, hi)


def paired_bootstrap_diff(
    a: Mapping[str, float],
    b: Mapping[str, float],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    what: str = "paired comparison",
) -> PairedDiff:
    """mean(a - b) over the same questions, with a paired percentile bootstrap CI.

    `a` and `b` map question id -> per-question score; they must hold the same ids (a paired
    comparison on different questions would mix model and question differences), otherwise a
    DataError names `what` and the ids that differ. Each resample draws questions with
    replacement and takes the mean of a - b on them, so question difficulty cancels.

    `p_le_zero` is the fraction of resampled mean differences that are <= 0: a one-sided
    bootstrap p-value-like number for "a is not better than b". Near 0 means a is reliably
    better; near 1 means b is reliably better (or, for identical runs, that they never differ:
    every resample gives exactly 0, so p_le_zero = 1.0). It is not a calibrated test.

    `p_two_sided` is min(1, 2 min(P(d <= 0), P(d >= 0))) over the resamples: the bootstrap
    p-value of "no difference", below alpha exactly when the (1 - alpha) percentile interval
    excludes 0 (up to the resamples' resolution, 1 / n_boot). `holm_adjust` takes these.
    """
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    if only_a or only_b:
        raise DataError(
            what,
            f"the two runs cover different questions ({len(only_a)} only in the first, e.g. "
            f"{only_a[:3]}; {len(only_b)} only in the second, e.g. {only_b[:3]}); evaluate both "
            "on the same eval set and limit",
        )
    ids = sorted(a)
    diffs = _as_values([a[q] - b[q] for q in ids], what)
    _check_bootstrap(n_boot, alpha)
    means = _resampled_means(diffs, n_boot, np.random.default_rng(seed))
    return _paired(float(diffs.mean()), means, alpha)


def hierarchical_bootstrap_diff(
    a: Mapping[int, Mapping[str, float]],
    b: Mapping[int, Mapping[str, float]],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    what: str = "paired comparison over seeds",
) -> PairedDiff:
    """mean over seeds and questions of a[s][q] - b[s][q], with a bootstrap over seeds x
    questions: each resample draws seeds with replacement and, independently, questions with
    replacement (the same questions for every seed: the eval set is shared), and averages the
    differences on that grid. Both sources of variation (which training run, which questions)
    are in the interval; with one seed it is the question bootstrap.

    `a` and `b` map training seed -> question id -> per-question score (for a comparison with
    the base model, `b` repeats the base run under every seed).
    """
    seeds = sorted(a)
    if sorted(b) != seeds or not seeds:
        raise DataError(what, f"seeds differ: {seeds} vs {sorted(b)}")
    ids = sorted(a[seeds[0]])
    for s in seeds:
        if sorted(a[s]) != ids or sorted(b[s]) != ids:
            raise DataError(what, f"seed {s} covers other questions than seed {seeds[0]}")
    diffs = np.array([[a[s][q] - b[s][q] for q in ids] for s in seeds], dtype=np.float64)
    _as_values(diffs.ravel(), what)
    _check_bootstrap(n_boot, alpha)
    rng = np.random.default_rng(seed)
    n_seeds, n_questions = diffs.shape
    means = np.empty(n_boot)
    for start in range(0, n_boot, 256):
        rows = min(256, n_boot - start)
        pick_s = rng.integers(0, n_seeds, size=(rows, n_seeds))
        pick_q = rng.integers(0, n_questions, size=(rows, n_questions))
        # Mean over the drawn seeds of each drawn seed's mean over the drawn questions.
        per_question = diffs[:, pick_q]  # [seeds, rows, questions]
        per_seed = per_question.mean(axis=2).T  # [rows, seeds]
        means[start : start + rows] = np.take_along_axis(per_seed, pick_s, axis=1).mean(axis=1)
    return _paired(float(diffs.mean()), means, alpha)


def holm_adjust(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of a family of p-values (None entries are skipped).

    Written here rather than imported: statsmodels, which has it, is not a dependency. Sorted
    ascending, the i-th (from 0) of m is multiplied by m - i; the adjusted values are made
    non-decreasing along that order and capped at 1. Rejecting where the adjusted p < alpha
    keeps the family-wise error rate at alpha.
    """
    present = [(p, k) for k, p in enumerate(p_values) if p is not None]
    m = len(present)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, k) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[k] = running
    return adjusted


def _paired(diff: float, means: np.ndarray, alpha: float) -> PairedDiff:
    lo, hi = _percentiles(means, alpha)
    below, above = float(np.mean(means <= 0.0)), float(np.mean(means >= 0.0))
    return PairedDiff(diff, lo, hi, below, min(1.0, 2 * min(below, above)))


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimator of Chen et al. (2021): 1 - C(n - c, k) / C(n, k).

    The probability that at least one of k samples drawn without replacement from n samples,
    c of them correct, is correct. Computed with exact integers, so pass_at_k(5, 2, 1) is
    exactly 0.4 (the paper's product form accumulates float error).
    """
    if n < 1 or not 0 <= c <= n:
        raise ValueError(f"pass@k needs n >= 1 and 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass@k needs 1 <= k <= n (samples per question), got k={k}, n={n}")
    return float(1 - Fraction(math.comb(n - c, k), math.comb(n, k)))


def majority_answer(answers: Sequence[str | None], k: int) -> str | None:
    """The most frequent answer among the first k, or None when none of them has one.

    Samples with no extracted answer (None) do not vote. Numbers vote by value ("18.00" and
    "18" are one answer, `canonical_number`); anything else by its exact text. Ties go to the
    answer that appears first among the k samples. The winner comes back as the text of its
    first appearance. (`maj_at_k` scores a vote over any subset, ties split evenly.)
    """
    if not 1 <= k <= len(answers):
        raise ValueError(f"maj@k needs 1 <= k <= {len(answers)} (samples given), got k={k}")
    votes: Counter[str] = Counter()
    first_text: dict[str, str] = {}
    for answer in answers[:k]:
        if answer is None:
            continue
        key = canonical_number(answer) or answer
        votes[key] += 1
        first_text.setdefault(key, answer)
    if not votes:
        return None
    top = max(votes.values())
    # Counter keeps first-insertion order, so the first key with the top count is the earliest.
    return first_text[next(key for key, count in votes.items() if count == top)]


def maj_at_k(
    answers: Sequence[str | None], gold: str, k: int, seed: int = 0, max_subsets: int = 200
) -> float:
    """maj@k as an estimate over all n samples: the mean, over size-k subsets of the n, of
    whether the subset's majority answer is right (like pass@k, which uses all n too).

    Every subset when there are at most `max_subsets` of them (exact); otherwise
    `max_subsets` subsets drawn with `numpy.random.default_rng(seed)` (pass a per-question
    seed). Missing answers do not vote; numbers vote by value; a tie between answers counts
    the share of the tied answers that are right (a fair tie-break, in expectation).
    """
    n = len(answers)
    if not 1 <= k <= n:
        raise ValueError(f"maj@k needs 1 <= k <= {n} (samples given), got k={k}")
    keys = [None if a is None else canonical_number(a) or a for a in answers]
    right = {key: answers_match(a, gold) for key, a in zip(keys, answers, strict=True) if key}
    if math.comb(n, k) <= max_subsets:
        subsets: Sequence[Sequence[int]] = list(itertools.combinations(range(n), k))
    else:
        rng = np.random.default_rng(seed)
        subsets = [rng.choice(n, size=k, replace=False) for _ in range(max_subsets)]
    total = 0.0
    for subset in subsets:
        votes = Counter(keys[i] for i in subset if keys[i] is not None)
        if votes:
            top = max(votes.values())
            winners = [key for key, count in votes.items() if count == top]
            total += sum(right[key] for key in winners) / len(winners)
    return total / len(subsets)


def _as_values(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise DataError(what, f"need a non-empty list of per-question values, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise DataError(what, "per-question values contain NaN or infinity")
    return x


def _check_bootstrap(n_boot: int, alpha: float) -> None:
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def _resampled_means(x: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Means of n_boot resamples (with replacement) of x, drawn chunk by chunk."""
    rows_per_chunk = max(1, _CHUNK_ELEMENTS // x.size)
    means = []
    for start in range(0, n_boot, rows_per_chunk):
        rows = min(rows_per_chunk, n_boot - start)
        means.append(x[rng.integers(0, x.size, size=(rows, x.size))].mean(axis=1))
    return np.concatenate(means)


def _percentiles(means: np.ndarray, alpha: float) -> tuple[float, float]:
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)
