"""A Plan compiled into one Kubeflow pipeline: one task per node, wired by output locations,
compute profiles on the right tasks (in the platform spec), no secret values, a YAML that loads
back into the pipeline-spec proto and is byte-identical on every compile; the component runner
and the `grid compile` / `run` commands."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from typer.testing import CliRunner

from satk8s.cli.pipeline_cmd import compile_cmd, report_summary, run
from satk8s.cluster.settings import ClusterSettings
from satk8s.errors import ConfigError
from satk8s.grid.plan import Cell, Node, Plan
from satk8s.orchestration.component_runner import (
    metric_values,
    run_component,
    write_documents,
    write_metrics,
)
from satk8s.pipelines.builder import apply_profile, check_plan, compile_plan

REPO = Path(__file__).resolve().parents[1]
IMAGES = {
    "gpu": "registry.example/satk8s-gpu@sha256:" + "a" * 64,
    "cpu": "registry.example/satk8s-cpu@sha256:" + "b" * 64,
}
SECRET_VALUE = "s3cr3t-value-never-in-yaml"
GPU = {
    "accelerator_type": "nvidia.com/gpu",
    "accelerator_count": 2,
    "cpu": "8",
    "memory": "64Gi",
    "node_selector": {"satk8s.io/pool": "gpu", "cloud.google.com/gke-accelerator": "h100"},
    "tolerations": [
        {"key": "nvidia.com/gpu", "operator": "Exists", "value": "", "effect": "NoSchedule"}
    ],
    "shm_size": "16Gi",
    "secrets": [
        {"secret": "satk8s-s3", "optional": True, "env": {"AWS_SECRET_ACCESS_KEY": "AWS_SAK"}},
        {"secret": "satk8s-hub-token", "optional": False, "env": {"HF_TOKEN": "HF_TOKEN"}},
    ],
    "config_maps": [
        {"config_map": "satk8s-settings", "optional": True, "env": {"s3Region": "S3_REGION"}}
    ],
    "pod_labels": {"kueue.x-k8s.io/queue-name": "satk8s"},
    "retries": 2,
    "backoff_duration": "60s",
    "backoff_factor": 2.0,
    "backoff_max_duration": "3600s",
}
CPU = {"accelerator_type": "", "accelerator_count": 0, "cpu": "2", "memory": "8Gi", "retries": 1}


def small_plan(profiles: dict[str, dict[str, Any]] | None = None) -> Plan:
    """tiny -> prepare -> generate (model from tiny) -> saturate -> two signals -> calibrate
    (two joined upstreams) -> report; configs are opaque JSON to the builder."""
    nodes = (
        Node("tiny", "tiny", "cpu", {"seed": 0}),
        Node("prepare", "prepare", "cpu", {"task": "arith", "arith": {"train": {"easy": 3}}}),
        Node(
            "generate",
            "generate",
            "generate",
            {"model": "<tiny>", "sampling": {"n": 4, "stop": ["\n\nQuestion:"]}},
            {"questions": ("prepare",)},
            model_from="tiny",
        ),
        Node(
            "saturate",
            "saturate",
            "cpu",
            {"threshold": 1.0},
            {"questions": ("prepare",), "samples": ("generate",)},
        ),
        Node("signal-entropy", "signals", "judge", {"signal": "entropy"}, {"kept": ("saturate",)}),
        Node("signal-random", "signals", "cpu", {"signal": "random"}, {"kept": ("saturate",)}),
        Node(
            "calibrate",
            "calibrate",
            "cpu",
            {"n_boot": 10},
            {"scores": ("signal-entropy", "signal-random"), "judge": ("signal-random",)},
        ),
        Node(
            "report",
            "report",
            "cpu",
            {"title": "t"},
            {"evaluations": ("prepare",), "calibration": ("calibrate",)},
        ),
    )
    cells = (Cell("random", "best_of_n", 0, "report"),)
    profiles = profiles if profiles is not None else {"generate": GPU, "judge": GPU, "cpu": CPU}
    return Plan("unit test", nodes, cells, "file:///tmp/satk8s-store", profiles)


def load_docs(path: Path) -> list[dict[str, Any]]:
    return list(yaml.safe_load_all(path.read_text()))


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = compile_plan(small_plan(), tmp_path_factory.mktemp("c") / "p.yaml", IMAGES)
    spec, platform = load_docs(path)
    tasks = spec["root"]["dag"]["tasks"]
    by_node = {t["taskInfo"]["name"]: (key, t) for key, t in tasks.items()}
    return {"path": path, "spec": spec, "platform": platform, "tasks": by_node}


def executor(compiled: dict[str, Any], node: str) -> str:
    _, task = compiled["tasks"][node]
    return compiled["spec"]["components"][task["componentRef"]["name"]]["executorLabel"]


def container(compiled: dict[str, Any], node: str) -> dict[str, Any]:
    return compiled["spec"]["deploymentSpec"]["executors"][executor(compiled, node)]["container"]


def k8s(compiled: dict[str, Any], node: str) -> dict[str, Any]:
    executors = compiled["platform"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    return executors.get(executor(compiled, node), {})


# -- the DAG -----------------------------------------------------------------------------------


def test_one_task_per_node_named_by_node_id(compiled: dict[str, Any]) -> None:
    plan = small_plan()
    assert len(compiled["spec"]["root"]["dag"]["tasks"]) == len(plan.nodes) == 8
    assert set(compiled["tasks"]) == {n.id for n in plan.nodes}
    assert compiled["spec"]["pipelineInfo"]["name"] == "satk8s-unit-test"
    params = compiled["spec"]["root"]["inputDefinitions"]["parameters"]
    assert params["store_root"]["defaultValue"] == "file:///tmp/satk8s-store"
    assert params["force"] == {
        "defaultValue": False,
        "isOptional": True,
        "parameterType": "BOOLEAN",
    }


def test_kfp_caching_is_off_on_every_task(compiled: dict[str, Any]) -> None:
    for _, task in compiled["tasks"].values():
        assert not task.get("cachingOptions", {}).get("enableCache", False)


def test_tasks_are_wired_by_upstream_output_locations(compiled: dict[str, Any]) -> None:
    tasks = compiled["tasks"]
    key = {node: tasks[node][0] for node in tasks}
    generate = tasks["generate"][1]["inputs"]["parameters"]
    assert generate["questions"]["taskOutputParameter"] == {
        "outputParameterKey": "Output",
        "producerTask": key["prepare"],
    }
    assert generate["model_location"]["taskOutputParameter"]["producerTask"] == key["tiny"]
    assert generate["store_root"] == {"componentInputParameter": "store_root"}
    assert generate["force"] == {"componentInputParameter": "force"}
    assert generate["node"]["runtimeValue"]["constant"] == "generate"
    # The config is exact JSON text with sorted keys (kfp.local would float a list of ints).
    config = generate["config_json"]["runtimeValue"]["constant"]
    assert json.loads(config) == small_plan().node("generate").config
    assert config == json.dumps(json.loads(config), sort_keys=True, separators=(",", ":"))
    # Two upstreams joined with a comma: one placeholder per upstream output.
    calibrate = tasks["calibrate"][1]
    scores = calibrate["inputs"]["parameters"]["scores"]["runtimeValue"]["constant"]
    parts = scores.split(",")
    assert len(parts) == 2
    for part, node in zip(parts, ("signal-entropy", "signal-random"), strict=True):
        channel = f"pipelinechannel--{key[node]}-Output"
        assert part == "{{$.inputs.parameters['" + channel + "']}}"
        assert calibrate["inputs"]["parameters"][channel]["taskOutputParameter"] == {
            "outputParameterKey": "Output",
            "producerTask": key[node],
        }
    assert sorted(calibrate["dependentTasks"]) == sorted(
        [key["signal-entropy"], key["signal-random"]]
    )


def test_images_by_role(compiled: dict[str, Any]) -> None:
    assert container(compiled, "generate")["image"] == IMAGES["gpu"]
    assert container(compiled, "signal-entropy")["image"] == IMAGES["gpu"]
    for node in ("tiny", "prepare", "saturate", "signal-random", "calibrate", "report"):
        assert container(compiled, node)["image"] == IMAGES["cpu"]
    # No pip install in the command: the image ships satk8s and the pinned kfp.
    command = " ".join(container(compiled, "generate")["command"])
    assert "pip install" not in command
    assert "run_component" in command


def test_gpu_resources_only_on_gpu_tasks(compiled: dict[str, Any]) -> None:
    resources = container(compiled, "generate")["resources"]
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert resources["accelerator"]["resourceCount"] == "2"
    assert resources["resourceCpuRequest"] == resources["resourceCpuLimit"] == "8"
    assert resources["resourceMemoryRequest"] == resources["resourceMemoryLimit"] == "64Gi"
    cpu = container(compiled, "saturate")["resources"]
    assert "accelerator" not in cpu
    assert cpu["resourceCpuRequest"] == "2"
    assert cpu["resourceMemoryLimit"] == "8Gi"


def test_platform_spec_on_the_right_tasks(compiled: dict[str, Any]) -> None:
    for node in ("generate", "signal-entropy"):
        spec = k8s(compiled, node)
        assert spec["nodeSelector"]["labels"] == {
            "cloud.google.com/gke-accelerator": "h100",
            "satk8s.io/pool": "gpu",
        }
        assert spec["tolerations"] == [
            {"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}
        ]
        assert spec["emptyDirMounts"] == [
            {"medium": "Memory", "mountPath": "/dev/shm", "sizeLimit": "16Gi", "volumeName": "dshm"}
        ]
        secrets = {s["secretName"]: s for s in spec["secretAsEnv"]}
        assert set(secrets) == {"satk8s-s3", "satk8s-hub-token"}
        assert secrets["satk8s-s3"]["keyToEnv"] == [
            {"envVar": "AWS_SAK", "secretKey": "AWS_SECRET_ACCESS_KEY"}
        ]
        assert secrets["satk8s-s3"]["optional"] is True
        assert spec["configMapAsEnv"][0]["configMapName"] == "satk8s-settings"
        assert spec["podMetadata"]["labels"] == {"kueue.x-k8s.io/queue-name": "satk8s"}
    # CPU tasks: no GPU pool, no toleration, no shm, no secrets (the CPU profile has none).
    for node in ("tiny", "prepare", "saturate", "signal-random", "calibrate", "report"):
        assert k8s(compiled, node) == {}


def test_retry_policy_from_the_profile(compiled: dict[str, Any]) -> None:
    assert compiled["tasks"]["generate"][1]["retryPolicy"] == {
        "backoffDuration": "60s",
        "backoffFactor": 2.0,
        "backoffMaxDuration": "3600s",
        "maxRetryCount": 2,
    }
    assert compiled["tasks"]["saturate"][1]["retryPolicy"]["maxRetryCount"] == 1


def test_no_secret_value_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Values a careless builder could read from the environment never reach the YAML.
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SAK", "HF_TOKEN", "OPENAI_API_KEY"):
        monkeypatch.setenv(name, SECRET_VALUE)
    text = compile_plan(small_plan(), tmp_path / "p.yaml", IMAGES).read_text()
    assert SECRET_VALUE not in text
    assert "satk8s-hub-token" in text  # the secret's name is there, its value is not


def test_artifacts_for_the_ui(compiled: dict[str, Any]) -> None:
    components = compiled["spec"]["components"]

    def artifacts(node: str) -> dict[str, str]:
        _, task = compiled["tasks"][node]
        outputs = components[task["componentRef"]["name"]]["outputDefinitions"]["artifacts"]
        return {name: a["artifactType"]["schemaTitle"] for name, a in outputs.items()}

    assert artifacts("generate") == {"metrics": "system.Metrics"}
    assert artifacts("calibrate") == {"metrics": "system.Metrics", "calibration": "system.Markdown"}
    assert artifacts("report") == {
        "metrics": "system.Metrics",
        "report_markdown": "system.Markdown",
        "report_html": "system.HTML",
    }


# -- the YAML ----------------------------------------------------------------------------------


def test_yaml_loads_back_into_the_protos(compiled: dict[str, Any]) -> None:
    spec = json_format.ParseDict(compiled["spec"], pipeline_spec_pb2.PipelineSpec())
    assert len(spec.root.dag.tasks) == 8
    assert spec.sdk_version == "kfp-2.17.0"
    platform = json_format.ParseDict(compiled["platform"], pipeline_spec_pb2.PlatformSpec())
    assert "kubernetes" in platform.platforms


def test_same_documents_as_kfps_own_compiler(compiled: dict[str, Any], tmp_path: Path) -> None:
    from kfp import compiler

    from satk8s.pipelines.builder import build_pipeline

    theirs = tmp_path / "kfp.yaml"
    compiler.Compiler().compile(build_pipeline(small_plan(), IMAGES), package_path=str(theirs))
    assert load_docs(theirs) == [compiled["spec"], compiled["platform"]]
    ours = compiled["path"].read_text()
    assert ours.startswith("# PIPELINE DEFINITION\n# Name: satk8s-unit-test\n")


def test_recompile_is_byte_identical(compiled: dict[str, Any], tmp_path: Path) -> None:
    # Profile dicts in another key order give the same bytes too.
    shuffled = {
        role: dict(reversed(list(profile.items())))
        for role, profile in {"cpu": CPU, "judge": GPU, "generate": GPU}.items()
    }
    again = compile_plan(small_plan(shuffled), tmp_path / "again.yaml", IMAGES)
    assert again.read_bytes() == compiled["path"].read_bytes()


def test_recompile_in_another_process_is_byte_identical(
    compiled: dict[str, Any], tmp_path: Path
) -> None:
    # Another interpreter with another hash seed: no set or hash ordering leaks into the YAML.
    out = tmp_path / "other.yaml"
    code = (
        "import sys; sys.path.insert(0, 'tests');"
        "from pathlib import Path;"
        "from test_pipeline_compile import IMAGES, small_plan;"
        "from satk8s.pipelines.builder import compile_plan;"
        f"compile_plan(small_plan(), Path({str(out)!r}), IMAGES)"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env=env)
    assert out.read_bytes() == compiled["path"].read_bytes()


# -- images ------------------------------------------------------------------------------------


def test_compile_without_digests_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SATK8S_IMAGE_DIGESTS", str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match="make images REGISTRY="):
        compile_plan(small_plan(), tmp_path / "p.yaml")
    assert not (tmp_path / "p.yaml").exists()


def test_compile_with_an_images_file(tmp_path: Path) -> None:
    digests = tmp_path / "digests.json"
    digests.write_text(json.dumps(IMAGES))
    path = compile_plan(small_plan(), tmp_path / "p.yaml", digests)
    images = {
        e["container"]["image"] for e in load_docs(path)[0]["deploymentSpec"]["executors"].values()
    }
    assert images == set(IMAGES.values())
    # A tag is not a pin: rejected.
    digests.write_text(json.dumps({**IMAGES, "gpu": "registry.example/satk8s-gpu:latest"}))
    with pytest.raises(ConfigError, match="not pinned by digest"):
        compile_plan(small_plan(), tmp_path / "q.yaml", digests)


# -- checks ------------------------------------------------------------------------------------


def test_plan_checks_name_the_node() -> None:
    plan = small_plan()
    late = Plan(plan.grid, (plan.nodes[2], *plan.nodes[:2], *plan.nodes[3:]), (), "file:///x")
    with pytest.raises(ConfigError, match="plan node 'generate'.*not earlier nodes"):
        check_plan(late)
    bad_input = Node("x", "saturate", "cpu", {}, {"kept": ("prepare",)})
    with pytest.raises(ConfigError, match="step 'saturate' has no inputs"):
        check_plan(Plan("g", (plan.nodes[1], bad_input), (), "file:///x"))
    with pytest.raises(ConfigError, match="unknown role"):
        check_plan(Plan("g", (Node("p", "prepare", "tpu", {}),), (), "file:///x"))


def test_profile_with_unknown_key_fails() -> None:
    with pytest.raises(ConfigError, match=r"profiles.cpu.*unknown keys \['gpus'\]"):
        apply_profile(object(), {"gpus": 1}, "profiles.cpu")
    with pytest.raises(ConfigError, match="secrets\\[0\\]"):
        apply_profile(object(), {"secrets": [{"secret": "s"}]}, "profiles.cpu")


# -- the component runner ----------------------------------------------------------------------


class FakeArtifact:
    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.metadata: dict[str, Any] = {}


def test_metric_values_flatten_numbers() -> None:
    summary = {
        "questions": {"train": 24, "eval_id": 4},
        "cached": True,
        "seconds": 1.5,
        "note": "text is skipped",
        "kappa": float("nan"),
        "histogram": [1, 2],
    }
    assert metric_values(summary) == {
        "cached": 1.0,
        "questions.eval_id": 4.0,
        "questions.train": 24.0,
        "seconds": 1.5,
    }


def test_metrics_artifact_always_has_a_file(tmp_path: Path) -> None:
    metrics = FakeArtifact(tmp_path / "deep" / "metrics")
    write_metrics(metrics, {"out": "file:///s/x", "cached": False, "rows": 3})
    assert metrics.metadata == {"cached": 0.0, "rows": 3.0}
    record = json.loads(Path(metrics.path).read_text())
    assert record == {
        "cached": False,
        "metrics": {"cached": 0.0, "rows": 3.0},
        "out": "file:///s/x",
    }


def test_report_documents_come_from_the_store(tmp_path: Path) -> None:
    out = tmp_path / "report-output"
    out.mkdir()
    (out / "report.md").write_text("# Results\n| a | b |\n")
    (out / "report.html").write_text("<html><body>Results</body></html>")
    markdown, html = FakeArtifact(tmp_path / "md"), FakeArtifact(tmp_path / "html")
    write_documents("report", out.as_uri(), markdown, html)
    assert Path(markdown.path).read_text() == "# Results\n| a | b |\n"
    assert Path(html.path).read_text() == "<html><body>Results</body></html>"


def test_unresolved_placeholder_fails_loudly(tmp_path: Path) -> None:
    placeholder = "{{$.inputs.parameters['pipelinechannel--signals-Output']}},file:///x"
    with pytest.raises(RuntimeError, match="input 'scores' holds an unresolved pipeline"):
        run_component(
            "calibrate", "calibrate", tmp_path.as_uri(), "{}", False, "",
            {"scores": placeholder, "judge": "file:///y"},
        )  # fmt: skip


@pytest.fixture
def fresh_code_version() -> Iterator[None]:
    """This process may have cached its code version before a test sets SATK8S_CODE_VERSION;
    forget it before and after, so the test and later tests each see their own."""
    from satk8s.store.keys import current_code_version

    current_code_version.cache_clear()
    yield
    current_code_version.cache_clear()


@pytest.mark.usefixtures("fresh_code_version")
def test_cache_hit_imports_no_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A finished step returns through the component runner without importing torch."""
    from satk8s.orchestration.addressed import resolve_config

    monkeypatch.setenv("SATK8S_CODE_VERSION", "test-cache-hit")
    store = tmp_path.as_uri()
    config = json.dumps(
        resolve_config(
            "prepare",
            {"arith": {"train": {"easy": 3, "medium": 0}, "eval_id": {"easy": 2, "medium": 0}}},
        )
    )
    first = run_component("prepare", "prepare", store, config, False, "", {})
    code = (
        "import json, sys;"
        "from satk8s.orchestration.component_runner import run_component;"
        f"out = run_component('prepare', 'prepare', {store!r}, {config!r}, False, '', {{}});"
        "heavy = sorted(m for m in ('torch', 'transformers', 'trl') if m in sys.modules);"
        "print(json.dumps({'out': out, 'heavy': heavy}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=REPO
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"out": first, "heavy": []}
    assert "prepare (prepare) cached" in done.stderr


# -- the commands ------------------------------------------------------------------------------


def test_compile_command_without_images_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer

    app = typer.Typer()
    app.command()(compile_cmd)
    monkeypatch.setenv("SATK8S_IMAGE_DIGESTS", str(tmp_path / "missing.json"))
    result = CliRunner().invoke(app, ["smoke", "-o", str(tmp_path / "p.yaml")])
    assert result.exit_code == 2
    assert "error: " in result.output
    assert "make images" in result.output


def test_run_without_local_points_to_submit() -> None:
    import typer

    app = typer.Typer()
    app.command()(run)
    result = CliRunner().invoke(app, ["smoke"])
    assert result.exit_code == 2
    assert "make submit GRID=smoke" in result.output


def test_the_terminal_summary_keeps_the_table_saturation_and_calibration() -> None:
    markdown = "\n".join(
        [
            "# Results",
            "| model | eval_id |",
            "| base | 73.3 |",
            "![accuracy](accuracy.png)",
            "## More metrics",
            "| base | eval_id | strict_match | 73.3 |",
            "## Saturation",
            "72 training questions; 47 saturated",
            "## Calibration",
            "| entropy | 0.983 |",
        ]
    )
    assert report_summary(markdown) == "\n".join(
        [
            "# Results",
            "| model | eval_id |",
            "| base | 73.3 |",
            "## Saturation",
            "72 training questions; 47 saturated",
            "## Calibration",
            "| entropy | 0.983 |",
            "",
        ]
    )


def test_demo_is_the_smoke_grid_run_locally(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`satk8s demo --workdir W` = `satk8s run smoke --local --store W/store --workdir W/kfp`
    with one thread per task: a first line saying what runs and about how long, one line per
    task, the report's summary, the totals and the paths, well under 150 lines off a terminal."""
    import os

    import satk8s.orchestration.local_run as local_run
    from satk8s.cli.main import app

    environment = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    monkeypatch.setattr(os, "environ", environment)
    calls: list[tuple[Any, ...]] = []
    report = tmp_path / "store" / "steps" / "report" / "k" / "report.md"
    report.parent.mkdir(parents=True)
    report.write_text("# Results\n| base | 73.3 |\n## More metrics\n| long |\n")

    def fake_run_local(
        plan: Plan, store: str | None, workdir: Path, force: bool = False, progress: Any = None
    ) -> Any:
        threads = os.environ["SATK8S_THREADS"]
        calls.append((plan.grid, plan.store_root, store, Path(workdir), force, threads))
        nodes = {}
        for node in plan.nodes:
            progress.task_started(node.id, node.step)
            nodes[node.id] = {"step": node.step, "cached": True, "seconds": 0.1, "out": "o"}
            progress.task_finished(node.id, nodes[node.id])
        return local_run.LocalRun(workdir / "smoke.yaml", nodes, 1.5, report, workdir / "logs")

    monkeypatch.setattr(local_run, "run_local", fake_run_local)
    result = CliRunner().invoke(app, ["demo", "--workdir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    store = (tmp_path / "store").as_uri()
    assert calls == [("smoke", store, None, tmp_path / "kfp", False, "1")]
    lines = result.output.splitlines()
    assert len(lines) < 150
    n = len(_smoke_nodes())
    from satk8s.grid import load_plan
    from satk8s.steps import STEPS

    steps = Counter(n.step for n in load_plan("smoke").nodes)
    per_step = ", ".join(f"{steps[step]} {step}" for step in STEPS if steps[step])
    assert lines[0].startswith(
        f"smoke: {n} tasks on CPU through kfp.local, one at a time ({per_step}); "
        "0 already in the store; about "
    )
    assert " on 2 CPU cores" in lines[0]
    tasks = lines[1 : n + 1]
    assert all(re.fullmatch(rf"\[[ \d]\d/{n}\] \S+ +0\.1 s  cached.*", line) for line in tasks)
    shown = [re.match(rf"\[[ \d]\d/{n}\] (\S+)", line)[1] for line in tasks]  # type: ignore[index]
    assert sorted(shown) == sorted(_smoke_nodes())  # every task once
    assert lines[n + 1 : n + 3] == ["# Results", "| base | 73.3 |"] and "| long |" not in lines
    assert lines[-6].startswith(f"smoke: {n} tasks in 1.5 s: 0 computed, {n} cache hits")
    html = report.with_suffix(".html")
    assert lines[-3:] == [f"report:   {report}", f"HTML:     {html}", f"          {html.as_uri()}"]


def _smoke_nodes() -> list[str]:
    from satk8s.grid import load_plan

    return [n.id for n in load_plan("smoke").nodes]


# -- the real grids ----------------------------------------------------------------------------


CLUSTER = ClusterSettings(
    store_root="s3://acme-satk8s/store",
    s3_endpoint_url="http://minio.storage:9000",
    s3_region="eu-central-1",
    s3_addressing_style="path",
    s3_secret="team-a-s3",
    hub_token_secret="team-a-hf",
    judge_api_key_secret="team-a-judge",
    source="test settings",
)
"""A namespace's satk8s-settings, with Secret names unlike any default."""


@pytest.fixture(scope="module")
def arith(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from satk8s.grid.cluster import load_cluster_plan

    # Qwen3 on GPU node pools (compute/gpu.yaml), external oracle, for a cluster.
    plan = load_cluster_plan("arith", [], CLUSTER)
    path = compile_plan(plan, tmp_path_factory.mktemp("arith") / "arith.yaml", IMAGES)
    spec, platform = load_docs(path)
    tasks = {t["taskInfo"]["name"]: (k, t) for k, t in spec["root"]["dag"]["tasks"].items()}
    return {"plan": plan, "path": path, "spec": spec, "platform": platform, "tasks": tasks}


@pytest.mark.slow  # expanding a real grid loads every step's config module (~10 s)
def test_arith_grid_profiles_on_the_right_tasks(arith: dict[str, Any]) -> None:
    plan: Plan = arith["plan"]
    assert len(arith["spec"]["root"]["dag"]["tasks"]) == len(plan.nodes)
    assert set(arith["tasks"]) == {n.id for n in plan.nodes}
    gpu_roles = {r for r, p in plan.profiles.items() if p["accelerator_count"] > 0}
    assert gpu_roles == {"generate", "judge", "external_judge", "train", "evaluate"}
    seen_roles = set()
    for node in plan.nodes:
        seen_roles.add(node.role)
        resources = container(arith, node.id)["resources"]
        spec = k8s(arith, node.id)
        # The settings' Secrets reach every task, by name, and the store endpoint as env.
        assert {s["secretName"] for s in spec["secretAsEnv"]} == {"team-a-s3", "team-a-hf"}
        env = {e["name"]: e["value"] for e in container(arith, node.id)["env"]}
        assert env == {
            "SATK8S_S3_ADDRESSING_STYLE": "path",
            "SATK8S_S3_ENDPOINT_URL": "http://minio.storage:9000",
            "SATK8S_S3_REGION": "eu-central-1",
            # every task stages, fetches and caches on its scratch volume
            "SATK8S_CACHE": "/scratch/satk8s",
            "HF_HOME": "/scratch/huggingface",
            "XDG_CACHE_HOME": "/scratch/cache",
            "TMPDIR": "/scratch",
        }
        mounts = {m["mountPath"]: m for m in spec["emptyDirMounts"]}
        assert mounts["/scratch"]["sizeLimit"] == plan.profiles[node.role]["scratch_size"]
        if node.role in gpu_roles:
            profile = plan.profiles[node.role]
            assert container(arith, node.id)["image"] == IMAGES["gpu"]
            assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
            assert resources["accelerator"]["resourceCount"] == str(profile["accelerator_count"])
            # the generic preset: GPU feature discovery's product label, no label of our own
            assert "nodeSelector" not in spec
            (term,) = spec["nodeAffinity"]
            assert term["matchExpressions"][0]["key"] == "nvidia.com/gpu.product"
            assert spec["tolerations"][0]["key"] == "nvidia.com/gpu"
            assert mounts["/dev/shm"]["sizeLimit"] == profile["shm_size"]
        else:
            assert container(arith, node.id)["image"] == IMAGES["cpu"]
            assert "accelerator" not in resources
            assert "nodeSelector" not in spec and "tolerations" not in spec
            assert "/dev/shm" not in mounts
    assert {"generate", "judge", "train", "evaluate", "cpu"} <= seen_roles
    train = next(n for n in plan.nodes if n.step == "train")
    assert arith["tasks"][train.id][1]["retryPolicy"]["maxRetryCount"] == 3


@pytest.mark.slow
def test_arith_grid_yaml_has_no_secret_values_and_recompiles_identically(
    arith: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "HF_TOKEN", "OPENAI_API_KEY"):
        monkeypatch.setenv(name, SECRET_VALUE)
    again = compile_plan(arith["plan"], tmp_path / "again.yaml", IMAGES)
    assert again.read_bytes() == arith["path"].read_bytes()
    assert SECRET_VALUE not in again.read_text()
    json_format.ParseDict(arith["spec"], pipeline_spec_pb2.PipelineSpec())


@pytest.mark.slow
def test_smoke_grid_compiles_for_cpu(tmp_path: Path) -> None:
    from satk8s.grid import load_plan

    plan = load_plan("smoke")
    spec, *platform = load_docs(compile_plan(plan, tmp_path / "smoke.yaml", IMAGES))
    assert len(spec["root"]["dag"]["tasks"]) == len(plan.nodes)
    executors = spec["deploymentSpec"]["executors"].values()
    assert not any("accelerator" in e["container"].get("resources", {}) for e in executors)
    # local_cpu has no node pools, tolerations, shm or secrets: no platform spec at all.
    assert platform == []
    report = next(
        t for t in spec["root"]["dag"]["tasks"].values() if t["taskInfo"]["name"] == "report"
    )
    evaluations = report["inputs"]["parameters"]["evaluations"]["runtimeValue"]["constant"]
    assert evaluations.count("{{$.inputs.parameters[") == len(plan.cells) + 1  # cells + base


def test_cheap_caller_lookup_names_the_same_frames() -> None:
    import inspect

    from kfp.dsl import pipeline_task

    from satk8s.pipelines.builder import _cheap_caller_lookup

    def caller() -> list[str]:
        return [frame[3] for frame in pipeline_task.inspect.stack()[:3]]

    expected = [f.function for f in inspect.stack()[:2]]
    with _cheap_caller_lookup():
        names = caller()
        assert pipeline_task.inspect.isfunction(caller)  # everything else is inspect's own
    assert names == ["caller", *expected]
    assert pipeline_task.inspect is inspect


def test_one_component_per_step_taking_the_steps_inputs() -> None:
    import inspect

    from satk8s.components import FUNCTIONS, step_component
    from satk8s.steps import STEPS

    assert set(FUNCTIONS) == set(STEPS)
    common = {"node", "store_root", "config_json", "force", "model_location"}
    for name, step in STEPS.items():
        parameters = inspect.signature(FUNCTIONS[name]).parameters
        strings = {p for p, v in parameters.items() if v.annotation is str} - common
        assert strings == set(step.inputs) | set(step.optional_inputs), name
        for optional in step.optional_inputs:
            assert parameters[optional].default == "", (name, optional)
        for required in step.inputs:
            assert parameters[required].default is inspect.Parameter.empty, (name, required)
        component = step_component(name, IMAGES["cpu"])
        assert component.component_spec.implementation.container.image == IMAGES["cpu"]
