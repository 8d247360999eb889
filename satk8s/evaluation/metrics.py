"""The statistics behind every reported number: bootstrap CIs, paired differences, pass@k, maj@k.

Questions are the unit of resampling everywhere: an eval set is a sample of questions from a
population, and the CI says how much the number would move on another draw of them.
"""

from __future__ import annotations

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
    """mean(a - b) over the same questions, its percentile-bootstrap interval, and
    `p_le_zero`: the fraction of resampled differences <= 0 (see `paired_bootstrap_diff`)."""

    diff: float
    lo: float
    hi: float
    p_le_zero: float


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
    lo, hi = _percentiles(means, alpha)
    return PairedDiff(float(diffs.mean()), lo, hi, float(np.mean(means <= 0.0)))


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
    answer that appears first among the k samples: deterministic, and independent of string
    order. The winner comes back as the text of its first appearance.
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


def maj_at_k(answers: Sequence[str | None], gold: str, k: int) -> bool:
    """Whether the majority vote over the first k extracted answers (`majority_answer`) is right."""
    return answers_match(majority_answer(answers, k), gold)


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
