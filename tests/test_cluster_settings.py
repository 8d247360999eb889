"""Cluster settings: the chart's `satk8s-settings` ConfigMap (or a file exported from it) drives
what `satk8s grid compile` / `satk8s submit` produce for a cluster: the store, the Secrets and
their keys, the store endpoint. Read through the loopback Kubernetes API (`tests/kube_fake.py`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from satk8s.cli.main import app
from tests.kube_fake import NS, STORE_BUCKET, FakeCluster, kubeconfig, settings_data

IMAGES = {
    "gpu": "registry.example/satk8s-gpu@sha256:" + "a" * 64,
    "cpu": "registry.example/satk8s-cpu@sha256:" + "b" * 64,
}


@pytest.fixture
def images(tmp_path: Path) -> Path:
    path = tmp_path / "digests.json"
    path.write_text(json.dumps(IMAGES))
    return path


@pytest.fixture
def kube_env(cluster: FakeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The environment of a user whose kubeconfig reaches the cluster and whose runs go to NS."""
    env = {"KUBECONFIG": str(kubeconfig(tmp_path, cluster.port)), "KFP_NAMESPACE": NS}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def _invoke(args: list[str], env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(app, args, env=env)


def _compile(args: list[str], out: Path) -> tuple[dict[str, Any], dict[str, Any], str]:
    result = _invoke(["grid", "compile", *args, "-o", str(out)])
    assert result.exit_code == 0, result.output
    spec, *platform = list(yaml.safe_load_all(out.read_text()))
    return spec, (platform[0] if platform else {}), out.read_text()


def _executors(platform: dict[str, Any]) -> dict[str, Any]:
    return platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


# -- the placeholder store ----------------------------------------------------------------------


def test_no_compiled_pipeline_names_a_placeholder_store(
    cluster: FakeCluster, kube_env: dict, images: Path, tmp_path: Path
) -> None:
    spec, _, text = _compile(["arith", "--images", str(images)], tmp_path / "arith.yaml")

    assert "s3://satk8s/store" not in text
    store = spec["root"]["inputDefinitions"]["parameters"]["store_root"]["defaultValue"]
    assert store == f"s3://{STORE_BUCKET}/satk8s"  # satk8s-settings' storeRoot


def test_compiling_for_a_cluster_without_a_store_fails_saying_how_to_set_one(
    cluster: FakeCluster, kube_env: dict, images: Path, tmp_path: Path
) -> None:
    cluster.configmaps["satk8s-settings"]["storeRoot"] = ""
    out = tmp_path / "arith.yaml"

    result = _invoke(["grid", "compile", "arith", "--images", str(images), "-o", str(out)])

    assert result.exit_code == 2, result.output
    assert "no store for the cluster" in result.output
    assert f"satk8s-settings in namespace {NS} has no storeRoot" in result.output
    assert "--set store.root=s3://" in result.output
    assert "STORE=s3://" in result.output
    assert not out.exists()


# -- secret names and keys ----------------------------------------------------------------------


def test_secret_names_and_keys_in_the_compiled_pipeline_come_from_the_settings(
    cluster: FakeCluster, kube_env: dict, images: Path, tmp_path: Path
) -> None:
    cluster.configmaps["satk8s-settings"].update(
        s3Secret="team-a-object-store",
        s3AccessKeyKey="access",
        s3SecretKeyKey="secret",
        hubTokenSecret="team-a-hf",
        hubTokenKey="token",
        s3EndpointUrl="http://minio.storage:9000",
        s3Region="eu-central-1",
    )

    _, platform, text = _compile(
        ["arith", "seeds=[0]", "--images", str(images)], tmp_path / "arith.yaml"
    )

    for name in ("satk8s-s3", "satk8s-hub-token", "satk8s-judge-api-key"):
        assert name not in text
    for executor in _executors(platform).values():
        secrets = {s["secretName"]: s["keyToEnv"] for s in executor["secretAsEnv"]}
        assert secrets == {
            "team-a-object-store": [
                {"envVar": "AWS_ACCESS_KEY_ID", "secretKey": "access"},
                {"envVar": "AWS_SECRET_ACCESS_KEY", "secretKey": "secret"},
            ],
            "team-a-hf": [{"envVar": "HF_TOKEN", "secretKey": "token"}],
        }


# -- the settings themselves ----------------------------------------------------------------------


def test_settings_export_round_trips_and_compiles_the_same_bytes(
    cluster: FakeCluster, kube_env: dict, images: Path, tmp_path: Path
) -> None:
    exported = tmp_path / "settings.yaml"
    result = _invoke(["settings", "export", "-n", NS, "-o", str(exported)])
    assert result.exit_code == 0, result.output

    from satk8s.cluster.settings import read_settings_file

    settings = read_settings_file(exported)
    assert settings.to_data() == cluster.configmaps["satk8s-settings"]
    # The same grid compiled from the cluster and from the file: the same bytes, twice over.
    from_cluster = _compile(["smoke", "--images", str(images)], tmp_path / "a.yaml")[2]
    again = _compile(["smoke", "--images", str(images)], tmp_path / "b.yaml")[2]
    offline = _compile(
        ["smoke", "--images", str(images), "--settings", str(exported)], tmp_path / "c.yaml"
    )[2]
    assert from_cluster == again == offline


def test_a_configmap_manifest_is_a_settings_file_too(tmp_path: Path) -> None:
    from satk8s.cluster.settings import read_settings_file

    path = tmp_path / "cm.yaml"
    manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "satk8s-settings", "namespace": "team-b"},
        "data": settings_data(serviceAccount="runs-b"),
    }
    path.write_text(yaml.safe_dump(manifest))

    settings = read_settings_file(path)

    assert (settings.service_account, settings.namespace) == ("runs-b", "team-b")
    assert [p.name for p in settings.gpu_pools] == ["h100"]


@pytest.mark.parametrize(
    ("changes", "key", "message"),
    [
        ({"storeRoot": "gs://bucket/x"}, "storeRoot", "is not s3://bucket[/prefix]"),
        ({"storeRoot": "s3://satk8s/store"}, "storeRoot", "is a placeholder, not your bucket"),
        ({"storeRoot": "s3://<bucket>/satk8s"}, "storeRoot", "is a placeholder"),
        ({"pipelineRoot": "s3://B/kfp"}, "pipelineRoot", "is not s3://bucket[/prefix]"),
        ({"s3EndpointUrl": "minio:9000"}, "s3EndpointUrl", "is not an http(s)://host[:port] URL"),
        ({"s3AddressingStyle": "dns"}, "s3AddressingStyle", "use one of auto, path, virtual"),
        ({"serviceAccount": "Satk8s_Runner"}, "serviceAccount", "is not a ServiceAccount name"),
        ({"serviceAccount": ""}, "serviceAccount", "is not a ServiceAccount name"),
        ({"s3Secret": "S3 keys"}, "s3Secret", "is not a Secret name"),
        ({"hubTokenKey": "HF TOKEN"}, "hubTokenKey", "is not a Secret key"),
        ({"gpuPools": "[{"}, "gpuPools", "not valid JSON"),
        ({"gpuPools": '{"name": "h100"}'}, "gpuPools", "must be a list of pools"),
        ({"gpuPools": '[{"nodeLabels": {}}]'}, "gpuPools[0]", "must be {name, gpu, nodeLabels"),
        ({"gpuPools": '[{"name": "a", "gpu": "b100"}]'}, "gpuPools[0].gpu", "unknown GPU type 'b100'"),
        ({"gpuPools": '[{"name": "a", "tolerations": {}}]'}, "gpuPools[0].tolerations", "must be a list"),
        ({"kueuePriorityClasses": '{"training": "x"}'}, "kueuePriorityClasses", "unknown roles ['training']"),
        ({"cpuQueue": "CPU queue"}, "cpuQueue", "is not a LocalQueue name"),
        ({"gpuPools": '[{"name": "a", "gpus": 8}]'}, "gpuPools[0]", "unknown keys ['gpus']"),
        ({"gpuPools": '[{"name": "a", "nodeLabels": {"x": 1}}]'}, "gpuPools[0].nodeLabels", "must map label to text"),
        ({"storeroot": "s3://a/b"}, "storeroot", "unknown key (test file); known: storeRoot"),
        ({"s3Region": 5}, "s3Region", "must be text, got int"),
    ],
)  # fmt: skip
def test_bad_settings_name_the_key_and_where_it_came_from(
    changes: dict, key: str, message: str
) -> None:
    from satk8s.cluster.settings import ClusterSettings
    from satk8s.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        ClusterSettings.from_data(settings_data(**changes), "test file")

    assert err.value.field == key
    assert message in str(err.value)
    assert "test file" in str(err.value)


def test_unreadable_settings_say_what_to_do(
    cluster: FakeCluster, kube_env: dict, images: Path, tmp_path: Path
) -> None:
    out = tmp_path / "p.yaml"
    del cluster.configmaps["satk8s-settings"]
    result = _invoke(["grid", "compile", "smoke", "--images", str(images), "-o", str(out)])
    assert result.exit_code == 2
    assert f"no ConfigMap satk8s-settings in namespace {NS}: install the chart there" in (
        result.output
    )
    assert "--settings FILE" in result.output

    cluster.forbidden.add(("configmaps", "satk8s-settings"))
    cluster.healthy_configmaps()
    result = _invoke(["grid", "compile", "smoke", "--images", str(images), "-o", str(out)])
    assert "not allowed to read ConfigMap satk8s-settings in namespace team-a (HTTP 403)" in (
        result.output
    )

    missing = tmp_path / "nope.yaml"
    result = _invoke(
        [
            "grid",
            "compile",
            "smoke",
            "--images",
            str(images),
            "--settings",
            str(missing),
            "-o",
            str(out),
        ]
    )
    assert f"{missing}: no such settings file; write one with `satk8s settings export" in (
        result.output
    )
    broken = tmp_path / "broken.yaml"
    broken.write_text("storeRoot: [unclosed\n")
    result = _invoke(
        [
            "grid",
            "compile",
            "smoke",
            "--images",
            str(images),
            "--settings",
            str(broken),
            "-o",
            str(out),
        ]
    )
    assert f"config field '{broken}': not valid YAML" in result.output
    assert not out.exists()


def test_no_kubeconfig_at_all_says_to_pass_a_settings_file(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)

    result = _invoke(
        ["grid", "compile", "smoke", "--images", str(images), "-o", str(tmp_path / "p")]
    )

    assert result.exit_code == 2
    assert "no usable Kubernetes configuration" in result.output
    assert "--settings FILE (written by `satk8s settings export`)" in result.output


# -- what a cluster compile contains ---------------------------------------------------------------


def test_an_override_store_wins_over_the_settings(
    cluster: FakeCluster, kube_env: dict, images: Path, tmp_path: Path
) -> None:
    spec, _, text = _compile(
        ["smoke", "store.root=s3://team-b-scratch/try", "--images", str(images)],
        tmp_path / "p.yaml",
    )

    assert spec["root"]["inputDefinitions"]["parameters"]["store_root"]["defaultValue"] == (
        "s3://team-b-scratch/try"
    )
    assert STORE_BUCKET not in text


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("store.root=./runs", "'./runs' is a local path the cluster's pods cannot reach"),
        ("store.root=s3://satk8s/kfp", "'s3://satk8s/kfp' is a placeholder, not your bucket"),
        ("store.root=s3://satk8s/store", "'s3://satk8s/store' is a placeholder"),
    ],
)
def test_a_store_the_pods_cannot_use_is_refused(
    cluster: FakeCluster, kube_env: dict, images: Path, tmp_path: Path, override: str, message: str
) -> None:
    out = tmp_path / "p.yaml"

    result = _invoke(
        ["grid", "compile", "smoke", override, "--images", str(images), "-o", str(out)]
    )

    assert result.exit_code == 2
    assert f"config field 'store.root': {message}" in result.output
    assert not out.exists()


def test_the_smoke_grid_for_a_cluster_runs_on_cpu_with_the_settings_secrets(
    cluster: FakeCluster, kube_env: dict, images: Path, tmp_path: Path
) -> None:
    cluster.configmaps["satk8s-settings"]["s3EndpointUrl"] = "http://minio.storage:9000"
    spec, platform, _ = _compile(["smoke", "--images", str(images)], tmp_path / "smoke.yaml")

    tasks = {t["taskInfo"]["name"] for t in spec["root"]["dag"]["tasks"].values()}
    assert "tiny" in tasks  # the tiny model is built in the cluster, by a task of the run
    executors = spec["deploymentSpec"]["executors"].values()
    # CPU-only compute: every step in the CPU image, no accelerator anywhere.
    assert {e["container"]["image"] for e in executors} == {IMAGES["cpu"]}
    assert not any("accelerator" in e["container"].get("resources", {}) for e in executors)
    for executor in executors:
        env = {v["name"]: v["value"] for v in executor["container"]["env"]}
        assert env == {
            "SATK8S_S3_ADDRESSING_STYLE": "path",
            "SATK8S_S3_ENDPOINT_URL": "http://minio.storage:9000",
            "SATK8S_S3_REGION": "us-east-1",
        }
    for executor in _executors(platform).values():
        assert [s["secretName"] for s in executor["secretAsEnv"]] == [
            "satk8s-s3",
            "satk8s-hub-token",
        ]
        assert all(s["optional"] is True for s in executor["secretAsEnv"])
        assert "nodeSelector" not in executor and "tolerations" not in executor


def test_the_judge_key_reaches_only_the_external_judge_under_its_env_name(
    cluster: FakeCluster, kube_env: dict, images: Path, tmp_path: Path
) -> None:
    cluster.configmaps["satk8s-settings"].update(
        judgeApiKeySecret="team-a-judge", judgeApiKeyKey="key"
    )
    cluster.secrets["team-a-judge"] = {"key": "sk-example"}

    spec, platform, text = _compile(
        [
            "arith",
            "seeds=[0]",
            "signal/external_judge=openai",
            "signal.external_judge.api_key_env=JUDGE_KEY",
            "--images",
            str(images),
        ],
        tmp_path / "p.yaml",
    )

    tasks = {t["taskInfo"]["name"]: t for t in spec["root"]["dag"]["tasks"].values()}
    judge_exec = spec["components"][tasks["signal-external_judge"]["componentRef"]["name"]]
    judge = _executors(platform)[judge_exec["executorLabel"]]
    assert {
        "secretName": "team-a-judge",
        "keyToEnv": [{"envVar": "JUDGE_KEY", "secretKey": "key"}],
        "optional": True,
    } in [{k: s[k] for k in ("secretName", "keyToEnv", "optional")} for s in judge["secretAsEnv"]]
    others = [
        e for label, e in _executors(platform).items() if label != judge_exec["executorLabel"]
    ]
    assert all("team-a-judge" not in json.dumps(e) for e in others)
    assert "sk-example" not in text


# -- submitting what was compiled -----------------------------------------------------------------

TOKEN = "tok-SECRET-3c2b1a0f9e8d"


def test_submit_dry_run_of_compiled_arith_shows_the_runner_account_and_the_store(
    cluster: FakeCluster, kube_env: dict, images: Path, tmp_path: Path
) -> None:
    package = tmp_path / "arith.yaml"
    _compile(["arith", "--images", str(images)], package)
    env = {"KFP_HOST": "http://127.0.0.1:9", "KFP_TOKEN": TOKEN}  # nothing listens there

    result = _invoke(["submit", str(package), "--dry-run"], env)

    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith("dry run: nothing sent to http://127.0.0.1:9\n")
    assert "POST http://127.0.0.1:9/apis/v2beta1/runs" in out
    assert f"  namespace        {NS}\n" in out
    assert "  experiment       satk8s (found by name, created if missing)" in out
    assert "  service account  satk8s-runner\n" in out
    assert f"  pipeline         satk8s-arith ({package}, 83 tasks)" in out
    assert f"    store_root = 's3://{STORE_BUCKET}/satk8s'" in out
    assert "  token            set (hidden)" in out and TOKEN not in out
    body = json.loads(out[out.index("body:\n") + len("body:\n") :])
    assert body["service_account"] == "satk8s-runner"
    assert body["runtime_config"] == {"parameters": {}}


def test_submit_without_settings_or_an_account_says_how_to_name_one(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from satk8s.cluster.settings import ClusterSettings

    settings = tmp_path / "settings.yaml"
    settings.write_text(ClusterSettings(store_root="s3://acme-b/p").export_yaml())
    package = tmp_path / "smoke.yaml"
    _compile(["smoke", "--images", str(images), "--settings", str(settings)], package)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))

    result = _invoke(["submit", str(package), "--dry-run"], {"KFP_HOST": "http://127.0.0.1:9"})

    assert result.exit_code == 2
    assert "no usable Kubernetes configuration" in result.output
    assert "or name the run account with --service-account" in result.output

    result = _invoke(
        ["submit", str(package), "--dry-run", "--service-account", "my-runner"],
        {"KFP_HOST": "http://127.0.0.1:9"},
    )
    assert result.exit_code == 0, result.output
    assert "  service account  my-runner\n" in result.output


@pytest.mark.slow  # make, two satk8s processes, the arith grid compiled (~15 s)
def test_make_submit_with_store_overrides_and_settings(
    kfp_server: Any, images: Path, tmp_path: Path
) -> None:
    """`make submit GRID=arith STORE=s3://bucket/prefix OVERRIDES="seeds=[0]"` against the KFP
    double, the settings from a file: the store and the overrides reach the compiled pipeline,
    the run executes as the settings' account, the YAML lands at BUILD/GRID.yaml."""
    import os
    import subprocess
    import sys

    from satk8s.cluster.settings import ClusterSettings

    repo = Path(__file__).resolve().parents[1]
    settings = tmp_path / "settings.yaml"
    settings.write_text(ClusterSettings(service_account="team-runner").export_yaml())
    env = {
        **os.environ,
        "KFP_HOST": kfp_server.host,
        "KFP_NAMESPACE": NS,
        "SATK8S_IMAGE_DIGESTS": str(images),
        "NO_PROXY": "127.0.0.1",
    }
    command = [
        "make",
        "--no-print-directory",
        "-o",
        ".venv/.installed",  # the environment this test runs in is the one to use
        "submit",
        f"VENV={Path(sys.executable).parent.parent}",
        f"BUILD={tmp_path / 'build'}",
        "GRID=arith",
        "STORE=s3://acme-b/grids",
        "OVERRIDES=seeds=[0] signals=[entropy]",
        f"SETTINGS={settings}",
    ]
    done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "run id:     run-0001" in done.stdout
    assert "runs as:    team-runner" in done.stdout
    compiled = yaml.safe_load_all((tmp_path / "build" / "arith.yaml").read_text())
    spec = next(compiled)
    # One seed, one signal: 11 shared tasks (the model staged, the random, length and logprob
    # controls), 4 cells of dataset, train and evaluate, the report.
    assert len(spec["root"]["dag"]["tasks"]) == 24
    store = spec["root"]["inputDefinitions"]["parameters"]["store_root"]["defaultValue"]
    assert store == "s3://acme-b/grids"
    run = kfp_server.runs["run-0001"]
    assert run["service_account"] == "team-runner"


def test_a_cluster_grid_run_locally_needs_a_store(tmp_path: Path) -> None:
    # arith's store is the cluster's: a local run without --store has nowhere to write.
    result = _invoke(["run", "arith", "seeds=[0]", "--local", "--workdir", str(tmp_path)])

    assert result.exit_code == 2
    assert "config field 'store.root': grid 'arith' writes to a cluster's store" in result.output
    assert "satk8s run --local --store" in result.output
