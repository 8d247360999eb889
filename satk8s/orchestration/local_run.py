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
  pushed image.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from satk8s.errors import Satk8sError
from satk8s.grid.plan import Plan
from satk8s.orchestration.component_runner import RUN_LOG_ENV

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
    """A task of a local run failed (its own log, streamed by kfp.local, says why)."""


@dataclasses.dataclass(frozen=True)
class LocalRun:
    """What a local run did."""

    pipeline: Path
    """The compiled pipeline YAML that ran."""
    nodes: dict[str, dict[str, Any]]
    """Node id -> {step, out, cached, seconds} as each task reported it."""
    seconds: float
    """Wall time of the whole kfp.local run."""
    report: Path | None
    """The report node's report.md (report.html beside it), when the plan has one and the store
    is local."""

    @property
    def overhead_per_task(self) -> float:
        """Mean seconds per task that kfp.local adds around the step (subprocess, kfp import,
        placeholder resolution): the run's wall time less the steps' own, per task."""
        steps = sum(n["seconds"] for n in self.nodes.values())
        return (self.seconds - steps) / max(len(self.nodes), 1)


def run_local(
    plan: Plan, store_root: str | None, workdir: str | Path, force: bool = False
) -> LocalRun:
    """Compile `plan` and run it with kfp.local; outputs go to `store_root` (default the
    plan's), the YAML and kfp's own artifacts to `workdir`. Finished steps are cache hits."""
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
    handle, name = tempfile.mkstemp(prefix="run-", suffix=".jsonl", dir=work)
    os.close(handle)  # the tasks append to it by name
    log = Path(name)
    started = time.perf_counter()
    try:
        with _env(RUN_LOG_ENV, str(log)), warnings.catch_warnings():
            # Display names, resources and retries are for the cluster; kfp.local says so
            # once per task. Expected here, not worth a warning.
            warnings.filterwarnings("ignore", message=r".*no effect in the current local runner")
            try:
                pipeline(store_root=plan.store_root, force=force)
            except RuntimeError as err:  # kfp.local: "Pipeline ... finished with status FAILURE"
                raise LocalRunError(_failure(err, yaml_path, _read_log(log))) from err
        seconds = time.perf_counter() - started
        nodes = _read_log(log)
    finally:
        log.unlink(missing_ok=True)
    if missing := [n.id for n in plan.nodes if n.id not in nodes]:
        raise LocalRunError(f"tasks reported nothing for nodes {missing}")
    return LocalRun(yaml_path, nodes, round(seconds, 3), _report_path(plan, nodes))


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


def _failure(err: RuntimeError, yaml_path: Path, done: dict[str, Any]) -> str:
    """kfp.local's failure message without colours, its task names as plan node ids."""
    import yaml

    message = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    spec = next(yaml.safe_load_all(yaml_path.read_text()))
    for task, body in spec["root"]["dag"]["tasks"].items():
        message = message.replace(f"'{task}'", f"'{body['taskInfo']['name']}'")
    finished = ", ".join(sorted(done)) or "none"
    return f"{message} Steps finished before it: {finished}. The task's log is above."


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


__all__ = ["LOCAL_IMAGES", "LocalRun", "LocalRunError", "report_files", "run_local"]
