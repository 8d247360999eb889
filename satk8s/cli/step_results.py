"""One short result line per finished step, from the summary the step returned.

One small function per step. Summaries grow and change with the science, so every function
reads only a few keys, and a summary without them gives an empty result, never an error: the
console line then shows the task's status and time alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import PurePath
from typing import Any

Summary = Mapping[str, Any]


def _tiny(s: Summary) -> str:
    return f"model {PurePath(s['parameters_built_from']).name}"


def _stage_model(s: Summary) -> str:
    commit = f" at {s['commit'][:12]}" if s.get("commit") else ""
    return f"{s['model']}{commit}, {s['files']} files, {s['bytes'] / 1e9:.1f} GB"


def _prepare(s: Summary) -> str:
    # Sorted: a cache hit's summary comes back from the manifest with its keys sorted.
    counts = ", ".join(f"{n} {split}" for split, n in sorted(s["questions"].items()))
    return f"{counts} questions"


def _generate(s: Summary) -> str:
    questions, samples = s["questions"], s["samples"]
    return f"{questions} q × {samples // max(questions, 1)} samples, {s['tokens']:,} tokens"


def _saturate(s: Summary) -> str:
    saturated, questions = s["saturated_questions"], s["questions"]
    return f"{saturated}/{questions} saturated, {s['kept_solutions']} solutions kept"


def _signals(s: Summary) -> str:
    text = f"{s['scored']} solutions of {s['questions']} questions scored"
    if "position_bias" in s:
        text += f", position bias {s['position_bias']:.2f}"
    return text


def _calibrate(s: Summary) -> str:
    agreement = ", ".join(
        f"{name} {values['pairwise_agreement']['mean']:.2f}"
        for name, values in s["signals"].items()
    )
    return f"agreement with {s['reference']}: {agreement}"


def _build_dataset(s: Summary) -> str:
    return f"{s['rows']} rows from {s['questions']} questions"


def _train(s: Summary) -> str:
    return f"loss {s['final_loss']:.2f} after {s['steps']} steps"


def _evaluate(s: Summary) -> str:
    return ", ".join(
        f"{name} {100 * values['accuracy']['mean']:.1f}%" for name, values in s["eval_sets"].items()
    )


def _report(s: Summary) -> str:
    return f"{s['cells']} cells"


def _merge(s: Summary) -> str:
    return f"{s['parts']} parts merged"


RESULTS: dict[str, Callable[[Summary], str]] = {
    "tiny": _tiny,
    "stage_model": _stage_model,
    "prepare": _prepare,
    "generate": _generate,
    "saturate": _saturate,
    "signals": _signals,
    "calibrate": _calibrate,
    "build_dataset": _build_dataset,
    "train": _train,
    "evaluate": _evaluate,
    "merge": _merge,
    "report": _report,
}


def result_line(step: str, summary: Summary | None) -> str:
    """What `step` produced, in a few words; empty when the summary lacks what the line needs."""
    describe = RESULTS.get(step)
    if describe is None or not isinstance(summary, Mapping):
        return ""
    try:
        return describe(summary)
    except (KeyError, TypeError, ValueError, AttributeError, ZeroDivisionError):
        return ""


__all__ = ["RESULTS", "result_line"]
