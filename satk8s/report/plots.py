"""The report's figures, as PNG files: accuracy with CIs, signal calibration, saturation.

Figures are drawn on `matplotlib.figure.Figure` with the Agg canvas directly, not through
pyplot: no global backend switch, no window, no state shared with other code in the process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

_DPI = 110


def accuracy_plot(
    labels: Sequence[str],
    eval_sets: Sequence[str],
    intervals: Mapping[str, Sequence[tuple[float, float, float]]],
    path: Path,
) -> Path:
    """Horizontal bars, one panel per eval set: accuracy (%) of every row with its 95% CI.

    `intervals[eval_set][i]` is (mean, lo, hi) as fractions for `labels[i]`.
    """
    height = max(2.5, 0.35 * len(labels) + 1.2)
    fig = Figure(figsize=(4.2 * len(eval_sets) + 1.8, height), dpi=_DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(eval_sets), sharey=True, squeeze=False)[0]
    y = np.arange(len(labels))
    for ax, name in zip(axes, eval_sets, strict=True):
        mean, lo, hi = (100 * np.array(v, dtype=float) for v in zip(*intervals[name], strict=True))
        ax.barh(y, mean, xerr=[mean - lo, hi - mean], color="#4C72B0", ecolor="black", capsize=3)
        ax.set_title(name)
        ax.set_xlabel("accuracy (%)")
        ax.set_xlim(0, 100)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, labels)
    axes[0].invert_yaxis()  # first row (the base model) on top, as in the table
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def calibration_plot(
    signals: Sequence[str],
    metrics: Sequence[str],
    intervals: Mapping[str, Mapping[str, tuple[float, float, float]]],
    reference: str,
    path: Path,
) -> Path:
    """Grouped bars: each signal's agreement with `reference` per metric, with its CI.

    `intervals[signal][metric]` is (value, lo, hi); a missing metric leaves a gap.
    """
    fig = Figure(
        figsize=(max(4.5, 1.3 * len(signals) * max(len(metrics), 1) / 2 + 2), 3.6), dpi=_DPI
    )
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    x = np.arange(len(signals))
    width = 0.8 / max(len(metrics), 1)
    for j, metric in enumerate(metrics):
        values = [intervals[s].get(metric, (np.nan, np.nan, np.nan)) for s in signals]
        mean, lo, hi = (np.array(v, dtype=float) for v in zip(*values, strict=True))
        ax.bar(
            x + (j - (len(metrics) - 1) / 2) * width,
            mean,
            width,
            yerr=[mean - lo, hi - mean],
            capsize=3,
            label=metric,
        )
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, signals)
    ax.set_ylabel(f"agreement with {reference}")
    ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def saturation_plot(histogram: Mapping[str, int], threshold: float | None, path: Path) -> Path:
    """Bars: how many training questions reached each empirical accuracy (k/n samples)."""
    accuracies = [float(a) for a in histogram]
    counts = list(histogram.values())
    fig = Figure(figsize=(5.5, 3.4), dpi=_DPI)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    steps = np.diff(sorted(accuracies))
    width = 0.8 * (steps[steps > 0].min() if (steps > 0).any() else 0.1)
    colors = [
        "#DD8452" if threshold is not None and a >= threshold else "#4C72B0" for a in accuracies
    ]
    ax.bar(accuracies, counts, width=width, color=colors)
    ax.set_xlabel("per-question accuracy over samples")
    ax.set_ylabel("questions")
    ax.set_xlim(-0.08, 1.08)
    ax.set_title("saturation (orange: saturated)" if threshold is not None else "saturation")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path
