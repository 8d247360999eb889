"""Run a grid's compiled pipeline on this machine with kfp.local (`satk8s run GRID --local`).

The plan is compiled to the same YAML a cluster gets (`satk8s.pipelines.builder`), loaded back
and run by kfp.local's SubprocessRunner: every task is a subprocess of this Python running the
component's body, one at a time, on a file:// (or s3://) store. The platform spec (GPUs, node
pools, secrets) is ignored locally.

kfp.local traps handled here:
- it pip-installs kfp into the current environment before every task unless the component says
  `install_kfp_package=False` (ours do) and the runner is `use_venv=False`;
- it `rmtree`s `workspace_root` after every run, so it gets a fresh directory of its own;
- it ignores `base_image`, so the local compile uses placeholder image refs (below), never a
  pushed image;
- it prints every task's whole executor input and output to stdout, so its output goes to one
  log file per task instead (`task_logs`), and the console shows what `progress` makes of it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from satk8s.errors import Satk8sError
from satk8s.grid.plan import Plan
from satk8s.orchestration.component_runner import RUN_LOG_ENV
from satk8s.orchestration.task_logs import ANSI, TaskLogs

LOCAL_IMAGES = {
    "gpu": "satk8s-local-only/python-gpu:not-pushed",
    "cpu": "satk8s-local-only/python-cpu:not-pushed",
}
"""Placeholder image refs for LOCAL RUNS ONLY: kfp.local's SubprocessRunner runs every task in
this Python and never pulls an image, so a local run needs no pushed images. They are not
pinned and name no registry, so a YAML compiled with them is useless on a cluster; `satk8s grid
compile` always uses the pinned digests from `make images`. ("python" in the name keeps
kfp.local from warning about a non-Python image.)"""


class LocalRunError(Satk8sError):
    """A task of a local run failed: which one, its log file and the log's last lines."""

    def __init__(
        self,
        message: str,
        node: str | None = None,
        log: Path | None = None,
        tail: list[str] | None = None,
        finished: list[str] | None = None,
    ) -> None:
        self.node, self.log, self.tail, self.finished = node, log, tail or [], finished or []
        lines = [message]
        if self.tail:
            lines += ["The last lines of its log:", *(f"    {line}" for line in self.tail)]
        if log is not None:
            lines.append(f"Its whole log: {log}")
        if finished is not None:
            lines.append(f"Steps finished before it: {', '.join(finished) or 'none'}.")
        super().__init__("\n".join(lines))


class RunProgress(Protocol):
    """What a local run reports while it runs (a console view, or nothing)."""

    def task_started(self, node: str, step: str) -> None: ...

    def task_output(self, node: str, line: str) -> None:
        """The task printed `line` (the newest line of its log)."""

    def task_finished(self, node: str, record: Mapping[str, Any]) -> None:
        """The task succeeded; `record` is what it reported: step, out, cached, seconds and the
        step's summary."""

    def task_failed(self, node: str, log: Path) -> None: ...


@dataclasses.dataclass(frozen=True)
class LocalRun:
    """What a local run did."""

    pipeline: Path
    """The compiled pipeline YAML that ran."""
    nodes: dict[str, dict[str, Any]]
    """Node id -> {step, out, cached, seconds, summary} as each task reported it."""
    seconds: float
    """Wall time of the whole kfp.local run."""
    report: Path | None
    """The report node's report.md (report.html beside it), when the plan has one and the store
    is local."""
    logs: Path
    """The run's log folder: one `<node>.log` per task, kfp.local's own lines in
    `kfp-local.log`, and `tasks.jsonl`, what each task reported."""

    @property
    def cached(self) -> int:
        """How many tasks found their output finished in the store."""
        return sum(bool(n["cached"]) for n in self.nodes.values())

    @property
    def overhead_per_task(self) -> float:
        """Mean seconds per task that kfp.local adds around the step (subprocess, kfp import,
        placeholder resolution): the run's wall time less the steps' own, per task."""
        steps = sum(n["seconds"] for n in self.nodes.values())
        return (self.seconds - steps) / max(len(self.nodes), 1)


def run_local(
    plan: Plan,
    store_root: str | None,
    workdir: str | Path,
    force: bool = False,
    progress: RunProgress | None = None,
) -> LocalRun:
    """Compile `plan` and run it with kfp.local; outputs go to `store_root` (default the
    plan's), the YAML, kfp's own artifacts and the logs to `workdir`. Finished steps are cache
    hits. kfp.local's output goes to one log file per task (see `task_logs`), not the console;
    `progress` hears of every task starting, printing and finishing."""
    from kfp import components, local

    from satk8s.pipelines.builder import compile_plan

    if store_root:
        plan = dataclasses.replace(plan, store_root=store_root)
    work = Path(workdir).expanduser().resolve()
    work.mkdir(parents=True, exist_ok=True)
    yaml_path = compile_plan(plan, work / f"{plan.grid}.yaml", LOCAL_IMAGES)
    pipeline = components.load_component_from_file(str(yaml_path))
    # kfp.local deletes workspace_root after the run: a fresh, empty directory of its own.
    workspace = tempfile.mkdtemp(prefix="kfp-workspace-", dir=work)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(work / "kfp-outputs"),
        workspace_root=workspace,
        raise_on_error=True,
    )
    log_dir = Path(
        tempfile.mkdtemp(prefix=f"{plan.grid}-{time.strftime('%Y%m%d-%H%M%S')}-", dir=_logs(work))
    )
    run_log = log_dir / "tasks.jsonl"
    run_log.touch()  # the tasks append to it by name
    watcher = _Watcher(plan, run_log, progress)
    logs = TaskLogs(
        log_dir,
        _kfp_task_names(yaml_path),
        on_start=watcher.started,
        on_finish=watcher.finished,
        on_line=watcher.output,
    )
    watcher.logs = logs
    started = time.perf_counter()
    try:
        with (
            _env(RUN_LOG_ENV, str(run_log)),
            warnings.catch_warnings(),
            contextlib.redirect_stdout(logs),
            contextlib.redirect_stderr(logs),
        ):
            # Display names, resources and retries are for the cluster; kfp.local says so
            # once per task. Expected here, not worth a warning.
            warnings.filterwarnings("ignore", message=r".*no effect in the current local runner")
            try:
                pipeline(store_root=plan.store_root, force=force)
            except RuntimeError as err:  # kfp.local: "Pipeline ... finished with status FAILURE"
                raise watcher.failure(err) from err
    finally:
        logs.close()
    seconds = time.perf_counter() - started
    nodes = _read_log(run_log)
    if missing := [n.id for n in plan.nodes if n.id not in nodes]:
        raise LocalRunError(f"tasks reported nothing for nodes {missing}")
    return LocalRun(yaml_path, nodes, round(seconds, 3), _report_path(plan, nodes), log_dir)


class _Watcher:
    """Turns the task log stream's events into `RunProgress` calls, with each finished task's
    own record (the line it appended to the run log)."""

    def __init__(self, plan: Plan, run_log: Path, progress: RunProgress | None) -> None:
        self.steps = {n.id: n.step for n in plan.nodes}
        self.run_log = run_log
        self.progress = progress
        self.failed: str | None = None
        self.started_at: dict[str, float] = {}
        self.logs: TaskLogs | None = None

    def started(self, node: str) -> None:
        self.started_at[node] = time.perf_counter()
        if self.progress:
            self.progress.task_started(node, self.steps.get(node, "?"))

    def output(self, node: str, line: str) -> None:
        if self.progress:
            self.progress.task_output(node, line)

    def finished(self, node: str, ok: bool) -> None:
        assert self.logs is not None
        if not ok:
            self.failed = node
            if self.progress:
                self.progress.task_failed(node, self.logs.log_path(node))
            return
        record = _read_log(self.run_log).get(node)
        if record is None:  # a task that is not a satk8s step (never in a compiled grid)
            seconds = time.perf_counter() - self.started_at.get(node, time.perf_counter())
            record = {"step": self.steps.get(node, "?"), "cached": False, "seconds": seconds}
        if self.progress:
            self.progress.task_finished(node, record)

    def failure(self, err: RuntimeError) -> LocalRunError:
        """The error for a failed run: the failing task, its log and the log's tail."""
        assert self.logs is not None
        done = sorted(_read_log(self.run_log))
        node = self.failed
        if node is None:  # kfp.local failed outside a task: its message is all there is
            return LocalRunError(ANSI.sub("", str(err)), finished=done)
        seconds = time.perf_counter() - self.started_at.get(node, time.perf_counter())
        step = self.steps.get(node, "?")
        return LocalRunError(
            f"task '{node}' (step {step}) failed after {seconds:.1f}s.",
            node=node,
            log=self.logs.log_path(node),
            tail=list(self.logs.tail),
            finished=done,
        )


def report_files(out: str) -> tuple[Path, Path] | None:
    """report.md and report.html of a report output, when the store is local."""
    from satk8s.store.uri import local_path, scheme_of

    if scheme_of(out) != "file":
        return None
    root = local_path(out)
    return root / "report.md", root / "report.html"


def _report_path(plan: Plan, nodes: dict[str, dict[str, Any]]) -> Path | None:
    reports = [n.id for n in plan.nodes if n.step == "report"]
    files = report_files(nodes[reports[-1]]["out"]) if reports else None
    return files[0] if files else None


def _kfp_task_names(yaml_path: Path) -> dict[str, str]:
    """kfp.local's name for each task (its component name without `comp-`, kfp 2.17's
    `get_local_task_resource_name`) -> the plan node id (the task's display name)."""
    import yaml
    from kfp.local.executor_input_utils import get_local_task_resource_name

    spec = next(yaml.safe_load_all(yaml_path.read_text()))
    return {
        get_local_task_resource_name(task["componentRef"]["name"]): task["taskInfo"]["name"]
        for task in spec["root"]["dag"]["tasks"].values()
    }


def _logs(work: Path) -> Path:
    (work / "logs").mkdir(exist_ok=True)
    return work / "logs"


def _read_log(log: Path) -> dict[str, dict[str, Any]]:
    nodes: dict[str, dict[str, Any]] = {}
    for line in log.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            nodes[record.pop("node")] = record
    return nodes


@contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    """Set an environment variable for the tasks (kfp.local's subprocesses inherit it)."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


__all__ = ["LOCAL_IMAGES", "LocalRun", "LocalRunError", "RunProgress", "report_files", "run_local"]
