"""Big grids: compile measures the pipeline and, above the safe size of one run, writes several
runs (parts) that share the store; `satk8s submit` submits them all. The await, publish and
gather tasks that join the parts run here against a real store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from typer.testing import CliRunner

from satk8s.cli.main import app
from satk8s.cluster.settings import ClusterSettings
from satk8s.errors import DataError
from satk8s.grid.cluster import load_cluster_plan
from satk8s.grid.split import SAFE_PACKAGE_BYTES, split_plan
from satk8s.pipelines.builder import build_pipeline, compile_grid, package_bytes

IMAGES = {
    "gpu": "registry.example/satk8s-gpu@sha256:" + "a" * 64,
    "cpu": "registry.example/satk8s-cpu@sha256:" + "b" * 64,
}
SETTINGS = ClusterSettings(
    store_root="s3://acme-satk8s/store",
    s3_secret="satk8s-s3",
    hub_token_secret="satk8s-hub-token",
    s3_endpoint_url="http://minio.kubeflow:9000",
    source="test",
)


def docs(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    spec, *platform = list(yaml.safe_load_all(path.read_text()))
    return spec, (platform[0] if platform else {})


def task_names(spec: dict[str, Any]) -> list[str]:
    return [t["taskInfo"]["name"] for t in spec["root"]["dag"]["tasks"].values()]


@pytest.fixture(scope="module")
def twenty(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    seeds = ",".join(map(str, range(20)))
    plan = load_cluster_plan("arith", [f"seeds=[{seeds}]"], SETTINGS)
    out = tmp_path_factory.mktemp("twenty") / "arith.yaml"
    return {"plan": plan, "compiled": compile_grid(plan, out, IMAGES), "out": out}


@pytest.mark.slow  # a 200-cell grid, compiled whole and in parts (~20 s)
def test_arith_with_20_seeds_is_too_large_for_one_workflow(twenty: dict[str, Any]) -> None:
    plan = twenty["plan"]
    whole = package_bytes(build_pipeline(plan, IMAGES))
    assert len(plan.nodes) == 423 and len(plan.cells) == 200
    # Over etcd's 1.5 MiB request limit and twice Argo's 1 MiB workflow limit, as one run.
    assert whole > 1.5 * 2**20


@pytest.mark.slow
def test_arith_with_20_seeds_compiles_to_parts_each_under_the_limit(twenty: dict[str, Any]) -> None:
    plan, compiled, out = twenty["plan"], twenty["compiled"], twenty["out"]
    assert len(compiled.parts) == 5
    assert all(size <= SAFE_PACKAGE_BYTES for size in compiled.sizes)
    listing = yaml.safe_load(out.read_text())
    assert listing["satk8s_parts"] == 1
    assert [p["file"] for p in listing["parts"]] == [p.name for p in compiled.parts]
    runs: dict[str, str] = {}  # node -> the part that runs it
    for index, path in enumerate(compiled.parts, start=1):
        spec, platform = docs(path)
        json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())  # a valid KFP pipeline
        assert spec["pipelineInfo"]["name"] == f"satk8s-arith-part-{index}-of-5"
        names = task_names(spec)
        for name in names:
            if not name.startswith(("await-", "publish-", "gather-")):
                assert name not in runs, f"{name} runs in two parts"
                runs[name] = path.name
        awaits = [n for n in names if n.startswith("await-")]
        if index == 1:
            assert awaits == [] and "report" in names and "gather-evaluations" in names
        else:
            assert "publish-evaluations" in names and "report" not in names
            # Each awaited node is one part 1 runs (the shared work); no GPU work is repeated.
            assert {a.removeprefix("await-") for a in awaits} <= {
                n.id for n in plan.nodes if n.step not in ("train", "evaluate")
            }
            executors = spec["deploymentSpec"]["executors"]
            tasks = {t["taskInfo"]["name"]: t for t in spec["root"]["dag"]["tasks"].values()}
            for name in awaits:
                label = spec["components"][tasks[name]["componentRef"]["name"]]["executorLabel"]
                container = executors[label]["container"]
                assert container["image"] == IMAGES["cpu"]
                assert "accelerator" not in container.get("resources", {})
                assert container["resources"]["resourceMemoryRequest"] == "1Gi"
    assert set(runs) == {n.id for n in plan.nodes}  # every node runs, in exactly one part


@pytest.mark.slow
def test_part_one_reports_on_every_evaluation_in_the_grids_order(twenty: dict[str, Any]) -> None:
    plan, compiled = twenty["plan"], twenty["compiled"]
    spec, _ = docs(compiled.parts[0])
    tasks = {t["taskInfo"]["name"]: t for t in spec["root"]["dag"]["tasks"].values()}
    gather = tasks["gather-evaluations"]["inputs"]["parameters"]["config_json"]
    config = json.loads(gather["runtimeValue"]["constant"])
    assert config["order"] == list(plan.node("report").inputs["evaluations"])
    assert config["parts"] == [2, 3, 4, 5]
    assert len(config["own"]) == 1 + 40  # the base model and part 1's 40 cells
    source = tasks["report"]["inputs"]["parameters"]["evaluations"]["taskOutputParameter"]
    assert source["outputParameterKey"] == "Output"


@pytest.mark.slow
def test_a_split_compile_is_deterministic(twenty: dict[str, Any], tmp_path: Path) -> None:
    again = compile_grid(twenty["plan"], tmp_path / "arith.yaml", IMAGES)
    for first, second in zip(twenty["compiled"].parts, again.parts, strict=True):
        assert first.read_bytes() == second.read_bytes()


def test_gpu_lanes_are_shared_out_among_the_parts() -> None:
    plan = load_cluster_plan("arith", ["seeds=[0,1]"], SETTINGS)
    assert plan.gpu_lanes == 4
    assert [p.plan.gpu_lanes for p in split_plan(plan, 3)] == [2, 1, 1]
    assert sum(p.plan.gpu_lanes for p in split_plan(plan, 4)) == 4


# -- the tasks that join the parts, on a real store -----------------------------------------------


def test_await_finds_a_node_at_the_address_its_step_uses(store_root: str, tmp_path: Path) -> None:
    from satk8s.grid import load_plan
    from satk8s.orchestration.addressed import run_addressed
    from satk8s.orchestration.grid_parts import await_output
    from satk8s.pipelines.builder import canonical_config

    plan = load_plan("smoke", ["store.root=" + store_root])
    prepare = plan.node("prepare")
    config = canonical_config(prepare)
    with pytest.raises(DataError, match="prepare at .* not finished after 0.0 h"):
        await_output("prepare", store_root, "prepare", config, "{}", poll_s=0.01, timeout_s=0.05)
    done = run_addressed("prepare", store_root, prepare.config, {})  # what part 1 does
    assert await_output("prepare", store_root, "prepare", config, "{}", timeout_s=1) == done["out"]
    # A node with inputs: its address needs theirs, as the step computes it.
    saturate = plan.node("saturate")
    inputs = json.dumps({"questions": done["out"], "samples": ""})
    with pytest.raises(DataError, match="saturate"):
        await_output(
            "saturate", store_root, "saturate", canonical_config(saturate), inputs, timeout_s=0
        )


def test_gather_waits_for_every_part_of_this_code_version(store_root: str) -> None:
    from satk8s.orchestration.grid_parts import gather_parts, part_uri, publish_part
    from satk8s.store.base import get_store

    order = ["evaluate-base", "evaluate-a-s0", "evaluate-a-s1", "evaluate-b-s0"]
    publish_part(store_root, "g-1", 2, ["evaluate-a-s1", "evaluate-b-s0"], "s3://x/e3,s3://x/e4")
    joined = gather_parts(
        store_root, "g-1", [2], order, ["evaluate-base", "evaluate-a-s0"], "s3://x/e1,s3://x/e2"
    )
    assert joined == "s3://x/e1,s3://x/e2,s3://x/e3,s3://x/e4"
    # A part file written by another code version (a stale compile) is not taken.
    uri = part_uri(store_root, "g-2", 2)
    stale = {"code": "0.0.1+src.old", "evaluations": {"evaluate-b-s0": "s3://old/e"}}
    get_store(uri).write_bytes(uri, json.dumps(stale).encode())
    with pytest.raises(DataError, match="part 2 of grid g-2"):
        gather_parts(
            store_root,
            "g-2",
            [2],
            order[:1] + order[3:],
            ["evaluate-base"],
            "s3://x/e1",
            poll_s=0.01,
            timeout_s=0.05,
        )


# -- submitting every part -------------------------------------------------------------------------


def test_submit_of_a_parts_list_submits_every_part(kfp_server: Any, tmp_path: Path) -> None:
    plan = load_cluster_plan("arith", ["seeds=[0,1]", "signals=[entropy]"], SETTINGS)
    compiled = compile_grid(plan, tmp_path / "arith.yaml", IMAGES, max_bytes=96 * 1024)
    assert len(compiled.parts) >= 2
    env = {"KFP_HOST": kfp_server.host, "KFP_NAMESPACE": "team-a"}

    dry = CliRunner().invoke(
        app, ["submit", str(compiled.path), "--dry-run", "--service-account", "r"], env=env
    )
    assert dry.exit_code == 0, dry.output
    assert dry.output.count("POST ") == len(compiled.parts) and kfp_server.runs == {}

    result = CliRunner().invoke(
        app, ["submit", str(compiled.path), "--service-account", "r"], env=env
    )
    assert result.exit_code == 0, result.output
    assert len(kfp_server.runs) == len(compiled.parts)
    names = sorted(r["display_name"].split()[0] for r in kfp_server.runs.values())
    count = len(compiled.parts)
    assert names == [f"satk8s-arith-part-{i}-of-{count}" for i in range(1, count + 1)]
    assert result.output.startswith("run id:     run-0001\n")
    assert f"part 1 of {count}: the shared work and the report" in result.output
    assert f"part {count} of {count}: run-000{count}" in result.output
