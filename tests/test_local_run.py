"""The compiled pipeline run by kfp.local (`satk8s run GRID --local`) on a file:// store: every
node runs once, the report lands in the store, and a second run is all cache hits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from satk8s.grid.plan import Node, Plan
from satk8s.orchestration.addressed import resolve_config
from satk8s.orchestration.local_run import LOCAL_IMAGES, LocalRun, LocalRunError, run_local

SMALL = {
    "train": {"easy": 12, "medium": 0},
    "eval_id": {"easy": 4, "medium": 0},
    "eval_hard": {"hard": 4},
}


@pytest.fixture(autouse=True)
def pinned_code_version(monkeypatch: pytest.MonkeyPatch) -> None:
    """Addresses include the code version, by default a hash of satk8s's sources; pin it so an
    edit elsewhere in the tree between the two runs cannot change them. kfp.local's task
    subprocesses inherit the variable."""
    monkeypatch.setenv("SATK8S_CODE_VERSION", "test-local-run")


def assert_all_cached(first: LocalRun, second: LocalRun) -> None:
    assert set(second.nodes) == set(first.nodes)
    for node, record in second.nodes.items():
        assert record["cached"] is True, node
        assert record["out"] == first.nodes[node]["out"], node


def test_two_prepares_then_all_cache_hits(tmp_path: Path) -> None:
    """The cheapest plan through kfp.local: two independent prepare nodes."""
    prepare = {"task": "arith", "arith": SMALL}
    nodes = (
        Node("prepare-a", "prepare", "cpu", resolve_config("prepare", prepare)),
        Node("prepare-b", "prepare", "cpu", resolve_config("prepare", {**prepare, "seed": 1})),
    )
    plan = Plan("cheap", nodes, (), (tmp_path / "default-store").as_uri())
    store = (tmp_path / "store").as_uri()
    first = run_local(plan, store, tmp_path / "work")
    assert [first.nodes[n]["cached"] for n in ("prepare-a", "prepare-b")] == [False, False]
    for record in first.nodes.values():
        assert record["step"] == "prepare"
        assert record["out"].startswith(f"{store}/steps/prepare/")  # --store wins
        assert (Path(record["out"].removeprefix("file://")) / "manifest.json").is_file()
    assert first.nodes["prepare-a"]["out"] != first.nodes["prepare-b"]["out"]
    assert first.report is None
    # The YAML that ran is the compiled pipeline, with the local placeholder images.
    spec = next(yaml.safe_load_all(first.pipeline.read_text()))
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {LOCAL_IMAGES["cpu"]}
    # kfp.local removed only its own workspace; our work dir keeps the YAML and its outputs.
    assert not list((tmp_path / "work").glob("kfp-workspace-*"))
    assert (tmp_path / "work" / "kfp-outputs").is_dir()

    second = run_local(plan, store, tmp_path / "work")
    assert_all_cached(first, second)
    assert second.seconds < first.seconds


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


def test_a_failing_task_stops_the_run_with_a_clear_error(tmp_path: Path) -> None:
    good = resolve_config("prepare", {"task": "arith", "arith": SMALL})
    nodes = (
        Node("prepare", "prepare", "cpu", good),
        Node("broken", "prepare", "cpu", {**good, "task": "no-such-task"}),
    )
    plan = Plan("failing", nodes, (), (tmp_path / "store").as_uri())
    # kfp.local picks the order of independent tasks; its task names become node ids.
    failed = r"status FAILURE\. Inner task failed: 'broken'\. Steps finished before it: "
    with pytest.raises(LocalRunError, match=failed + r"(prepare|none)\."):
        run_local(plan, None, tmp_path / "work")
