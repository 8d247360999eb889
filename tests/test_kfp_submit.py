"""Submitting to and watching a KFP API server: kfp.Client against a loopback fake
(`tests/kfp_fake.py`: the KFP 2.17 v2beta1 REST endpoints kfp.Client uses, every request
recorded), so the tests check what a real server would receive: bodies, query parameters and the
Authorization header."""

# No `from __future__ import annotations` here: kfp's @dsl.component reads the component's
# annotations as real types, and string annotations break it.
import json
import socket
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from satk8s.cli.runs_cmd import runs_app, submit
from satk8s.errors import ConfigError, DataError
from satk8s.orchestration.kfp_client import (
    KfpError,
    KfpSettings,
    list_runs,
    run_status,
    wait_for_run,
)
from satk8s.orchestration.kfp_client import submit as submit_run
from tests.kfp_fake import API, FakeKfp

TOKEN = "tok-SECRET-9f8e7d6c5b4a"


@pytest.fixture
def package(tmp_path: Path) -> Path:
    """A real compiled pipeline: one component, three parameters (`a` required)."""
    from kfp import compiler, dsl

    @dsl.component(base_image="python:3.12-slim")
    def add(a: int, b: int) -> int:
        return a + b

    @dsl.pipeline(name="tiny-sum", description="one component, for submit tests")
    def tiny_sum(a: int, b: int = 2, label: str = "x"):
        add(a=a, b=b)

    path = tmp_path / "tiny-sum.yaml"
    compiler.Compiler().compile(tiny_sum, str(path))
    return path


def _settings(server: FakeKfp, **kw: Any) -> KfpSettings:
    values = {
        "host": server.host,
        "token": TOKEN,
        "namespace": "team-a",
        "experiment": "satk8s-test",
        "pipeline_root": "s3://bucket/kfp-root",
        "ui_url": "https://kubeflow.example.com/pipeline",
    }
    return KfpSettings(**(values | kw))


def _env(server: FakeKfp) -> dict[str, str]:
    return {
        "KFP_HOST": server.host,
        "KFP_TOKEN": TOKEN,
        "KFP_NAMESPACE": "team-a",
        "KFP_EXPERIMENT": "satk8s-test",
        "KFP_PIPELINE_ROOT": "s3://bucket/kfp-root",
        "KFP_UI_URL": "https://kubeflow.example.com/pipeline",
    }


def _cli() -> typer.Typer:
    # Mounted the way satk8s/cli/main.py mounts them.
    app = typer.Typer()
    app.command("submit")(submit)
    app.add_typer(runs_app, name="runs")
    return app


def _invoke(args: list[str], env: dict[str, str]):
    return CliRunner().invoke(_cli(), args, env=env)


def test_submit_sends_the_compiled_pipeline_with_token_experiment_and_root(
    kfp_server: FakeKfp, package: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = submit_run(package, _settings(kfp_server), run_name="sum 5", arguments={"a": "5"})

    assert run.run_id == "run-0001"
    assert run.url == "https://kubeflow.example.com/pipeline/#/runs/details/run-0001"
    assert (run.run_name, run.experiment) == ("sum 5", "satk8s-test")
    calls = [(r["method"], r["path"]) for r in kfp_server.requests]
    assert calls == [
        ("GET", f"{API}/healthz"),  # satk8s's own check (kfp.Client skips its own: namespace)
        ("GET", f"{API}/experiments"),  # get the experiment by name: none yet
        ("POST", f"{API}/experiments"),  # so create it
        ("POST", f"{API}/runs"),
    ]
    assert all(r["authorization"] == f"Bearer {TOKEN}" for r in kfp_server.requests)
    lookup = kfp_server.requests[1]["query"]
    assert lookup["namespace"] == ["team-a"]
    assert json.loads(lookup["filter"][0])["predicates"][0]["stringValue"] == "satk8s-test"
    assert kfp_server.requests[2]["body"] == {"display_name": "satk8s-test", "namespace": "team-a"}

    body = kfp_server.requests[3]["body"]
    assert body["display_name"] == "sum 5"
    assert body["experiment_id"] == "exp-1"
    # The int parameter arrives as an int (typed from the package), not the string "5".
    assert body["runtime_config"] == {
        "pipeline_root": "s3://bucket/kfp-root",
        "parameters": {"a": 5},
    }
    spec = body["pipeline_spec"]
    compiled = yaml.safe_load(package.read_text())
    assert (
        spec["pipelineInfo"]
        == compiled["pipelineInfo"]
        == {
            "name": "tiny-sum",
            "description": "one component, for submit tests",
        }
    )
    assert list(spec["root"]["dag"]["tasks"]) == ["add"]
    assert spec["deploymentSpec"]["executors"]["exec-add"]["container"]["image"] == (
        "python:3.12-slim"
    )
    assert spec["deploymentSpec"] == compiled["deploymentSpec"]
    assert TOKEN not in capsys.readouterr().out


def test_submit_reuses_an_existing_experiment_and_names_the_run(
    kfp_server: FakeKfp, package: Path
) -> None:
    kfp_server.add_experiment("satk8s-test", "team-a")

    run = submit_run(package, _settings(kfp_server, pipeline_root=None), arguments={"a": 1})

    creates = [r for r in kfp_server.requests if r["method"] == "POST"]
    assert [r["path"] for r in creates] == [f"{API}/runs"]
    body = creates[0]["body"]
    assert body["experiment_id"] == "exp-1"
    assert body["runtime_config"] == {"parameters": {"a": 1}}  # no pipeline_root: server default
    assert body["display_name"] == run.run_name
    assert run.run_name.startswith("tiny-sum 20")  # pipeline name and UTC time


@pytest.fixture
def settings_file(tmp_path: Path) -> Path:
    """A settings file as `satk8s settings export` writes it, naming a run account."""
    from satk8s.cluster.settings import ClusterSettings

    path = tmp_path / "settings.yaml"
    settings = ClusterSettings(store_root="s3://acme-runs/satk8s", service_account="team-runner")
    path.write_text(settings.export_yaml())
    return path


def test_submit_cli_prints_run_id_and_link_never_the_token(
    kfp_server: FakeKfp, package: Path, settings_file: Path
) -> None:
    result = _invoke(
        [
            "submit",
            str(package),
            "--arg",
            "a=7",
            "--arg",
            "label=hi",
            "--settings",
            str(settings_file),
        ],
        _env(kfp_server),
    )

    assert result.exit_code == 0, result.output
    assert "runs as:    team-runner" in result.output
    assert kfp_server.requests[-1]["body"]["service_account"] == "team-runner"
    assert "run id:     run-0001" in result.output
    assert "url:        https://kubeflow.example.com/pipeline/#/runs/details/run-0001" in (
        result.output
    )
    assert "Experiment details" not in result.output  # kfp.Client's own prints are muted
    assert TOKEN not in result.output
    body = kfp_server.requests[-1]["body"]
    assert body["runtime_config"]["parameters"] == {"a": 7, "label": "hi"}
    assert kfp_server.requests[-1]["authorization"] == f"Bearer {TOKEN}"


def test_ui_url_defaults_to_the_host(kfp_server: FakeKfp, package: Path) -> None:
    run = submit_run(package, _settings(kfp_server, ui_url=None), arguments={"a": 1})
    assert run.url == f"{kfp_server.host}/#/runs/details/run-0001"


def test_bad_packages_and_arguments_fail_before_any_request(
    kfp_server: FakeKfp, package: Path, tmp_path: Path
) -> None:
    settings = _settings(kfp_server)
    with pytest.raises(DataError, match=r"missing\.yaml: no such file"):
        submit_run(tmp_path / "missing.yaml", settings)
    not_kfp = tmp_path / "values.yaml"
    not_kfp.write_text("replicas: 3\nimage: nginx\n")
    with pytest.raises(DataError, match=r"values\.yaml: not a KFP pipeline YAML"):
        submit_run(not_kfp, settings)
    broken = tmp_path / "broken.yaml"
    broken.write_text("pipelineInfo: {name: x\n")
    with pytest.raises(DataError, match=r"broken\.yaml: not valid YAML"):
        submit_run(broken, settings)
    with pytest.raises(ConfigError, match=r"no such parameter; known: a, b, label"):
        submit_run(package, settings, arguments={"a": "1", "steps": "3"})
    with pytest.raises(ConfigError, match=r"'arg a'.*required by the pipeline"):
        submit_run(package, settings)
    with pytest.raises(ConfigError, match=r"'arg b': expected NUMBER_INTEGER, got 'two'"):
        submit_run(package, settings, arguments={"a": "1", "b": "two"})
    assert kfp_server.requests == []

    result = _invoke(["submit", str(not_kfp)], _env(kfp_server))
    assert result.exit_code == 2
    assert f"error: {not_kfp}: not a KFP pipeline YAML" in result.output
    assert kfp_server.requests == []


def test_missing_kfp_host_is_a_config_error(monkeypatch: pytest.MonkeyPatch, package: Path) -> None:
    monkeypatch.delenv("KFP_HOST", raising=False)
    settings = KfpSettings.from_env({"KFP_TOKEN": TOKEN})
    assert settings.host is None and settings.token == TOKEN
    with pytest.raises(ConfigError, match="config field 'KFP_HOST': not set"):
        submit_run(package, settings, arguments={"a": 1})

    result = CliRunner().invoke(_cli(), ["submit", str(package), "--arg", "a=1"], env={})
    assert result.exit_code == 2
    assert "error: config field 'KFP_HOST': not set" in result.output
    with pytest.raises(ConfigError, match="KFP_HOST.*http:// or https://"):
        KfpSettings.from_env({"KFP_HOST": "kubeflow.example.com"})


def test_settings_from_env_defaults_and_hidden_token() -> None:
    settings = KfpSettings.from_env({"KFP_HOST": "http://127.0.0.1:8888/", "KFP_TOKEN": TOKEN})
    assert (settings.host, settings.namespace, settings.experiment) == (
        "http://127.0.0.1:8888",
        "kubeflow",
        "satk8s",
    )
    assert settings.pipeline_root is None and settings.ui_url is None
    assert TOKEN not in repr(settings) and TOKEN not in str(settings)
    assert "token=<set, hidden>" in repr(settings)


def test_a_host_that_refuses_connections_is_named_without_the_token(package: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    host = f"http://127.0.0.1:{port}"
    settings = KfpSettings(host=host, token=TOKEN)

    with pytest.raises(KfpError) as err:
        submit_run(package, settings, arguments={"a": 1})
    message = str(err.value)
    assert message.startswith(f"cannot reach the KFP API at {host}: [Errno")
    assert "Connection refused" in message
    assert "KFP_HOST" in message and TOKEN not in message

    result = _invoke(["runs", "list"], {"KFP_HOST": host, "KFP_TOKEN": TOKEN})
    assert result.exit_code == 2
    assert f"error: cannot reach the KFP API at {host}" in result.output
    assert TOKEN not in result.output


def test_server_errors_name_the_host_and_mask_the_token(kfp_server: FakeKfp, package: Path) -> None:
    # A server (or a proxy) quoting the request back: the token must still not surface.
    kfp_server.fail_create_run = (500, f"cannot schedule: bad credentials {TOKEN}")

    with pytest.raises(KfpError) as err:
        submit_run(package, _settings(kfp_server), arguments={"a": 1})
    assert str(err.value) == (
        f"KFP API at {kfp_server.host}: submitting the run failed (HTTP 500): "
        "cannot schedule: bad credentials ***"
    )


def test_a_rejected_token_says_to_set_kfp_token(kfp_server: FakeKfp, package: Path) -> None:
    original = kfp_server.handle
    kfp_server.handle = lambda method, url, body, auth=None: (  # type: ignore[method-assign]
        (401, {"message": "Unauthorized"}) if "healthz" in url else original(method, url, body)
    )
    with pytest.raises(KfpError, match=r"refused the request \(HTTP 401\); set KFP_TOKEN"):
        submit_run(package, _settings(kfp_server), arguments={"a": 1})
    assert len(kfp_server.requests) == 1  # one healthz, not kfp.Client's five retries


@pytest.fixture
def two_runs(kfp_server: FakeKfp) -> FakeKfp:
    exp = kfp_server.add_experiment("satk8s-test", "team-a")
    other = kfp_server.add_experiment("someone-else", "team-a")
    kfp_server.add_run("run-ok", "grid arith", exp, ["RUNNING", "RUNNING", "SUCCEEDED"])
    kfp_server.add_run(
        "run-bad",
        "grid gsm8k",
        exp,
        ["PENDING", "RUNNING", "FAILED"],
        error={"code": 2, "message": "task generate: OOMKilled"},
    )
    kfp_server.add_run("run-other", "not ours", other, ["SUCCEEDED"])
    return kfp_server


def test_list_runs_filters_by_experiment_newest_first(two_runs: FakeKfp) -> None:
    runs = list_runs(_settings(two_runs), limit=5)

    assert [(r.run_id, r.name, r.state) for r in runs] == [
        ("run-bad", "grid gsm8k", "PENDING"),
        ("run-ok", "grid arith", "RUNNING"),
    ]
    assert runs[0].url == "https://kubeflow.example.com/pipeline/#/runs/details/run-bad"
    assert runs[0].created_at.startswith("2026-01-02T10:00:00")
    listing = two_runs.requests[-1]
    assert listing["path"] == f"{API}/runs"
    assert listing["query"]["experiment_id"] == ["exp-1"]
    assert listing["query"]["page_size"] == ["5"]
    assert listing["query"]["sort_by"] == ["created_at desc"]
    assert listing["authorization"] == f"Bearer {TOKEN}"

    result = _invoke(["runs", "list"], _env(two_runs))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split()[:2] for line in lines] == [["run-bad", "PENDING"], ["run-ok", "RUNNING"]]


def test_list_runs_without_the_experiment_is_empty(kfp_server: FakeKfp) -> None:
    assert list_runs(_settings(kfp_server)) == []
    result = _invoke(["runs", "list"], _env(kfp_server))
    assert result.exit_code == 0
    assert f"no runs in experiment 'satk8s-test' at {kfp_server.host}" in result.output


def test_status_of_a_run_and_of_an_unknown_one(two_runs: FakeKfp) -> None:
    info = run_status("run-bad", _settings(two_runs))
    assert (info.state, info.error, info.finished) == ("PENDING", "task generate: OOMKilled", False)

    result = _invoke(["runs", "status", "run-ok"], _env(two_runs))
    assert result.exit_code == 0, result.output
    assert "state:       RUNNING" in result.output
    assert "url:         https://kubeflow.example.com/pipeline/#/runs/details/run-ok" in (
        result.output
    )

    result = _invoke(["runs", "status", "run-nope"], _env(two_runs))
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: KFP API at {two_runs.host}: getting run run-nope failed (HTTP 404): "
        "Run run-nope not found"
    )


def test_wait_for_run_reports_each_state_until_done(two_runs: FakeKfp) -> None:
    seen: list[str] = []
    info = wait_for_run(
        "run-ok",
        _settings(two_runs),
        timeout=30,
        poll=0.01,
        on_change=lambda r: seen.append(r.state),
    )
    assert info.succeeded and info.finished_at.startswith("2026-01-09T11:00:00")
    assert seen == ["RUNNING", "SUCCEEDED"]


def test_wait_exits_zero_on_success_and_non_zero_on_failure(two_runs: FakeKfp) -> None:
    ok = _invoke(["runs", "wait", "run-ok", "--poll", "0.01"], _env(two_runs))
    assert ok.exit_code == 0, ok.output
    assert "state:       SUCCEEDED" in ok.output

    bad = _invoke(["runs", "wait", "run-bad", "--poll", "0.01", "--timeout", "30"], _env(two_runs))
    assert bad.exit_code == 1, bad.output
    assert "state:       FAILED" in bad.output
    assert "error:       task generate: OOMKilled" in bad.output
    assert "run-bad: PENDING" in bad.output and "run-bad: RUNNING" in bad.output


def test_wait_stops_on_a_cancelled_run_and_times_out_on_a_stuck_one(kfp_server: FakeKfp) -> None:
    exp = kfp_server.add_experiment("satk8s-test", "team-a")
    kfp_server.add_run("run-cancel", "c", exp, ["CANCELING", "CANCELED"])
    kfp_server.add_run("run-stuck", "s", exp, ["RUNNING"])

    cancelled = _invoke(["runs", "wait", "run-cancel", "--poll", "0.01"], _env(kfp_server))
    assert cancelled.exit_code == 1
    assert "state:       CANCELED" in cancelled.output

    stuck = _invoke(
        ["runs", "wait", "run-stuck", "--poll", "0.01", "--timeout", "0.1"], _env(kfp_server)
    )
    assert stuck.exit_code == 2
    assert "error: run run-stuck is still RUNNING after 0.1 s" in stuck.output


def test_a_403_names_the_refused_identity_and_the_token_that_can_submit(
    kfp_server: FakeKfp, package: Path
) -> None:
    # Multi-user KFP authorizes the token's identity in the namespace; the run account's token
    # (the chart's satk8s-runner) has no pipelines.kubeflow.org permissions.
    kfp_server.multi_user = True
    kfp_server.identities = {TOKEN: "system:serviceaccount:team-a:satk8s-runner"}
    kfp_server.permitted = {"system:serviceaccount:team-a:default-editor"}

    with pytest.raises(KfpError) as err:
        submit_run(package, _settings(kfp_server), arguments={"a": 1})

    message = str(err.value)
    assert message.startswith(
        f"KFP API at {kfp_server.host}: submitting the run failed (HTTP 403): User "
        "'system:serviceaccount:team-a:satk8s-runner' is not authorized"
    )
    assert (
        "Likely cause: 'system:serviceaccount:team-a:satk8s-runner' has no Kubeflow Pipelines "
        "permissions in namespace team-a" in message
    )
    assert "(satk8s-runner) is for the run's pods" in message
    assert "kubectl -n team-a create token default-editor --audience=pipelines.kubeflow.org" in (
        message
    )
    assert TOKEN not in message
    assert not kfp_server.runs

    # The profile's default-editor token is let through, and the run still executes as the
    # account the request names.
    kfp_server.identities = {TOKEN: "system:serviceaccount:team-a:default-editor"}
    run = submit_run(
        package, _settings(kfp_server), arguments={"a": 1}, service_account="satk8s-runner"
    )
    assert kfp_server.runs[run.run_id]["service_account"] == "satk8s-runner"


def test_arg_without_a_value_is_a_usage_error(kfp_server: FakeKfp, package: Path) -> None:
    result = _invoke(["submit", str(package), "--arg", "a"], _env(kfp_server))
    assert result.exit_code == 2
    assert "expected NAME=VALUE, got 'a'" in result.output
    assert kfp_server.requests == []


# -- the run's identity and the backend version ----------------------------------------------


@pytest.fixture
def cluster_env(cluster, kfp_server: FakeKfp, tmp_path: Path) -> dict[str, str]:
    """A user whose kubeconfig reaches a namespace with the chart installed (satk8s-settings
    names the run account) and whose KFP_* settings reach the KFP server."""
    from tests.kube_fake import kubeconfig

    return {**_env(kfp_server), "KUBECONFIG": str(kubeconfig(tmp_path, cluster.port))}


def test_runs_use_the_runner_service_account_named_in_the_namespace_settings(
    kfp_server: FakeKfp, cluster_env: dict[str, str], package: Path
) -> None:
    kfp_server.multi_user = True

    result = _invoke(["submit", str(package), "--arg", "a=1"], cluster_env)

    assert result.exit_code == 0, result.output
    (create,) = [r for r in kfp_server.requests if r["path"] == f"{API}/runs"]
    assert create["body"]["service_account"] == "satk8s-runner"
    # Without it the server would run the pipeline as the profile's default-editor.
    assert kfp_server.runs["run-0001"]["service_account"] == "satk8s-runner"


def test_a_kfp_2_14_backend_is_refused_naming_optional_secret_refs(
    kfp_server: FakeKfp, package: Path
) -> None:
    kfp_server.tag_name = "2.14.0"

    with pytest.raises(KfpError) as err:
        submit_run(package, _settings(kfp_server), arguments={"a": 1})

    message = str(err.value)
    assert "KFP 2.14.0" in message and "2.15" in message
    assert "optional: true" in message and "CreateContainerConfigError" in message
    assert [r["path"] for r in kfp_server.requests] == [f"{API}/healthz"]  # nothing created


# -- where a run's report is ----------------------------------------------------------------------


def _write_report_output(root: Path, key: str, config: dict, finished: float) -> Path:
    """A finished report output in a file:// store, its manifest as steps write it."""
    from satk8s.store.manifest import build_manifest, manifest_bytes

    out = root / "steps" / "report" / key
    out.mkdir(parents=True)
    (out / "report.md").write_text("# Results\n")
    manifest = build_manifest("report", config, {}, {}, [], started=finished - 1)
    manifest["timings"]["finished"] = finished
    (out / "manifest.json").write_bytes(manifest_bytes(manifest))
    return out


def test_runs_status_prints_the_reports_store_paths(kfp_server: FakeKfp, tmp_path: Path) -> None:
    from satk8s.grid import load_plan
    from satk8s.pipelines.builder import compile_plan

    images = {"gpu": "r/gpu@sha256:" + "a" * 64, "cpu": "r/cpu@sha256:" + "b" * 64}
    plan = load_plan("smoke")
    package = compile_plan(plan, tmp_path / "smoke.yaml", images)
    spec = next(yaml.safe_load_all(package.read_text()))
    store = tmp_path / "store"
    config = plan.node("report").config
    older = _write_report_output(store, "a" * 32, config, finished=1000.0)
    newer = _write_report_output(store, "b" * 32, config, finished=2000.0)
    _write_report_output(store, "c" * 32, {**config, "title": "another grid"}, finished=3000.0)
    exp = kfp_server.add_experiment("satk8s-test", "team-a")
    # What the server returns for a run created from an inline spec (api_converter.go toApiRun):
    # the spec as kfp.Client sent it, the runtime config, the service account.
    kfp_server.add_run(
        "run-r",
        "smoke",
        exp,
        ["SUCCEEDED"],
        pipeline_spec={"pipeline_spec": spec, "platform_spec": {}},
        runtime_config={"parameters": {"store_root": store.as_uri()}},
        service_account="satk8s-runner",
    )

    result = _invoke(["runs", "status", "run-r"], _env(kfp_server))

    assert result.exit_code == 0, result.output
    assert "runs as:     satk8s-runner" in result.output
    assert f"store:       {store.as_uri()}" in result.output
    assert f"report:      {newer.as_uri()}/report.md" in result.output
    assert f"report HTML: {newer.as_uri()}/report.html" in result.output
    assert older.as_uri() not in result.output

    # Before the report step has run, the prefix it will be under.
    kfp_server.add_run(
        "run-s",
        "smoke",
        exp,
        ["RUNNING"],
        pipeline_spec=spec,
        runtime_config={"parameters": {"store_root": (tmp_path / "empty").as_uri()}},
    )
    result = _invoke(["runs", "status", "run-s"], _env(kfp_server))
    assert f"report:      under {(tmp_path / 'empty').as_uri()}/steps/report/ (not written yet" in (
        result.output
    )


def test_a_backend_version_that_cannot_be_read_is_a_warning_not_a_refusal(
    kfp_server: FakeKfp, package: Path, settings_file: Path
) -> None:
    kfp_server.tag_name = "unknown"  # the API server's value when built without TAG_NAME

    result = _invoke(
        ["submit", str(package), "--arg", "a=1", "--settings", str(settings_file)],
        _env(kfp_server),
    )

    assert result.exit_code == 0, result.output
    assert "warning: could not read the KFP backend version" in result.output
    assert "healthz tag_name 'unknown'" in result.output
    assert "run id:     run-0001" in result.output

    kfp_server.tag_name = "v2.14.4"
    result = _invoke(
        ["submit", str(package), "--arg", "a=1", "--settings", str(settings_file)],
        _env(kfp_server),
    )
    assert result.exit_code == 2
    assert "is KFP v2.14.4 (healthz tag_name); satk8s needs KFP 2.15 or newer" in result.output
    assert len(kfp_server.runs) == 1
