"""The console view of `satk8s runs watch`: a cluster run's tasks as their states change.

One line per task state change and per run state change (the same on a terminal and in a log),
with, on a terminal, a live line of counts at the bottom. At the end: the counts, each failed
task with its pod and the commands that show its log, the run's error and its UI link.
"""

from __future__ import annotations

import datetime as dt
import time

from rich.console import Console
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from satk8s.cli.run_progress import duration
from satk8s.orchestration.kfp_client import KfpSettings
from satk8s.orchestration.run_watch import (
    FINISHED_TASK_STATES,
    RunSnapshot,
    logs_commands,
    watch_run,
)

STATE_STYLES = {
    "succeeded": "green",
    "cached": "cyan",
    "failed": "bold red",
    "running": "yellow",
    "canceled": "red",
}


class WatchView:
    """Prints the changes between two snapshots of a run."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.latest: RunSnapshot | None = None
        self.spinner = Spinner("dots", text="waiting for the run")
        self.started = time.perf_counter()

    def __rich__(self) -> Spinner:
        if self.latest is not None:
            self.spinner.update(text=Text(self.counts(self.latest), style="dim"))
        return self.spinner

    @staticmethod
    def counts(run: RunSnapshot) -> str:
        done = sum(t.state in FINISHED_TASK_STATES for t in run.tasks)
        states = ("running", "succeeded", "cached", "failed", "pending")
        parts = ", ".join(f"{run.count(s)} {s}" for s in states if run.count(s))
        return f"{run.run.run_id} {run.run.state}: {done}/{len(run.tasks)} tasks done ({parts})"

    def update(self, now: RunSnapshot, before: RunSnapshot | None) -> None:
        self.latest = now
        if before is None or now.run.state != before.run.state:
            self.console.print(
                f"run {now.run.run_id}: {now.run.state}", markup=False, soft_wrap=True
            )
        seen = {t.task: t.state for t in before.tasks} if before else {}
        width = max((len(t.name) for t in now.tasks), default=10)
        total = len(now.tasks)
        done = sum(t.state in FINISHED_TASK_STATES for t in now.tasks)
        for task in now.tasks:
            if seen.get(task.task, "pending") == task.state:
                continue
            text = Text(f"[{done:>{len(str(total))}}/{total}] {task.name:<{width}}  ")
            text.append(f"{task.state:<9}", style=STATE_STYLES.get(task.state, ""))
            if task.seconds is not None:
                text.append(f"  {duration(task.seconds)}")
            text.rstrip()
            self.console.print(text, soft_wrap=True)

    def end(self, run: RunSnapshot, settings: KfpSettings) -> None:
        info = run.run
        took = _seconds_between(info.created_at, info.finished_at)
        summary = f"run {info.run_id}: {info.state}"
        if took is not None:
            summary += f" in {duration(took)}"
        self.console.print(
            f"{summary}; {self.counts(run).split(': ', 1)[1]}", markup=False, soft_wrap=True
        )
        for task in run.failed:
            where = "in KFP's driver, before it ran" if task.failed_in == "driver" else ""
            label = f"{task.name} (task {task.task}{', ' + where if where else ''})"
            self.console.print(f"failed:  {label}", style="red", markup=False, soft_wrap=True)
            if task.pod:
                self.console.print(f"  pod:   {task.pod}", markup=False, soft_wrap=True)
            for i, command in enumerate(logs_commands(task, info.run_id, settings.namespace)):
                self.console.print(
                    f"  {'logs:' if i == 0 else '':<6} {command}", markup=False, soft_wrap=True
                )
        if info.error:
            self.console.print(f"error:   {info.error}", markup=False, soft_wrap=True)
        self.console.print(f"url:     {info.url}", markup=False, soft_wrap=True)


def watch(
    run_id: str,
    settings: KfpSettings,
    timeout: float | None,
    poll: float,
    console: Console,
) -> RunSnapshot:
    """Watch a run to its end, printing as it goes; returns its last snapshot."""
    view = WatchView(console)
    live = None
    if console.is_terminal:
        live = Live(view, console=console, refresh_per_second=4, transient=True)
        live.start()
    try:
        last = watch_run(run_id, settings, timeout=timeout, poll=poll, on_update=view.update)
    finally:
        if live is not None:
            live.stop()
    view.end(last, settings)
    return last


def _seconds_between(start: str, end: str) -> float | None:
    try:
        first = dt.datetime.fromisoformat(start.replace("Z", "+00:00"))
        last = dt.datetime.fromisoformat(end.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (last - first).total_seconds() if last.timestamp() > 0 else None


__all__ = ["WatchView", "watch"]
