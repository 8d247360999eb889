"""kfp.local's console output filed as one log per task (satk8s.orchestration.task_logs).

The lines fed here are kfp.local 2.17's own formats (kfp/local/task_dispatcher.py and
pipeline_orchestrator.py at kfp 2.17.0, coloured as kfp/local/logging_utils.py colours them);
tests/test_local_run.py checks the same stream against a real kfp.local run.
"""

from __future__ import annotations

from pathlib import Path

from satk8s.orchestration.task_logs import PIPELINE_LOG, TaskLogs, log_file_name

CYAN, GREEN, RED, MAGENTA, RESET = "\033[96m", "\033[92m", "\033[91m", "\033[95m", "\033[0m"


# What kfp's executor logs first (kfp/dsl/executor_main.py, kfp 2.17.0), shortened.
EXECUTOR_INPUT = [
    "[KFP Executor 2026-11-30 02:01:10,912 INFO]: Looking for component `build_dataset`",
    "[KFP Executor 2026-11-30 02:01:10,913 INFO]: Got executor_input:",
    "{",
    '    "inputs": {',
    '        "parameterValues": {"node": "dataset-best_of_n-entropy"}',
    "    },",
    '    "outputs": {}',
    "}",
]


def kfp_lines(task: str, body: list[str], status: str = "SUCCESS") -> str:
    level = "INFO" if status == "SUCCESS" else "ERROR"
    colour = GREEN if status == "SUCCESS" else RED
    return "\n".join(
        [
            f"02:01:10.696 - INFO - Executing task {CYAN}'{task}'{RESET}",
            "02:01:10.696 - INFO - Streamed logs:",
            "",
            *(f"    {line}" for line in body),
            "    ",
            "",
            f"02:01:21.565 - {level} - Task {CYAN}'{task}'{RESET} finished with status "
            f"{colour}{status}{RESET}",
            f"02:01:21.566 - INFO - Task {CYAN}'{task}'{RESET} outputs:",
            "    Output: 'file:///store/steps/x'",
            "-" * 80,
            "",
        ]
    )


def test_each_task_gets_its_own_file_and_the_pipeline_lines_their_own(tmp_path: Path) -> None:
    events: list[tuple[str, ...]] = []
    logs = TaskLogs(
        tmp_path,
        {"build-dataset-2": "dataset-best_of_n-entropy", "train": "train-sft-none-s0"},
        on_start=lambda node: events.append(("start", node)),
        on_finish=lambda node, ok: events.append(("finish", node, str(ok))),
        on_line=lambda node, line: events.append(("line", node, line)),
    )
    stream = (
        f"01:52:32.846 - INFO - Running pipeline: {MAGENTA}'satk8s-smoke'{RESET}\n"
        + "-" * 80
        + "\n"
        + kfp_lines("build-dataset-2", EXECUTOR_INPUT + ["satk8s: dataset computed in 0.4s"])
        + kfp_lines(
            "train", ["step 10/30 loss 0.5", "Traceback (most recent call last):"], "FAILURE"
        )
    )
    # kfp.local prints in pieces (its indenting print writes the indent, then the line).
    for start in range(0, len(stream), 7):
        logs.write(stream[start : start + 7])
    logs.write(f"02:05:00.000 - INFO - Pipeline {MAGENTA}'satk8s-smoke'{RESET} finished\n")
    logs.close()

    dataset = (tmp_path / "dataset-best_of_n-entropy.log").read_text()
    assert dataset.startswith("02:01:10.696 - INFO - Executing task 'build-dataset-2'\n")
    assert '        "inputs": {\n' in dataset  # the executor's input, whole, in the file
    assert "finished with status SUCCESS" in dataset and "Output: 'file:///store" in dataset
    assert "\033[" not in dataset  # colours stripped
    assert "train" not in dataset
    train = (tmp_path / "train-sft-none-s0.log").read_text()
    assert "step 10/30 loss 0.5" in train and "finished with status FAILURE" in train
    pipeline = (tmp_path / PIPELINE_LOG).read_text().splitlines()
    assert pipeline[0] == "01:52:32.846 - INFO - Running pipeline: 'satk8s-smoke'"
    assert pipeline[-1] == "02:05:00.000 - INFO - Pipeline 'satk8s-smoke' finished"

    assert [e for e in events if e[0] != "line"] == [
        ("start", "dataset-best_of_n-entropy"),
        ("finish", "dataset-best_of_n-entropy", "True"),
        ("start", "train-sft-none-s0"),
        ("finish", "train-sft-none-s0", "False"),
    ]
    # kfp's executor's INFO lines and its input JSON are no news: only the step's own lines.
    lines = [e[2] for e in events if e[0] == "line" and e[1] == "dataset-best_of_n-entropy"]
    assert lines == ["satk8s: dataset computed in 0.4s"]
    lines = [e[2] for e in events if e[0] == "line" and e[1] == "train-sft-none-s0"]
    assert lines[-2:] == ["step 10/30 loss 0.5", "Traceback (most recent call last):"]
    # The tail is the failing task's own lines, up to its finish line.
    assert list(logs.tail)[-1] == "Traceback (most recent call last):"
    assert not any("finished with status" in line for line in logs.tail)


def test_progress_bars_show_their_last_state_and_retries_append(tmp_path: Path) -> None:
    seen: list[str] = []
    logs = TaskLogs(tmp_path, {}, on_line=lambda node, line: seen.append(line))
    logs.write(kfp_lines("tiny", ["build 10%|#   |\rbuild 50%|##  |\rbuild 90%|### |"], "FAILURE"))
    logs.write(kfp_lines("tiny", ["second attempt"]))
    logs.close()
    assert "build 90%|### |" in seen and "build 10%|#   |" not in seen
    text = (tmp_path / "tiny.log").read_text()  # not a node of the plan: kfp's name stands
    assert text.count("Executing task 'tiny'") == 2 and "second attempt" in text


def test_log_file_names_are_safe() -> None:
    assert log_file_name("train-dpo-entropy-s0") == "train-dpo-entropy-s0.log"
    assert log_file_name("a/b c") == "a_b_c.log"
