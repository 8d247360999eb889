"""The console view of a local run: one line per finished task, and on a terminal a live status.

On a terminal (rich's own check), a rich `Live` display keeps two lines at the bottom: the
running task (its step, node, time so far and newest log line) and a bar of tasks done / total
with the cache hits and the run's time; finished tasks scroll above it. Anywhere else (a pipe, a
CI log) the view prints the same finished-task lines and nothing else, so a log holds exactly
one line per task.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from satk8s.cli.step_results import result_line
from satk8s.grid.plan import Node

STATUS_STYLES = {"computed": "green", "cached": "cyan", "FAILED": "bold red"}


def duration(seconds: float) -> str:
    """`0.6 s`, `41 s`, `3m36s`, `2h05m`."""
    if seconds < 9.95:
        return f"{seconds:.1f} s"
    if seconds < 59.5:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


class RunView:
    """Receives a local run's events (`satk8s.orchestration.local_run.RunProgress`) and prints
    them to `console`. Use as a context manager: the live display runs inside it."""

    def __init__(self, console: Console, grid: str, nodes: Sequence[Node]) -> None:
        self.console = console
        self.grid = grid
        self.total = len(nodes)
        self.width = max((len(n.id) for n in nodes), default=10)
        self.done = 0
        self.cached = 0
        self.started = time.perf_counter()
        self.running: tuple[str, str, float] | None = None
        """(node, step, start time) of the task running now."""
        self.last_line = ""
        self.live: Live | None = None
        self.spinner = Spinner("dots")

    @property
    def is_live(self) -> bool:
        return self.console.is_terminal

    def __enter__(self) -> RunView:
        self.started = time.perf_counter()
        if self.is_live:
            self.live = Live(
                self,
                console=self.console,
                refresh_per_second=4,
                transient=True,
                redirect_stdout=False,  # the run has pointed stdout at its task logs
                redirect_stderr=False,
            )
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    # --- RunProgress -------------------------------------------------------------------------

    def task_started(self, node: str, step: str) -> None:
        self.running = (node, step, time.perf_counter())
        self.last_line = ""

    def task_output(self, node: str, line: str) -> None:
        self.last_line = line

    def task_finished(self, node: str, record: Mapping[str, Any]) -> None:
        self.done += 1
        cached = bool(record.get("cached"))
        self.cached += cached
        step = str(record.get("step", ""))
        result = result_line(step, record.get("summary"))
        self.running = None  # first: printing redraws the live status
        self._print(node, "cached" if cached else "computed", float(record["seconds"]), result)

    def task_failed(self, node: str, log: Path) -> None:
        seconds = time.perf_counter() - self.running[2] if self.running else 0.0
        self.running = None
        self._print(node, "FAILED", seconds, f"log: {log}", ended=self.done + 1)

    # --- rendering ---------------------------------------------------------------------------

    def line(
        self, node: str, status: str, seconds: float, result: str, ended: int | None = None
    ) -> Text:
        """One finished task: `[ 3/32] generate   5.8 s  computed  72 q × 8 samples`, where 3
        is how many tasks have ended with it (default: succeeded so far)."""
        count = f"[{self.done if ended is None else ended:>{len(str(self.total))}}/{self.total}]"
        text = Text(f"{count} {node:<{self.width}}  {duration(seconds):>6}  ")
        text.append(f"{status:<8}", style=STATUS_STYLES.get(status, ""))
        if result:
            text.append(f"  {result}")
        return text

    def _print(
        self, node: str, status: str, seconds: float, result: str, ended: int | None = None
    ) -> None:
        self.console.print(self.line(node, status, seconds, result, ended), soft_wrap=True)

    def __rich__(self) -> Group:
        """The live status: the running task, then the tasks bar."""
        now = time.perf_counter()
        if self.running:
            node, step, since = self.running
            room = max(self.console.width - self.width - 27, 10)
            news = self.last_line if len(self.last_line) <= room else self.last_line[: room - 1]
            self.spinner.update(
                text=Text.assemble(
                    (f"{step:<13} ", "bold"),
                    f"{node:<{self.width}}  {duration(now - since):>6}  ",
                    (news, "dim"),
                )
            )
        else:
            self.spinner.update(text=Text("starting the next task", style="dim"))
        bar = Table.grid(padding=(0, 1))
        bar.add_row(
            ProgressBar(total=self.total, completed=self.done, width=30),
            f"{self.done}/{self.total} tasks, {self.cached} cached, {duration(now - self.started)}",
        )
        return Group(self.spinner, bar)


__all__ = ["RunView", "duration"]
