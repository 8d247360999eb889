"""kfp.local's console output, filed as one log file per task.

kfp.local (kfp 2.17) writes everything to the calling process's `sys.stdout`: its own log lines
through a logging handler it binds to `sys.stdout` for each task (`kfp/local/logging_utils.py`
`local_logger_context`), and every task subprocess's merged stdout and stderr, line by line,
through `print()` (`kfp/local/subprocess_task_handler.py` `run_local_subprocess`), which for a
lightweight component includes the executor's whole input JSON. It has no option to route or
quiet that output, so a local run points `sys.stdout` (and `sys.stderr`) at a `TaskLogs` stream
while the pipeline runs, and the stream files each line under the task that printed it.

kfp.local names the running task in two log lines per task, the only place it does
(`kfp/local/task_dispatcher.py` `run_single_task_implementation`, kfp 2.17.0), coloured:

    HH:MM:SS.mmm - INFO - Executing task 'NAME'
    HH:MM:SS.mmm - INFO - Task 'NAME' finished with status SUCCESS
    HH:MM:SS.mmm - ERROR - Task 'NAME' finished with status FAILURE

NAME is the task's resource name (its component name without `comp-`). Everything from one
"Executing" line to the next belongs to that task; what comes before the first or after the
last belongs to the pipeline (`kfp-local.log`), as do kfp.local's "Running pipeline" and
"Pipeline ... finished" lines. kfp is pinned to 2.17.0 and
tests/test_local_run.py checks these formats against a real kfp.local run.
"""

from __future__ import annotations

import io
import re
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TextIO

ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STARTED = re.compile(r" - INFO - Executing task '(?P<name>[^']+)'$")
_FINISHED = re.compile(
    r" - (INFO|ERROR) - Task '(?P<name>[^']+)' finished with status (?P<status>\w+)$"
)
_KFP_LOCAL = re.compile(r"\d\d:\d\d:\d\d\.\d{3} - [A-Z]+ - ")
_PIPELINE = re.compile(r" - (INFO|ERROR) - (Running pipeline: |Pipeline )'")
# kfp's executor logs at INFO with this prefix (kfp/dsl/executor_main.py `_setup_logging`),
# among them its whole input as indented JSON; kfp.local indents every task line by 4 spaces
# (logging_utils.indented_print). Kept in the file, left out of the news and the tail.
_EXECUTOR_INFO = re.compile(r"\[KFP Executor [^\]]* INFO\]: ")
_INDENT = " " * 4
PIPELINE_LOG = "kfp-local.log"
TAIL_LINES = 20


def log_file_name(node: str) -> str:
    """A task's log file name: its node id, with anything unsafe in a file name replaced."""
    return re.sub(r"[^\w.-]", "_", node) + ".log"


class TaskLogs(io.TextIOBase):
    """A text stream that writes kfp.local's output into `<directory>/<node>.log`, one file per
    task, and reports tasks starting and finishing to `on_start(node)` / `on_finish(node, ok)`.

    `names` maps kfp.local's task names to the plan's node ids (file names and events use node
    ids). Lines are stored without kfp.local's colour codes."""

    def __init__(
        self,
        directory: Path,
        names: Mapping[str, str],
        on_start: Callable[[str], None] = lambda node: None,
        on_finish: Callable[[str, bool], None] = lambda node, ok: None,
        on_line: Callable[[str, str], None] = lambda node, line: None,
    ) -> None:
        super().__init__()
        self.directory = directory
        self.names = dict(names)
        self.on_start, self.on_finish, self.on_line = on_start, on_finish, on_line
        self.current: str | None = None
        """The node whose output is being filed (the last task kfp.local started)."""
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        """The current task's last non-empty lines of its own (not kfp's executor's INFO
        lines), up to its finish line."""
        self._finished = False
        self._in_executor_input = False
        self._pending = ""
        directory.mkdir(parents=True, exist_ok=True)
        self._file: TextIO = open(directory / PIPELINE_LOG, "a")  # noqa: SIM115 (kept open)

    def log_path(self, node: str) -> Path:
        return self.directory / log_file_name(node)

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._line(line)
        return len(text)

    def flush(self) -> None:
        if not self._file.closed:
            self._file.flush()

    def close(self) -> None:
        if self._pending:
            self._line(self._pending)
            self._pending = ""
        if not self._file.closed:
            self._file.close()
        super().close()

    def _line(self, raw: str) -> None:
        line = ANSI.sub("", raw)
        if started := _STARTED.search(line):
            node = self.names.get(started["name"], started["name"])
            self._switch(node)
            self.on_start(node)
        elif _PIPELINE.search(line):
            self._switch(None)
        self._file.write(line + "\n")
        if self.current is None or self._finished:
            return
        if finished := _FINISHED.search(line):
            self._finished = True
            self._file.flush()
            self.on_finish(self.current, finished["status"] == "SUCCESS")
            return
        # A progress bar redraws with carriage returns: its last state is the line's news.
        shown = line.rsplit("\r", 1)[-1].strip()
        if self._in_executor_input:  # the JSON kfp's executor logs, up to its closing brace
            self._in_executor_input = line.rstrip() != _INDENT + "}"
            return
        if _KFP_LOCAL.match(line):  # kfp.local's own log lines: not the task's
            return
        if _EXECUTOR_INFO.match(shown):
            self._in_executor_input = shown.endswith("Got executor_input:")
            return
        if shown:
            self.tail.append(shown)
            self.on_line(self.current, shown)

    def _switch(self, node: str | None) -> None:
        self._file.close()
        # Appending: a task that kfp.local retries writes its attempts one after the other.
        path = self.directory / PIPELINE_LOG if node is None else self.log_path(node)
        self._file = open(path, "a")  # noqa: SIM115 (kept open)
        self.current = node
        self._finished = False
        if node is not None:  # the last task's tail stays until another task starts
            self.tail.clear()


__all__ = ["ANSI", "PIPELINE_LOG", "TaskLogs", "log_file_name"]
