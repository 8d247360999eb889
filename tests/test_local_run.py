"""The compiled pipeline run by kfp.local (`satk8s run GRID --local`) on a file:// store: every
node runs once, the report lands in the store, and a second run is all cache hits."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from satk8s.grid.plan import Node, Plan
from satk8s.orchestration.addressed import resolve_config
from satk8s.orchestration.local_estimate import finished_nodes
from satk8s.orchestration.local_run import LOCAL_IMAGES, LocalRun, LocalRunError, run_local

SMALL = {
    "train": {"easy": 12, "medium": 0},
    "eval_id": {"easy": 4, "medium": 0},
    "eval_hard": {"hard": 4},
}


@pytest.fixture(autouse=True)
def pinned_code_version(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Addresses include the code version, by default a hash of satk8s's sources; pin it so an
    edit elsewhere in the tree between the two runs cannot change them. kfp.local's task
    subprocesses inherit the variable; this process reads it afresh (the version is cached)."""
    from satk8s.store.keys import current_code_version

    monkeypatch.setenv("SATK8S_CODE_VERSION", "test-local-run")
    current_code_version.cache_clear()
    yield
    current_code_version.cache_clear()


def assert_all_cached(first: LocalRun, second: LocalRun) -> None:
    assert set(second.nodes) == set(first.nodes)
    for node, record in second.nodes.items():
        assert record["cached"] is True, node
        assert record["out"] == first.nodes[node]["out"], node


class Recorder:
    """A RunProgress that keeps every event."""

    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []
        self.records: dict[str, Any] = {}

    def task_started(self, node: str, step: str) -> None:
        self.events.append(("started", node, step))

    def task_output(self, node: str, line: str) -> None:
        self.events.append(("output", node, line))

    def task_finished(self, node: str, record: Any) -> None:
        self.events.append(("finished", node))
        self.records[node] = record

    def task_failed(self, node: str, log: Path) -> None:
        self.events.append(("failed", node, str(log)))


def cheap_plan(tmp_path: Path) -> Plan:
    """The cheapest plan through kfp.local: two independent prepare nodes."""
    prepare = {"task": "arith", "arith": SMALL}
    nodes = (
        Node("prepare-a", "prepare", "cpu", resolve_config("prepare", prepare)),
        Node("prepare-b", "prepare", "cpu", resolve_config("prepare", {**prepare, "seed": 1})),
    )
    return Plan("cheap", nodes, (), (tmp_path / "default-store").as_uri())


def test_two_prepares_then_all_cache_hits(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    plan = cheap_plan(tmp_path)
    store = (tmp_path / "store").as_uri()
    progress = Recorder()
    first = run_local(plan, store, tmp_path / "work", progress=progress)
    assert [first.nodes[n]["cached"] for n in ("prepare-a", "prepare-b")] == [False, False]
    for record in first.nodes.values():
        assert record["step"] == "prepare"
        assert record["out"].startswith(f"{store}/steps/prepare/")  # --store wins
        assert (Path(record["out"].removeprefix("file://")) / "manifest.json").is_file()
        assert record["summary"]["questions"] == {"train": 12, "eval_id": 4, "eval_hard": 4}

    # kfp.local's output (every task's executor input JSON, its log lines) reached neither
    # stdout nor stderr: it is in one log file per task under the work folder.
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert first.logs.parent == tmp_path / "work" / "logs"
    kfp_tasks = set()
    for node in ("prepare-a", "prepare-b"):
        log = (first.logs / f"{node}.log").read_text()
        # kfp.local names the task by its component (`prepare`, `prepare-2`), the file by node.
        started = re.match(r"\d\d:\d\d:\d\d\.\d{3} - INFO - Executing task '(prepare(-2)?)'\n", log)
        assert started, log[:200]
        kfp_tasks.add(started[1])
        assert '"parameterValues"' in log and f'"node": "{node}"' in log  # the executor input
        assert f"satk8s: {node} (prepare) computed in" in log
        assert f"Task '{started[1]}' finished with status SUCCESS" in log
        assert "\x1b[" not in log
    assert kfp_tasks == {"prepare", "prepare-2"}
    pipeline_lines = (first.logs / "kfp-local.log").read_text()
    assert "Running pipeline: 'satk8s-cheap'" in pipeline_lines
    assert "Pipeline 'satk8s-cheap' finished with status SUCCESS" in pipeline_lines
    assert sorted(line.split('"node": "')[1].split('"')[0] for line in
                  (first.logs / "tasks.jsonl").read_text().splitlines()) == ["prepare-a", "prepare-b"]  # fmt: skip

    # Every task started, printed and finished once, in that order, reported by node id.
    for node in ("prepare-a", "prepare-b"):
        mine = [e for e in progress.events if e[1] == node]
        assert mine[0] == ("started", node, "prepare") and mine[-1] == ("finished", node)
        assert any(e[0] == "output" for e in mine)
        assert progress.records[node] == first.nodes[node]
    assert [e[0] for e in progress.events].count("finished") == 2
    assert first.nodes["prepare-a"]["out"] != first.nodes["prepare-b"]["out"]
    assert first.report is None
    # The YAML that ran is the compiled pipeline, with the local placeholder images.
    spec = next(yaml.safe_load_all(first.pipeline.read_text()))
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {LOCAL_IMAGES["cpu"]}
    # kfp.local removed only its own workspace; our work dir keeps the YAML and its outputs.
    assert not list((tmp_path / "work").glob("kfp-workspace-*"))
    assert (tmp_path / "work" / "kfp-outputs").is_dir()

    assert finished_nodes(dataclasses.replace(plan, store_root=store)) == {"prepare-a", "prepare-b"}
    assert finished_nodes(plan) == set()  # the plan's own store holds nothing
    second = run_local(plan, store, tmp_path / "work")
    assert_all_cached(first, second)
    assert second.seconds < first.seconds
    assert second.logs != first.logs  # one log folder per run


@pytest.fixture(scope="module")
def chain(tiny_model_dir: Path) -> Plan:
    """tiny -> prepare -> generate -> saturate -> entropy, random and oracle signals ->
    calibrate (two joined scores) -> a dataset -> base evaluation -> report, smoke-sized.
    `tiny_model_dir` builds the default tiny model first, so the tiny node only copies it."""
    model = {"model": "<tiny>"}

    def node(id_: str, step: str, settings: dict[str, Any], **inputs: tuple[str, ...]) -> Node:
        role = {"generate": "generate", "evaluate": "evaluate"}.get(step, "cpu")
        model_from = "tiny" if "model" in settings else None
        config = resolve_config(step, settings)
        return Node(id_, step, role, config, dict(inputs), model_from=model_from)

    sampling = {"n": 4, "max_new_tokens": 40, "seed": 3}
    nodes = (
        node("tiny", "tiny", {}),
        node("prepare", "prepare", {"task": "arith", "arith": SMALL}),
        node(
            "generate",
            "generate",
            {**model, "shard_size": 8, "sampling": sampling},
            questions=("prepare",),
        ),
        node("saturate", "saturate", {}, questions=("prepare",), samples=("generate",)),
        node("signal-entropy", "signals", {**model, "signal": "entropy"}, kept=("saturate",)),
        node("signal-random", "signals", {"signal": "random"}, kept=("saturate",)),
        node(
            "signal-external_judge",
            "signals",
            {"signal": "external_judge", "external_judge": {"kind": "oracle"}},
            kept=("saturate",),
        ),
        node(
            "calibrate",
            "calibrate",
            {"n_boot": 20},
            scores=("signal-entropy", "signal-random"),
            judge=("signal-external_judge",),
        ),
        node(
            "dataset-best_of_n-entropy",
            "build_dataset",
            {"algorithm": "best_of_n"},
            kept=("saturate",),
            scores=("signal-entropy",),
        ),
        node(
            "evaluate-base",
            "evaluate",
            {**model, "eval": {"max_new_tokens": 40, "n_boot": 100}},
            questions=("prepare",),
        ),
        node(
            "report",
            "report",
            {"title": "local run test"},
            evaluations=("evaluate-base",),
            saturation=("saturate",),
            calibration=("calibrate",),
        ),
    )
    return Plan("local-test", nodes, (), "file:///nonexistent/overridden")


@pytest.mark.slow  # every task is a subprocess; generate, signals and evaluate import torch
def test_pipeline_end_to_end_then_all_cache_hits(chain: Plan, tmp_path: Path) -> None:
    store = (tmp_path / "store").as_uri()
    first = run_local(chain, store, tmp_path / "work")
    assert set(first.nodes) == {n.id for n in chain.nodes}
    assert not any(r["cached"] for r in first.nodes.values())
    for node in chain.nodes:
        assert first.nodes[node.id]["step"] == node.step
        assert first.nodes[node.id]["out"].startswith(f"{store}/steps/{node.step}/")

    # The model came from the tiny node's output: the generate manifest names it.
    generated = Path(first.nodes["generate"]["out"].removeprefix("file://"))
    manifest = json.loads((generated / "manifest.json").read_text())
    assert manifest["config"]["model"] == first.nodes["tiny"]["out"]
    # calibrate got both score locations, joined by the pipeline.
    calibrated = Path(first.nodes["calibrate"]["out"].removeprefix("file://"))
    calibration = json.loads((calibrated / "manifest.json").read_text())
    assert calibration["inputs"]["scores"] == ",".join(
        first.nodes[n]["out"] for n in ("signal-entropy", "signal-random")
    )

    report_out = Path(first.nodes["report"]["out"].removeprefix("file://"))
    assert first.report == report_out / "report.md"
    assert "|" in first.report.read_text()  # the results table
    assert (report_out / "report.html").read_text().lstrip().lower().startswith("<!doctype html")

    second = run_local(chain, store, tmp_path / "work")
    assert_all_cached(first, second)
    assert second.report == first.report
    # A cache hit reads only the manifest (no torch import): the run is much faster.
    assert second.seconds < first.seconds / 3, (first.seconds, second.seconds)
    print(
        f"\nkfp.local: first run {first.seconds:.1f}s, all-cached run {second.seconds:.1f}s "
        f"for {len(second.nodes)} tasks; overhead per task {first.overhead_per_task:.2f}s / "
        f"{second.overhead_per_task:.2f}s"
    )


def failing_plan(tmp_path: Path) -> Plan:
    """A good prepare node and one whose config names a task that does not exist: its step
    fails inside kfp.local's task subprocess."""
    good = resolve_config("prepare", {"task": "arith", "arith": SMALL})
    nodes = (
        Node("prepare", "prepare", "cpu", good),
        Node("broken", "prepare", "cpu", {**good, "task": "no-such-task"}),
    )
    return Plan("failing", nodes, (), (tmp_path / "store").as_uri())


def test_a_failing_task_stops_the_run_with_its_log_tail_and_path(tmp_path: Path) -> None:
    progress = Recorder()
    with pytest.raises(LocalRunError) as caught:
        run_local(failing_plan(tmp_path), None, tmp_path / "work", progress=progress)
    err = caught.value
    assert err.node == "broken"
    assert err.log is not None and err.log.name == "broken.log"
    assert err.log.parent.parent == tmp_path / "work" / "logs"
    log = err.log.read_text()
    assert "Traceback (most recent call last):" in log
    assert "finished with status FAILURE" in log
    # The tail is the task's own last lines: the error that stopped it, at the end.
    assert err.tail and "no-such-task" in err.tail[-1]
    assert all(line in log for line in err.tail)
    # kfp.local picks the order of independent tasks.
    assert err.finished in (["prepare"], [])
    message = str(err)
    assert message.startswith("task 'broken' (step prepare) failed after ")
    assert f"Its whole log: {err.log}" in message and err.tail[-1] in message
    assert ("failed", "broken", str(err.log)) in progress.events


def cli_run(plan: Plan, workdir: Path) -> tuple[int, list[str]]:
    """`satk8s run` on a plan, its output as a pipe or a CI log receives it (not a terminal)."""
    import typer
    from rich.console import Console

    from satk8s.cli.pipeline_cmd import run_plan_locally

    out = io.StringIO()
    console = Console(file=out, width=100, highlight=False, emoji=False)
    try:
        run_plan_locally(plan, None, workdir, console=console)
        code = 0
    except typer.Exit as exit_:
        code = exit_.exit_code
    return code, out.getvalue().splitlines()


def test_the_console_shows_each_task_once_with_its_status_time_and_result(
    tmp_path: Path,
) -> None:
    code, lines = cli_run(cheap_plan(tmp_path), tmp_path / "work")
    assert code == 0, lines
    assert lines[0] == (
        "cheap: 2 tasks on CPU through kfp.local, one at a time (2 prepare); "
        "0 already in the store."  # no measured time for this grid
    )
    task_lines = lines[1:3]
    for node in ("prepare-a", "prepare-b"):
        mine = [line for line in lines if node in line]
        assert len(mine) == 1, lines
        assert re.fullmatch(
            rf"\[[12]/2\] {node}  +\d+\.\d s  computed  4 eval_hard, 4 eval_id, 12 train questions",
            mine[0],
        )
        assert mine[0] in task_lines
    assert re.fullmatch(r"cheap: 2 tasks in \d+\.\d s: 2 computed, 0 cache hits .*", lines[3])
    assert lines[4].startswith(f"logs:     {tmp_path / 'work' / 'logs'}/cheap-")
    assert lines[5] == f"pipeline: {tmp_path / 'work' / 'cheap.yaml'}"
    assert len(lines) == 6

    code, again = cli_run(cheap_plan(tmp_path), tmp_path / "work")
    assert again[0].endswith("(2 prepare); 2 already in the store.")
    assert sum("  cached    4 eval_hard, 4 eval_id, 12 train" in line for line in again) == 2


def test_a_failing_task_prints_its_log_tail_and_path_and_exits_1(tmp_path: Path) -> None:
    code, lines = cli_run(failing_plan(tmp_path), tmp_path / "work")
    assert code == 1
    failed = [line for line in lines if " broken " in line and "FAILED" in line]
    assert len(failed) == 1, lines
    log = Path(failed[0].split("log: ")[1])
    assert log.name == "broken.log" and log.is_file()
    error = lines.index(next(line for line in lines if line.startswith("error: task 'broken'")))
    assert lines[error + 1] == "The last lines of its log:"
    tail = lines[error + 2 : lines.index(f"Its whole log: {log}")]
    assert tail and all(line.startswith("    ") for line in tail)
    assert "no-such-task" in tail[-1]
    assert lines[-1] in ("Steps finished before it: prepare.", "Steps finished before it: none.")


def test_the_estimate_counts_measured_steps_cache_hits_and_the_tiny_build() -> None:
    from satk8s.orchestration.local_estimate import (
        CACHE_HIT_SECONDS,
        MEASURED_SECONDS,
        TASK_OVERHEAD_SECONDS,
        TINY_BUILD_SECONDS,
        estimate_seconds,
    )

    nodes = tuple(Node(f"n-{step}", step, "cpu", {}) for step in ("tiny", "generate", "train"))
    plan = Plan("smoke", nodes, (), "file:///s")
    measured = MEASURED_SECONDS["smoke"]
    work = sum(measured[s] + TASK_OVERHEAD_SECONDS for s in ("tiny", "generate", "train"))
    assert estimate_seconds(plan, set(), tiny_built=True) == pytest.approx(work)
    assert estimate_seconds(plan, set(), tiny_built=False) == pytest.approx(
        work + TINY_BUILD_SECONDS
    )
    done = {"n-tiny", "n-generate"}
    assert estimate_seconds(plan, done, tiny_built=True) == pytest.approx(
        2 * CACHE_HIT_SECONDS + measured["train"] + TASK_OVERHEAD_SECONDS
    )
    assert estimate_seconds(Plan("arith", nodes, (), "file:///s"), set(), True) is None
