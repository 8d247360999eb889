"""A loopback KFP API server for tests: the v2beta1 REST endpoints kfp.Client uses (healthz,
experiments list and create, runs create, get and list), recording every request so tests check
what a real server would receive. Registered in conftest.py.

- `kfp_server` (function): a `FakeKfp` on 127.0.0.1, its URL in `.host`.

The server-side behaviour it models is KFP 2.17.0's, cited where it is modelled: the healthz
body, the service account a run gets when the request names none, and the multi-user
authorization check with its error message.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

API = "/apis/v2beta1"

DEFAULT_RUNNER = {True: "default-editor", False: "pipeline-runner"}
"""The account a run gets when its request names none (multi-user: True):
kubeflow/pipelines@2.17.0:backend/src/apiserver/template/template.go (setDefaultServiceAccount:
an empty service_account becomes DEFAULTPIPELINERUNNERSERVICEACCOUNT), which is `pipeline-runner`
in kubeflow/pipelines@2.17.0:backend/src/apiserver/config/config.json and `default-editor` in
kubeflow/pipelines@2.17.0:manifests/kustomize/base/installs/multi-user/api-service/params.env."""


class FakeKfp:
    """State and request log of the fake KFP API server."""

    def __init__(self) -> None:
        self.host = ""
        self.requests: list[dict[str, Any]] = []
        self.experiments: list[dict[str, Any]] = []
        self.runs: dict[str, dict[str, Any]] = {}
        self.states: dict[str, list[str]] = {}
        """run id -> states the next GETs return; the last one repeats."""
        self.task_details: dict[str, list[list[dict[str, Any]]]] = {}
        """run id -> `run_details.task_details` the next GETs return, in step with `states`
        (tests/test_runs_watch.py builds them as KFP 2.17 serves them)."""
        self.fail_create_run: tuple[int, str] | None = None
        self.tag_name = "2.17.0"
        self.multi_user = False
        self.identities: dict[str, str] | None = None
        """Multi-user authorization: bearer token -> user identity; None lets every request
        through. A token it does not list is unauthenticated (401)."""
        self.permitted: set[str] = set()
        """Identities that the namespace's RBAC lets create experiments and runs."""
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

    def _authorize(
        self, authorization: str | None, verb: str, resource: str, namespace: str
    ) -> tuple[int, Any] | None:
        """kubeflow/pipelines@2.17.0:backend/src/apiserver/resource/resource_manager.go
        (IsAuthorized): no check in single-user mode; otherwise the token's identity (a
        TokenReview) must pass a SubjectAccessReview for the verb on the pipelines.kubeflow.org
        resource in the namespace, else PermissionDenied (HTTP 403) with this message."""
        if not self.multi_user or self.identities is None:
            return None
        token = (authorization or "").removeprefix("Bearer ")
        identity = self.identities.get(token)
        if identity is None:
            message = "Failed to check authorization. User identity is empty in the request header"
            return 401, {"error": message, "code": 16, "message": message}
        if identity in self.permitted:
            return None
        attributes = (
            f"&ResourceAttributes{{Namespace:{namespace},Verb:{verb},"
            f"Group:pipelines.kubeflow.org,Version:v1beta1,Resource:{resource},}}"
        )
        message = (
            f"User '{identity}' is not authorized with reason:  (request: {attributes}): "
            "Unauthorized access"
        )
        return 403, {"error": message, "code": 7, "message": message}

    def handle(
        self, method: str, url: str, body: Any, authorization: str | None = None
    ) -> tuple[int, Any]:
        parsed = urlparse(url)
        path, query = parsed.path, parse_qs(parsed.query)
        if method == "GET" and path == f"{API}/healthz":
            # kubeflow/pipelines@2.17.0:backend/src/apiserver/main.go (newHealthzResponse)
            return 200, {
                "commit_sha": "0123abcd",
                "tag_name": self.tag_name,
                "multi_user": self.multi_user,
                "pipeline_store": "database",
            }
        if method == "GET" and path == f"{API}/experiments":
            predicates = json.loads(query.get("filter", ["{}"])[0]).get("predicates", [])
            names = {p["stringValue"] for p in predicates if p.get("key") == "display_name"}
            found = [e for e in self.experiments if not names or e["display_name"] in names]
            return 200, {"experiments": found, "total_size": len(found)} if found else {}
        if method == "POST" and path == f"{API}/experiments":
            namespace = body.get("namespace", "")
            if denied := self._authorize(authorization, "create", "experiments", namespace):
                return denied
            exp_id = self.add_experiment(body["display_name"], namespace)
            return 200, self.experiments[-1] | {"experiment_id": exp_id}
        if method == "POST" and path == f"{API}/runs":
            if self.fail_create_run:
                status, message = self.fail_create_run
                return status, {"error": message, "code": 13, "message": message}
            experiment = next(
                (e for e in self.experiments if e["experiment_id"] == body["experiment_id"]), {}
            )
            namespace = experiment.get("namespace", "")
            if denied := self._authorize(authorization, "create", "runs", namespace):
                return denied
            run_id = f"run-{len(self.runs) + 1:04d}"
            self.add_run(
                run_id,
                body["display_name"],
                body["experiment_id"],
                ["PENDING"],
                pipeline_spec=body.get("pipeline_spec"),
                runtime_config=body.get("runtime_config"),
                service_account=body.get("service_account") or DEFAULT_RUNNER[self.multi_user],
            )
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
            authorization = self.headers.get("Authorization")
            with state.lock:
                state.requests.append(
                    {
                        "method": method,
                        "path": urlparse(self.path).path,
                        "query": parse_qs(urlparse(self.path).query),
                        "headers": dict(self.headers),
                        "authorization": authorization,
                        "body": body,
                    }
                )
                status, payload = state.handle(method, self.path, body, authorization)
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


KFP_ENV = (
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
)


@pytest.fixture
def kfp_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeKfp]:
    import kfp

    # kfp.Client reads ~/.config/kfp/context.json and KF_PIPELINES_* variables: keep both out.
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "no-context.json"))
    for name in KFP_ENV:
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
