"""Step 8, evaluate: greedy accuracy, pass@k / maj@k, bootstrap CIs and paired comparisons."""

from satk8s.evaluation.evaluate import (
    PER_QUESTION_SCHEMA,
    EvalConfig,
    compare_runs,
    evaluate_model,
)
from satk8s.evaluation.metrics import (
    Interval,
    PairedDiff,
    bootstrap_ci,
    hierarchical_bootstrap_diff,
    holm_adjust,
    maj_at_k,
    majority_answer,
    paired_bootstrap_diff,
    pass_at_k,
)

__all__ = [
    "PER_QUESTION_SCHEMA",
    "EvalConfig",
    "Interval",
    "PairedDiff",
    "bootstrap_ci",
    "compare_runs",
    "evaluate_model",
    "hierarchical_bootstrap_diff",
    "holm_adjust",
    "maj_at_k",
    "majority_answer",
    "paired_bootstrap_diff",
    "pass_at_k",
]
