"""`satk8s runs watch`: a run's tasks from the KFP API, against the loopback KFP double.

The double (tests/test_kfp_submit.py's FakeKfp) serves GET /apis/v2beta1/runs/{id} with
`run_details.task_details` shaped the way KFP 2.17 fills them (all at tag 2.17.0):

- one detail per node of the run's Argo workflow (`backend/src/apiserver/server/api_converter.go`
  `toModelTask` for `util.NodeStatus`, `backend/src/common/util/workflow.go` `NodeStatuses`):
  display name, phase mapped to a RuntimeState (`backend/src/apiserver/model/run.go` `ToV2`),
  start and end times, and the child nodes' ids as `child_tasks[].pod_name`;
- no `pod_name`, `error` or node id of the detail itself (`toApiPipelineTaskDetail` sets
  neither), and no unpopulated fields (`backend/src/apiserver/common/utils.go`: protojson with
  UseProtoNames and EmitUnpopulated false);
- the workflow KFP's Argo compiler builds (`backend/src/v2/compiler/argocompiler/dag.go`,
  `container.go`): an `entrypoint` DAG with `root-driver` and `root`; in `root`, per pipeline
  task T a `T-driver` pod and a `T` DAG whose child `executor` runs the component, skipped when
  KFP's cache hits;
- Argo's node ids: `<workflow>-<fnv32a(node name)>`, a node's name its parent's name, a dot and
  its task name (argo-workflows `pkg/apis/workflow/v1alpha1/workflow_types.go` `NodeID`).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from test_kfp_submit import TOKEN, _env, _invoke, _settings, package

from satk8s.orchestration.kfp_client import KfpError, submit
from satk8s.orchestration.run_watch import snapshot, watch_run
from tests.kfp_fake import API, FakeKfp

__all__ = ["package"]  # a fixture, used by name (kfp_server is a plugin of tests/kfp_fake.py)

WORKFLOW = "satk8s-smoke-x7k2p"
T0 = dt.datetime(2026, 1, 2, 10, 0, tzinfo=dt.timezone.utc)
PHASES = {  # Argo node phase -> RuntimeState, as model.RuntimeState.ToV2 maps them
    "Pending": "PENDING",
    "Running": "RUNNING",
    "Succeeded": "SUCCEEDED",
    "Skipped": "SKIPPED",
    "Failed": "FAILED",
    "Error": "FAILED",
}


def fnv32a(text: str) -> int:
    value = 0x811C9DC5
    for byte in text.encode():
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def node_id(name: str) -> str:
    return WORKFLOW if name == WORKFLOW else f"{WORKFLOW}-{fnv32a(name)}"


def stamp(seconds: float | None) -> str:
    """A task time as KFP serves it; a time not reached yet is the Unix epoch."""
    if seconds is None:
        return "1970-01-01T00:00:00Z"
    return (T0 + dt.timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


class ArgoRun:
    """The task details of one run at one moment, built node by node."""

    def __init__(self) -> None:
        self.details: list[dict[str, Any]] = []
        self.children: dict[str, list[str]] = {}

    def node(
        self, name: str, display: str, phase: str, start: float | None, end: float | None
    ) -> None:
        parent = name.rsplit(".", 1)[0] if "." in name else None
        if parent is not None:
            self.children.setdefault(parent, []).append(node_id(name))
        detail = {
            "run_id": "run-w",
            "task_id": f"uuid-{len(self.details):04d}",
            "display_name": display,
            "create_time": stamp(0),
            "start_time": stamp(start),
            "end_time": stamp(end),
            "state": PHASES[phase],
            "_name": name,
        }
        self.details.append(detail)

    def task(
        self, task: str, phase: str | None, start: float = 0, end: float | None = None, **kw: Any
    ) -> None:
        """Pipeline task `task`: its driver, and once the driver succeeded its DAG node and
        executor. `phase` None: only the driver runs; `driver_failed`: the driver failed;
        `cached`: the executor was skipped; `retried`: the executor is a Retry node."""
        base = f"{WORKFLOW}.root.{task}"
        if kw.get("driver_failed"):
            self.node(f"{base}-driver", f"{task}-driver", "Failed", start, start + 2)
            return
        self.node(f"{base}-driver", f"{task}-driver", "Running" if phase is None else "Succeeded",
                  start, None if phase is None else start + 2)  # fmt: skip
        if phase is None:
            return
        self.node(base, task, phase, start + 2, end)
        executor = "Skipped" if kw.get("cached") else phase
        self.node(f"{base}.executor", "executor", executor, start + 2, end)
        if kw.get("retried"):
            for attempt in range(2):
                self.node(f"{base}.executor({attempt})", f"executor({attempt})", "Failed",
                          start + 2, end)  # fmt: skip

    def served(self, root_phase: str = "Running") -> list[dict[str, Any]]:
        """The details as GET runs/{id} returns them: sorted by node id (toModelTasks), with
        the children's ids and without the node's own name or id."""
        self.node(WORKFLOW, WORKFLOW, root_phase, 0, None)
        self.node(f"{WORKFLOW}.root-driver", "root-driver", "Succeeded", 0, 1)
        self.node(f"{WORKFLOW}.root", "root", root_phase, 1, None)
        served = []
        for detail in sorted(self.details, key=lambda d: node_id(d["_name"])):
            shown = {k: v for k, v in detail.items() if k != "_name"}
            if children := self.children.get(detail["_name"]):
                shown["child_tasks"] = [{"pod_name": child} for child in children]
            served.append(shown)
        return served


def pipeline_spec(retried: tuple[str, ...] = (), labelled: tuple[str, ...] = ()) -> dict:
    """A compiled pipeline's spec as GetRun returns it, with a platform spec (pod labels) for
    `labelled` tasks: {pipeline_spec, platform_spec} then, as api_util.go stores it."""
    names = {"prepare": "prepare", "generate": "generate", "train-2": "train-best_of_n-entropy-s0"}
    tasks = {}
    for key, name in names.items():
        tasks[key] = {"taskInfo": {"name": name}, "componentRef": {"name": f"comp-{key}"}}
        if key in retried:
            tasks[key]["retryPolicy"] = {"maxRetryCount": 1}
    spec = {
        "pipelineInfo": {"name": "satk8s-smoke"},
        "root": {"dag": {"tasks": tasks}},
        "components": {f"comp-{k}": {"executorLabel": f"exec-{k}"} for k in names},
    }
    if not labelled:
        return spec
    executors = {f"exec-{k}": {"podMetadata": {"labels": {"team": "a"}}} for k in labelled}
    platform = {"platforms": {"kubernetes": {"deploymentSpec": {"executors": executors}}}}
    return {"pipeline_spec": spec, "platform_spec": platform}


def moments() -> list[list[dict[str, Any]]]:
    """prepare cached, generate computed, train-2 failing, over four polls."""
    first = ArgoRun()
    second = ArgoRun()
    second.task("prepare", "Running", 1)
    third = ArgoRun()
    third.task("prepare", "Succeeded", 1, 4, cached=True)
    third.task("generate", "Running", 5)
    fourth = ArgoRun()
    fourth.task("prepare", "Succeeded", 1, 4, cached=True)
    fourth.task("generate", "Succeeded", 5, 46)
    fourth.task("train-2", "Failed", 47, 90)
    return [
        first.served("Pending"),
        second.served(),
        third.served(),
        fourth.served("Failed"),
    ]


@pytest.fixture
def failing_run(kfp_server: FakeKfp) -> FakeKfp:
    exp = kfp_server.add_experiment("satk8s-test", "team-a")
    kfp_server.add_run(
        "run-w",
        "grid smoke",
        exp,
        ["PENDING", "RUNNING", "RUNNING", "FAILED"],
        error={"code": 9, "message": "task train-2 failed"},
        pipeline_spec=pipeline_spec(),
        created_at="2026-01-09T10:58:30Z",  # the double finishes runs at 11:00:00
    )
    kfp_server.task_details["run-w"] = moments()
    return kfp_server


def test_watch_follows_every_task_to_the_failure(failing_run: FakeKfp) -> None:
    seen: list[list[tuple[str, str]]] = []
    last = watch_run(
        "run-w",
        _settings(failing_run),
        poll=0.01,
        on_update=lambda now, before: seen.append([(t.name, t.state) for t in now.tasks]),
    )
    assert seen == [
        [
            ("prepare", "pending"),
            ("generate", "pending"),
            ("train-best_of_n-entropy-s0", "pending"),
        ],
        [
            ("prepare", "running"),
            ("generate", "pending"),
            ("train-best_of_n-entropy-s0", "pending"),
        ],
        [("prepare", "cached"), ("generate", "running"), ("train-best_of_n-entropy-s0", "pending")],
        [
            ("prepare", "cached"),
            ("generate", "succeeded"),
            ("train-best_of_n-entropy-s0", "failed"),
        ],
    ]
    assert last.run.state == "FAILED" and last.workflow == WORKFLOW
    generate, train = last.tasks[1], last.tasks[2]
    assert generate.seconds == 39.0  # the T node's own times: after its driver
    hash_ = fnv32a(f"{WORKFLOW}.root.train-2.executor")
    assert train.task == "train-2" and train.failed_in == "executor"
    assert train.pod == f"{WORKFLOW}-system-container-impl-{hash_}"
    gets = [r for r in failing_run.requests if r["path"] == f"{API}/runs/run-w"]
    assert len(gets) == 4 and all(r["authorization"] == f"Bearer {TOKEN}" for r in gets)


def test_watch_cli_prints_changes_the_failed_pod_its_log_command_and_the_link(
    failing_run: FakeKfp,
) -> None:
    result = _invoke(["runs", "watch", "run-w", "--poll", "0.01"], _env(failing_run))
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    pod = f"{WORKFLOW}-system-container-impl-{fnv32a(f'{WORKFLOW}.root.train-2.executor')}"
    assert lines == [
        "run run-w: PENDING",
        "run run-w: RUNNING",
        "[0/3] prepare                     running",
        "[1/3] prepare                     cached     1.0 s",
        "[1/3] generate                    running",
        "run run-w: FAILED",
        "[3/3] generate                    succeeded  39 s",
        "[3/3] train-best_of_n-entropy-s0  failed     41 s",
        "run run-w: FAILED in 1m30s; 3/3 tasks done (1 succeeded, 1 cached, 1 failed)",
        "failed:  train-best_of_n-entropy-s0 (task train-2)",
        f"  pod:   {pod}",
        f"  logs:  kubectl -n team-a logs {pod} -c main",
        "         kubectl -n team-a get pods -l pipeline/runid=run-w "
        "--field-selector=status.phase=Failed",
        "error:   task train-2 failed",
        "url:     https://kubeflow.example.com/pipeline/#/runs/details/run-w",
    ]


def test_watch_exits_zero_when_the_run_succeeds(kfp_server: FakeKfp, package: Any) -> None:
    run = submit(package, _settings(kfp_server), arguments={"a": 1})
    done = ArgoRun()
    done.task("add", "Succeeded", 1, 12)
    kfp_server.states[run.run_id] = ["RUNNING", "SUCCEEDED"]
    kfp_server.task_details[run.run_id] = [ArgoRun().served(), done.served("Succeeded")]

    result = _invoke(["runs", "watch", run.run_id, "--poll", "0.01"], _env(kfp_server))
    assert result.exit_code == 0, result.output
    # The task names come from the pipeline spec the server kept from the submission.
    assert "[0/1] add  pending" not in result.output
    assert "[1/1] add  succeeded  9.0 s" in result.output
    assert f"run {run.run_id}: SUCCEEDED in " in result.output
    assert "; 1/1 tasks done (1 succeeded)" in result.output


def test_a_retried_or_labelled_task_and_a_failed_driver(kfp_server: FakeKfp) -> None:
    from satk8s.orchestration.kfp_client import RunInfo

    moment = ArgoRun()
    moment.task("prepare", None, driver_failed=True)
    moment.task("generate", "Failed", 5, 30, retried=True)
    moment.task("train-2", "Failed", 5, 30)
    info = RunInfo("run-x", "x", "FAILED", "https://ui/#/runs/details/run-x")
    raw = {
        "pipeline_spec": pipeline_spec(retried=("generate",), labelled=("train-2",)),
        "run_details": {"task_details": moment.served("Failed")},
    }
    run = snapshot(info, raw)
    prepare, generate, train = run.tasks
    assert (prepare.state, prepare.failed_in, prepare.pod) == ("failed", "driver", None)
    # A retried executor is a Retry node: its pods are not in the API; the label finds them.
    assert (generate.state, generate.pod) == ("failed", None)
    hash_ = fnv32a(f"{WORKFLOW}.root.train-2.executor")
    assert train.pod == f"{WORKFLOW}-metadata-0-1-system-container-impl-{hash_}"


def test_without_a_pipeline_spec_tasks_are_the_nodes_with_drivers(kfp_server: FakeKfp) -> None:
    from satk8s.orchestration.kfp_client import RunInfo

    moment = ArgoRun()
    moment.task("prepare", "Succeeded", 1, 3)
    moment.task("generate", None, 4)
    run = snapshot(
        RunInfo("r", "r", "RUNNING", "u"), {"run_details": {"task_details": moment.served()}}
    )
    assert [(t.task, t.state) for t in run.tasks] == [
        ("generate", "pending"),
        ("prepare", "succeeded"),
    ]


def test_watch_gives_up_after_the_timeout(failing_run: FakeKfp) -> None:
    failing_run.states["run-w"] = ["RUNNING"]
    with pytest.raises(KfpError, match=r"run run-w is still RUNNING after 0.05 s"):
        watch_run("run-w", _settings(failing_run), timeout=0.05, poll=0.01)
    result = _invoke(
        ["runs", "watch", "run-w", "--poll", "0.01", "--timeout", "0.05"], _env(failing_run)
    )
    assert result.exit_code == 2
    assert "error: run run-w is still RUNNING after 0.05 s" in result.output


def test_make_submit_wait_1_watches_the_submitted_run(tmp_path: Path) -> None:
    """The Makefile hook, run by make with a stand-in `satk8s` that records its arguments."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    calls = tmp_path / "calls.txt"
    fake = venv / "bin" / "satk8s"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        'if [ "$1" = submit ]; then echo "run id:     run-0042"; echo "url:        u"; fi\n'
    )
    fake.chmod(0o755)
    # Run from tmp_path with the repo's Makefile: build/ lands here, and the stamp is newer than
    # this folder's pyproject.toml, so make installs nothing.
    (tmp_path / "pyproject.toml").write_text("")
    os.utime(tmp_path / "pyproject.toml", (1, 1))
    (venv / ".installed").touch()
    makefile = Path(__file__).resolve().parents[1] / "Makefile"

    def make(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["make", "-s", "-f", str(makefile), "submit", f"VENV={venv}", "GRID=smoke", *args],
            capture_output=True,
            text=True,
            env={**os.environ, "MAKEFLAGS": ""},
            cwd=tmp_path,
        )

    done = make()
    assert done.returncode == 0, done.stderr
    assert calls.read_text().splitlines() == [
        "grid compile smoke -o build/smoke.yaml",
        "submit build/smoke.yaml",
    ]
    calls.unlink()
    done = make("WAIT=1")
    assert done.returncode == 0, done.stderr
    assert calls.read_text().splitlines()[-1] == "runs watch run-0042"
    assert "run id:     run-0042" in done.stdout
    assert (tmp_path / "build" / "smoke.submitted").is_file()
