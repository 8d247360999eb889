"""Submitting to and watching a KFP API server: kfp.Client against a loopback fake.

The fake speaks the KFP v2beta1 REST endpoints kfp.Client uses (healthz, experiments list and
create, runs create, get and list) and records every request, so the tests check what a real
server would receive: bodies, query parameters and the Authorization header.
"""

# No `from __future__ import annotations` here: kfp's @dsl.component reads the component's
# annotations as real types, and string annotations break it.
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

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

TOKEN = "tok-SECRET-9f8e7d6c5b4a"
API = "/apis/v2beta1"


class FakeKfp:
    """State and request log of the fake KFP API server."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.experiments: list[dict[str, Any]] = []
        self.runs: dict[str, dict[str, Any]] = {}
        self.states: dict[str, list[str]] = {}
        """run id -> states the next GETs return; the last one repeats."""
        self.task_details: dict[str, list[list[dict[str, Any]]]] = {}
        """run id -> `run_details.task_details` the next GETs return, in step with `states`
        (tests/test_runs_watch.py builds them as KFP 2.17 serves them)."""
        self.fail_create_run: tuple[int, str] | None = None
        self.lock = threading.Lock()

    def add_run(self, run_id: str, name: str, experiment_id: str, states: list[str], **extra):
        self.runs[run_id] = {
            "run_id": run_id,
            "display_name": name,
            "experiment_id": experiment_id,
            "state": states[0],
            "created_at": f"2026-01-0{len(self.runs) + 1}T10:00:00Z",
            **extra,
        }
        self.states[run_id] = list(states)

    def add_experiment(self, name: str, namespace: str) -> str:
        exp_id = f"exp-{len(self.experiments) + 1}"
        self.experiments.append(
            {"experiment_id": exp_id, "display_name": name, "namespace": namespace}
        )
        return exp_id

    def handle(self, method: str, url: str, body: Any) -> tuple[int, Any]:
        parsed = urlparse(url)
        path, query = parsed.path, parse_qs(parsed.query)
        if method == "GET" and path == f"{API}/healthz":
            return 200, {"multi_user": False, "pipeline_store": "fake"}
        if method == "GET" and path == f"{API}/experiments":
            predicates = json.loads(query.get("filter", ["{}"])[0]).get("predicates", [])
            names = {p["stringValue"] for p in predicates if p.get("key") == "display_name"}
            found = [e for e in self.experiments if not names or e["display_name"] in names]
            return 200, {"experiments": found, "total_size": len(found)} if found else {}
        if method == "POST" and path == f"{API}/experiments":
            exp_id = self.add_experiment(body["display_name"], body.get("namespace", ""))
            return 200, self.experiments[-1] | {"experiment_id": exp_id}
        if method == "POST" and path == f"{API}/runs":
            if self.fail_create_run:
                status, message = self.fail_create_run
                return status, {"error": message, "code": 13, "message": message}
            run_id = f"run-{len(self.runs) + 1:04d}"
            self.add_run(run_id, body["display_name"], body["experiment_id"], ["PENDING"])
            # GetRun returns the spec as stored (backend/src/apiserver/server/api_util.go
            # YamlStringToPipelineSpecStruct, 2.17.0): alone, or with the platform spec.
            self.runs[run_id]["pipeline_spec"] = body.get("pipeline_spec")
            return 200, self.runs[run_id]
        if method == "GET" and path == f"{API}/runs":
            runs = [
                r
                for r in self.runs.values()
                if r["experiment_id"] in query.get("experiment_id", [r["experiment_id"]])
            ]
            runs.sort(key=lambda r: r["created_at"], reverse=True)
            return 200, {"runs": runs, "total_size": len(runs)}
        if method == "GET" and path.startswith(f"{API}/runs/"):
            run_id = path.rsplit("/", 1)[1]
            if run_id not in self.runs:
                message = f"Run {run_id} not found"
                return 404, {"error": message, "code": 5, "message": message}
            states = self.states[run_id]
            state = states.pop(0) if len(states) > 1 else states[0]
            self.runs[run_id]["state"] = state
            if details := self.task_details.get(run_id):
                tasks = details.pop(0) if len(details) > 1 else details[0]
                self.runs[run_id]["run_details"] = {"task_details": tasks}
            if state in ("SUCCEEDED", "FAILED", "CANCELED"):
                self.runs[run_id]["finished_at"] = "2026-01-09T11:00:00Z"
            return 200, self.runs[run_id]
        return 404, {"error": "no such endpoint", "code": 5, "message": f"{method} {path}"}


def _handler(state: FakeKfp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            with state.lock:
                state.requests.append(
                    {
                        "method": method,
                        "path": urlparse(self.path).path,
                        "query": parse_qs(urlparse(self.path).query),
                        "headers": dict(self.headers),
                        "authorization": self.headers.get("Authorization"),
                        "body": body,
                    }
                )
                status, payload = state.handle(method, self.path, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._serve("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._serve("POST")

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def kfp_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    import kfp

    # kfp.Client reads ~/.config/kfp/context.json and KF_PIPELINES_* variables: keep both out.
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "no-context.json"))
    for name in (
        "KF_PIPELINES_ENDPOINT",
        "KF_PIPELINES_UI_ENDPOINT",
        "KF_PIPELINES_DEFAULT_EXPERIMENT_NAME",
        "KF_PIPELINES_OVERRIDE_EXPERIMENT_NAME",
        "KFP_HOST",
        "KFP_TOKEN",
        "KFP_NAMESPACE",
        "KFP_EXPERIMENT",
        "KFP_PIPELINE_ROOT",
        "KFP_UI_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    state = FakeKfp()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.host = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


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


def test_submit_cli_prints_run_id_and_link_never_the_token(
    kfp_server: FakeKfp, package: Path
) -> None:
    result = _invoke(
        ["submit", str(package), "--arg", "a=7", "--arg", "label=hi"], _env(kfp_server)
    )

    assert result.exit_code == 0, result.output
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
    kfp_server.handle = lambda method, url, body: (  # type: ignore[method-assign]
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


def test_a_forbidden_namespace_is_named(kfp_server: FakeKfp, package: Path) -> None:
    original = kfp_server.handle

    def forbid_experiments(method: str, url: str, body: Any) -> tuple[int, Any]:
        if method == "POST" and "experiments" in url:
            return 403, {"message": "user is not authorized to create in namespace team-a"}
        return original(method, url, body)

    kfp_server.handle = forbid_experiments  # type: ignore[method-assign]
    with pytest.raises(KfpError) as err:
        submit_run(package, _settings(kfp_server), arguments={"a": 1})
    assert str(err.value) == (
        f"KFP API at {kfp_server.host}: submitting the run failed (HTTP 403): user is not "
        "authorized to create in namespace team-a; is KFP_NAMESPACE (team-a) a namespace this "
        "token may use (your profile namespace on a multi-user Kubeflow)?"
    )


def test_arg_without_a_value_is_a_usage_error(kfp_server: FakeKfp, package: Path) -> None:
    result = _invoke(["submit", str(package), "--arg", "a"], _env(kfp_server))
    assert result.exit_code == 2
    assert "expected NAME=VALUE, got 'a'" in result.output
    assert kfp_server.requests == []
