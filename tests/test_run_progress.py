"""The console view of a local run: result lines from step summaries, plain lines off a
terminal, a live status on one."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from satk8s.cli.run_progress import RunView, duration
from satk8s.cli.step_results import RESULTS, result_line
from satk8s.grid.plan import Node
from satk8s.steps import STEPS

# Summaries as the steps returned them in a smoke run (trimmed to the keys the lines read and a
# few they do not).
SUMMARIES = {
    "tiny": {"parameters_built_from": "/work/cache/tiny/7aabe39cc6919e88"},
    "stage_model": {
        "model": "Qwen/Qwen3-1.7B-Base",
        "revision": "main",
        "commit": "ea980cb0a6c2b3b8b1a6f2d5e4c3b2a1f0e9d8c7",
        "files": 9,
        "bytes": 4_061_254_317,
    },
    "prepare": {"fewshot": 0, "questions": {"train": 72, "eval_id": 60, "eval_hard": 60}},
    "generate": {"questions": 72, "samples": 576, "tokens": 10822, "shards_written": 2},
    "saturate": {"questions": 72, "saturated_questions": 43, "kept_solutions": 344},
    "signals": {"signal": "self_judge", "scored": 344, "questions": 43, "position_bias": 0.9514},
    "calibrate": {
        "reference": "external_judge",
        "signals": {
            "entropy": {"pairwise_agreement": {"mean": 0.9607, "lo": 0.91, "hi": 1.0}},
            "random": {"pairwise_agreement": {"mean": 0.504, "lo": 0.43, "hi": 0.57}},
        },
    },
    "build_dataset": {"algorithm": "best_of_n", "rows": 43, "questions": 43},
    "train": {"final_loss": 0.2134, "steps": 30, "losses": [0.5, 0.2134]},
    "evaluate": {
        "eval_sets": {
            "eval_id": {"accuracy": {"mean": 0.8166, "lo": 0.71, "hi": 0.91}},
            "eval_hard": {"accuracy": {"mean": 0.0833, "lo": 0.01, "hi": 0.15}},
        }
    },
    "report": {"cells": 7, "title": "smoke"},
    "merge": {"parts": 3, "questions": 72, "samples": 576},
}


def test_every_step_has_a_result_line() -> None:
    assert set(RESULTS) == set(STEPS)
    assert {step: result_line(step, SUMMARIES[step]) for step in STEPS} == {
        "tiny": "model 7aabe39cc6919e88",
        "stage_model": "Qwen/Qwen3-1.7B-Base at ea980cb0a6c2, 9 files, 4.1 GB",
        "prepare": "60 eval_hard, 60 eval_id, 72 train questions",
        "generate": "72 q × 8 samples, 10,822 tokens",
        "saturate": "43/72 saturated, 344 solutions kept",
        "signals": "344 solutions of 43 questions scored, position bias 0.95",
        "calibrate": "agreement with external_judge: entropy 0.96, random 0.50",
        "build_dataset": "43 rows from 43 questions",
        "train": "loss 0.21 after 30 steps",
        "evaluate": "eval_id 81.7%, eval_hard 8.3%",
        "merge": "3 parts merged",
        "report": "7 cells",
    }


def test_a_summary_without_the_expected_keys_gives_an_empty_result() -> None:
    for step in STEPS:
        assert result_line(step, {}) == ""
        assert result_line(step, None) == ""
    assert result_line("train", {"final_loss": "n/a", "steps": 3}) == ""
    assert result_line("no-such-step", {"rows": 1}) == ""


def test_durations() -> None:
    assert [duration(s) for s in (0.04, 9.4, 9.96, 41.2, 59.4, 59.6, 216, 7500)] == [
        "0.0 s",
        "9.4 s",
        "10 s",
        "41 s",
        "59 s",
        "1m00s",
        "3m36s",
        "2h05m",
    ]


NODES = (
    Node("generate", "generate", "generate", {}),
    Node("train-best_of_n-entropy-s0", "train", "train", {}),
    Node("evaluate-base", "evaluate", "evaluate", {}),
)


def run_events(view: RunView, tmp_path: Path) -> None:
    view.task_started("generate", "generate")
    view.task_output("generate", "[KFP Executor] Got executor_input:")
    view.task_finished(
        "generate",
        {"step": "generate", "cached": False, "seconds": 41.2, "summary": SUMMARIES["generate"]},
    )
    view.task_started("train-best_of_n-entropy-s0", "train")
    view.task_finished(
        "train-best_of_n-entropy-s0",
        {"step": "train", "cached": True, "seconds": 0.4, "summary": SUMMARIES["train"]},
    )
    view.task_started("evaluate-base", "evaluate")
    view.task_failed("evaluate-base", tmp_path / "evaluate-base.log")


def test_off_a_terminal_each_finished_task_is_one_plain_line(tmp_path: Path) -> None:
    out = io.StringIO()
    console = Console(file=out, width=80)
    assert not console.is_terminal
    with RunView(console, "smoke", NODES) as view:
        run_events(view, tmp_path)
    lines = out.getvalue().splitlines()
    assert lines == [
        "[1/3] generate                      41 s  computed  72 q × 8 samples, 10,822 tokens",
        "[2/3] train-best_of_n-entropy-s0   0.4 s  cached    loss 0.21 after 30 steps",
        f"[3/3] evaluate-base                0.0 s  FAILED    log: {tmp_path}/evaluate-base.log",
    ]
    assert (view.done, view.cached) == (2, 1)


def test_on_a_terminal_a_live_status_shows_the_running_task_and_the_count(
    tmp_path: Path,
) -> None:
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=True, color_system=None)
    with RunView(console, "smoke", NODES) as view:
        assert view.live is not None
        view.task_started("generate", "generate")
        view.task_output("generate", "sampling shard 2/2")
        status = io.StringIO()
        Console(file=status, width=120, color_system=None).print(view)
        view.task_finished(
            "generate",
            {"step": "generate", "cached": False, "seconds": 41.2, "summary": {}},
        )
    shown = status.getvalue()
    assert "generate" in shown and "sampling shard 2/2" in shown
    assert "0/3 tasks, 0 cached" in shown
    assert "[1/3] generate" in out.getvalue() and "computed" in out.getvalue()
