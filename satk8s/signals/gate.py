"""The judge health gate of training cells.

A training cell built on a judged signal (the self-judge, or any signal whose step recorded
judge health in `diagnostics.json`) is only trained when its judge answers in the expected
format and is not a position-bias machine: a judge that puts 4e-5 of its probability on the
two labels, or always prefers the solution shown first, produces scores that look like a
ranking and mean nothing. The gate reads the health numbers of `pair_diagnostics` (measured on
distinct pairs) and either passes the cell or names every check it failed.

A gated cell still finishes: its training set, training and evaluation steps write a finished
"gated" output (`gated.json`, no model), so a compiled pipeline runs to its report, which shows
the cell as gated with the reasons.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from satk8s.errors import ConfigError

GATED_FILE = "gated.json"
"""Written by every step of a gated cell, in place of its usual output."""


@dataclass(frozen=True)
class JudgeGate:
    """When a judged signal may train a cell. Grid setting: `judge_gate` (every dataset node of
    a cell with a signal gets it as `BuildConfig.judge_gate`)."""

    enabled: bool = True
    """False trains every cell whatever its judge's health (the health is still reported)."""
    min_label_mass: float = 0.5
    """Least mean probability the judge may put on the two verdict labels together. Judges
    that read no label probabilities (text verdicts, the oracle) have none and are not held
    to it."""
    position_bias_min: float = 0.35
    """Least share of verdicts won by the solution shown first (0.5 = no bias)."""
    position_bias_max: float = 0.65
    """Largest share of verdicts won by the solution shown first."""
    min_order_consistency: float = 0.0
    """Least share of distinct pairs whose two orders pick the same winner (0 = not checked)."""
    max_invalid_share: float = 1.0
    """Largest share of verdicts without a usable answer (1 = not checked here; the judge step
    has its own limit)."""

    def __post_init__(self) -> None:
        for name in (
            "min_label_mass",
            "position_bias_min",
            "position_bias_max",
            "min_order_consistency",
            "max_invalid_share",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not (0.0 <= value <= 1.0 and math.isfinite(value)):
                raise ConfigError(f"judge_gate.{name}", f"must be a share in [0, 1], got {value}")
        if self.position_bias_min > self.position_bias_max:
            raise ConfigError(
                "judge_gate.position_bias_min",
                f"{self.position_bias_min} is above position_bias_max {self.position_bias_max}",
            )


def is_judged(diagnostics: Mapping[str, Any] | None) -> bool:
    """Whether a signal's diagnostics hold judge health (`pair_diagnostics`)."""
    return bool(diagnostics) and "distinct_pairs" in diagnostics  # type: ignore[operator]


def check_gate(diagnostics: Mapping[str, Any] | None, gate: JudgeGate) -> dict[str, Any]:
    """{"passed": bool, "reasons": [...], "judged": bool, "health": {...}} for one signal.

    A signal without judge health passes (nothing to gate). A measure the judge could not be
    measured on (no distinct pair judged) fails: its health is unknown.
    """
    if not is_judged(diagnostics):
        return {"passed": True, "reasons": [], "judged": False, "health": {}}
    assert diagnostics is not None
    health = {
        key: diagnostics.get(key)
        for key in (
            "mean_label_mass",
            "invalid_share",
            "position_bias",
            "order_consistency",
            "distinct_pairs",
            "identical_pairs",
        )
    }
    if not gate.enabled:
        return {"passed": True, "reasons": [], "judged": True, "health": health, "enabled": False}
    reasons = []
    mass = health["mean_label_mass"]
    if mass is not None and mass < gate.min_label_mass:
        reasons.append(f"label mass {mass:.3g} < {gate.min_label_mass}")
    bias = health["position_bias"]
    if bias is None:
        reasons.append("position bias unmeasured (no distinct pair judged)")
    elif not gate.position_bias_min <= bias <= gate.position_bias_max:
        reasons.append(
            f"position bias {bias:.3f} outside [{gate.position_bias_min}, {gate.position_bias_max}]"
        )
    consistency = health["order_consistency"]
    if gate.min_order_consistency > 0 and (
        consistency is None or consistency < gate.min_order_consistency
    ):
        shown = "unmeasured" if consistency is None else f"{consistency:.3f}"
        reasons.append(f"order consistency {shown} < {gate.min_order_consistency}")
    invalid = health["invalid_share"]
    if invalid is not None and invalid > gate.max_invalid_share:
        reasons.append(f"invalid share {invalid:.3f} > {gate.max_invalid_share}")
    return {"passed": not reasons, "reasons": reasons, "judged": True, "health": health}
