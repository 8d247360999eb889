"""Submit a compiled pipeline to a Kubeflow Pipelines API server and watch its runs.

A thin layer over `kfp.Client` (KFP v2beta1 REST API). What it adds:

- settings from the environment (`KfpSettings.from_env`), the token never in a repr or a log;
- the package is checked (exists, is a KFP pipeline YAML, the `--arg` names and types fit its
  parameters) before anything touches the network, and the whole request can be printed
  without sending it (`RunRequest.describe`, `satk8s submit --dry-run`);
- one healthz request first, so an unreachable host, a missing token or a login page fails at
  once with a message naming the host, instead of kfp's five retries five seconds apart; a
  submit refuses a backend older than KFP 2.15 (`check_backend`);
- runs execute as the given service account (the chart's runner, from the cluster settings);
- every kfp / HTTP failure becomes a `KfpError` naming the host, with the token masked; a 403
  says which identity was refused and which token can submit.

| environment       | meaning                                                          |
|-------------------|------------------------------------------------------------------|
| KFP_HOST          | KFP API base URL, as given to `kfp.Client(host=...)` (required)  |
| KFP_TOKEN         | bearer token (optional), e.g. `kubectl create token ...`         |
| KFP_NAMESPACE     | namespace of the experiment and runs (default `kubeflow`; on a   |
|                   | multi-user Kubeflow, your profile namespace)                     |
| KFP_EXPERIMENT    | experiment the runs go into (default `satk8s`)                   |
| KFP_PIPELINE_ROOT | where KFP keeps its own artifacts, e.g. `s3://bucket/kfp`        |
| KFP_UI_URL        | base URL of the KFP UI for run links (default: KFP_HOST)         |
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from satk8s.errors import ConfigError, DataError, Satk8sError
from satk8s.store.redact import MASK, redact_text, register_secrets

if TYPE_CHECKING:
    import kfp

HEALTHZ_PATH = "/apis/v2beta1/healthz"
RUNS_PATH = "/apis/v2beta1/runs"
MIN_BACKEND = (2, 15, 0)
"""The oldest KFP backend satk8s submits to. Compiled pipelines reference Secrets with
`optional: true` (kfp-kubernetes use_secret_as_env), which the driver copies into the pod spec
only from 2.15.0 (kubeflow/pipelines@2.15.0:backend/src/v2/driver/k8s.go sets
SecretKeySelector.Optional; kubeflow/pipelines@2.14.0:backend/src/v2/driver/k8s.go drops it)."""
TESTED_BACKEND = (2, 17)
"""The newest KFP minor version whose sources satk8s's cluster paths are checked against."""
TERMINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "SKIPPED", "CANCELED", "ERROR"})
"""Run states that end a wait. kfp's own wait_for_run_completion misses CANCELED (it would
wait for the whole timeout on a cancelled run), so waiting is done here, over get_run."""
_CONNECT_TIMEOUT_S = 10.0
_READ_TIMEOUT_S = 60.0
T = TypeVar("T")


class KfpError(Satk8sError):
    """The KFP API could not be reached or refused a request. Names the host, never the token."""


@dataclass(frozen=True)
class KfpSettings:
    host: str | None = None
    token: str | None = field(default=None, repr=False)
    namespace: str = "kubeflow"
    experiment: str = "satk8s"
    pipeline_root: str | None = None
    ui_url: str | None = None

    def __post_init__(self) -> None:
        if self.host is not None and not re.match(r"^https?://[^/\s]+", self.host):
            raise ConfigError(
                "KFP_HOST",
                f"'{self.host}' must be an http:// or https:// URL, e.g. "
                "https://kubeflow.example.com/pipeline or http://127.0.0.1:8888",
            )
        if self.pipeline_root is not None and "://" not in self.pipeline_root:
            raise ConfigError(
                "KFP_PIPELINE_ROOT",
                f"'{self.pipeline_root}' must be a URI such as s3://bucket/kfp-root",
            )
        if not self.namespace:
            raise ConfigError("KFP_NAMESPACE", "must not be empty")
        if not self.experiment:
            raise ConfigError("KFP_EXPERIMENT", "must not be empty")
        # Any satk8s error message or log line that quotes the token masks it.
        register_secrets([self.token])

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KfpSettings:
        """Settings from KFP_* environment variables; empty values count as unset."""
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            return (env.get(name) or "").strip() or None

        return cls(
            host=(get("KFP_HOST") or "").rstrip("/") or None,
            token=get("KFP_TOKEN"),
            namespace=get("KFP_NAMESPACE") or "kubeflow",
            experiment=get("KFP_EXPERIMENT") or "satk8s",
            pipeline_root=get("KFP_PIPELINE_ROOT"),
            ui_url=(get("KFP_UI_URL") or "").rstrip("/") or None,
        )

    def require_host(self) -> str:
        if not self.host:
            raise ConfigError(
                "KFP_HOST",
                "not set; export KFP_HOST=<KFP API URL> (what kfp.Client(host=...) takes, e.g. "
                "https://kubeflow.example.com/pipeline), or without an ingress "
                "`kubectl -n kubeflow port-forward svc/ml-pipeline 8888` and "
                "KFP_HOST=http://127.0.0.1:8888",
            )
        return self.host

    def run_url(self, run_id: str) -> str:
        """The run's page in the KFP UI."""
        return f"{(self.ui_url or self.require_host()).rstrip('/')}/#/runs/details/{run_id}"

    def redact(self, text: str) -> str:
        text = text.replace(self.token, MASK) if self.token else text
        return redact_text(text)

    def __repr__(self) -> str:
        token = "<set, hidden>" if self.token else "None"
        return (
            f"KfpSettings(host={self.host!r}, token={token}, namespace={self.namespace!r}, "
            f"experiment={self.experiment!r}, pipeline_root={self.pipeline_root!r}, "
            f"ui_url={self.ui_url!r})"
        )

    __str__ = __repr__


@dataclass(frozen=True)
class SubmittedRun:
    run_id: str
    url: str
    run_name: str = ""
    experiment: str = ""
    service_account: str = ""
    notes: tuple[str, ...] = ()
    """Warnings worth printing (a backend version satk8s could not check)."""


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    name: str
    state: str
    url: str
    created_at: str = ""
    finished_at: str = ""
    error: str = ""
    """The server's error message for a failed run, else empty."""
    service_account: str = ""
    """The account the run executes as (the server's default when the request named none)."""
    store_root: str = ""
    """The run's satk8s store: its `store_root` argument, else the pipeline's default."""
    report_config: str = ""
    """The config (JSON text) of the pipeline's report task, when it has one."""

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def succeeded(self) -> bool:
        return self.state == "SUCCEEDED"


# --- the package, checked before any network call -------------------------------------------


def load_pipeline_spec(package: Path) -> dict[str, Any]:
    """The pipeline spec (first YAML document) of a compiled KFP package; DataError if it is
    missing or not a KFP pipeline YAML."""
    package = Path(package)
    if not package.is_file():
        raise DataError(str(package), "no such file; compile one with `satk8s grid compile`")
    if package.suffix not in (".yaml", ".yml"):
        raise DataError(str(package), "not a .yaml file; expected a compiled KFP pipeline YAML")
    try:
        docs = [d for d in yaml.safe_load_all(package.read_text()) if d is not None]
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise DataError(str(package), f"not valid YAML: {err}") from None
    spec = docs[0] if docs else None
    needed = ("pipelineInfo", "root", "schemaVersion")
    if not isinstance(spec, dict) or any(k not in spec for k in needed):
        raise DataError(
            str(package),
            f"not a KFP pipeline YAML (no {', '.join(needed)}); compile one with "
            "`satk8s grid compile GRID -o FILE` or kfp.compiler",
        )
    # The same parse the KFP client does; here its complaint names the file.
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    try:
        json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    except json_format.ParseError as err:
        raise DataError(str(package), f"not a valid KFP pipeline spec: {err}") from None
    return spec


def _coerce(name: str, kind: str, value: Any) -> Any:
    """A `--arg` value (a string from the command line) as the parameter's declared type."""
    if not isinstance(value, str) or kind == "STRING":
        return value
    try:
        if kind == "NUMBER_INTEGER":
            return int(value)
        if kind == "NUMBER_DOUBLE":
            return float(value)
        if kind == "BOOLEAN":
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(value)
            return value.lower() in ("true", "1")
        if kind in ("LIST", "STRUCT"):
            return json.loads(value)
    except ValueError:
        raise ConfigError(f"arg {name}", f"expected {kind}, got {value!r}") from None
    return value


def pipeline_arguments(spec: Mapping[str, Any], arguments: Mapping[str, Any]) -> dict[str, Any]:
    """`arguments` checked against the pipeline's parameters and converted to their types."""
    params = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {}) or {}
    unknown = sorted(set(arguments) - set(params))
    if unknown:
        known = ", ".join(sorted(params)) or "none"
        raise ConfigError(
            f"arg {unknown[0]}", f"the pipeline has no such parameter; known: {known}"
        )
    missing = sorted(
        n
        for n, p in params.items()
        if n not in arguments and "defaultValue" not in p and not p.get("isOptional")
    )
    if missing:
        raise ConfigError(
            f"arg {missing[0]}", f"required by the pipeline; pass --arg {missing[0]}=…"
        )
    return {n: _coerce(n, params[n].get("parameterType", ""), v) for n, v in arguments.items()}


# --- talking to the server -------------------------------------------------------------------


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # kfp.Client prints "Experiment details: …" / "Run details: …" and warns that it needs KFP
    # >= 2.0.0-beta.2 on every construction; the CLI prints its own, shorter lines.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore", FutureWarning)
        yield


def _reason(err: BaseException) -> str:
    """The useful part of a connection error (`[Errno 111] Connection refused`)."""
    text = str(err)
    found = re.search(r"\[Errno -?\d+\][^'\")\]]*", text)
    if found:
        return found.group(0).strip()
    for marker in ("timed out", "Name or service not known", "certificate verify failed"):
        if marker in text:
            return marker
    return type(err).__name__


def _api_message(err: Any) -> str:
    """The message of a KFP ApiException: its JSON body's `message`, else the reason."""
    body = getattr(err, "body", None)
    if body:
        try:
            parsed = json.loads(body)
            if isinstance(parsed, dict) and parsed.get("message"):
                return str(parsed["message"])
        except (ValueError, TypeError):
            pass
    return str(getattr(err, "reason", "") or err)


def _unreachable(settings: KfpSettings, err: BaseException) -> KfpError:
    return KfpError(
        settings.redact(
            f"cannot reach the KFP API at {settings.host}: {_reason(err)}; check KFP_HOST "
            "(without an ingress: `kubectl -n kubeflow port-forward svc/ml-pipeline 8888` "
            "and KFP_HOST=http://127.0.0.1:8888)"
        )
    )


def _call(settings: KfpSettings, what: str, fn: Callable[[], T]) -> T:
    """Run one kfp.Client call; any failure becomes a KfpError naming the host, token masked."""
    import urllib3
    from kfp_server_api.exceptions import ApiException

    try:
        with _quiet():
            return fn()
    except ApiException as err:
        status = getattr(err, "status", 0)
        message = _api_message(err)
        hint = {
            401: "; set KFP_TOKEN to a token the server accepts "
            f"({submit_token_hint(settings.namespace)})",
            403: forbidden_hint(message, settings.namespace),
        }.get(status, "")
        raise KfpError(
            settings.redact(
                f"KFP API at {settings.host}: {what} failed (HTTP {status}): {message}{hint}"
            )
        ) from None
    except (urllib3.exceptions.HTTPError, OSError) as err:
        raise _unreachable(settings, err) from None


def submit_token_hint(namespace: str) -> str:
    """Which token can submit: multi-user KFP authorizes the token's identity against
    `pipelines.kubeflow.org` RBAC in the namespace and reviews tokens for the audience
    `pipelines.kubeflow.org` (kubeflow/pipelines@2.17.0:backend/src/apiserver/resource/
    resource_manager.go IsAuthorized; common/const.go DefaultTokenReviewAudience); a profile's
    `default-editor` holds kubeflow-edit, which aggregates kubeflow-pipelines-edit
    (manifests/kustomize/base/installs/multi-user/view-edit-cluster-roles.yaml). A standalone
    KFP authorizes nothing."""
    return (
        "multi-user Kubeflow: a token of an identity with edit rights in the profile namespace, "
        f"e.g. `kubectl -n {namespace} create token default-editor "
        "--audience=pipelines.kubeflow.org`; standalone KFP needs none"
    )


def forbidden_hint(message: str, namespace: str) -> str:
    """What a 403 from the KFP API most likely means, naming the refused identity."""
    found = re.search(r"User '([^']+)' is not authorized", message)
    who = f"'{found.group(1)}'" if found else "this token's identity"
    runner = ""
    if found and found.group(1).startswith("system:serviceaccount:"):
        runner = (
            " A run ServiceAccount (satk8s-runner) is for the run's pods: it has no "
            "Pipelines permissions and cannot submit."
        )
    return (
        f". Likely cause: {who} has no Kubeflow Pipelines permissions in namespace "
        f"{namespace} (KFP_NAMESPACE; your profile namespace on a multi-user Kubeflow).{runner} "
        f"Submit with {submit_token_hint(namespace)}"
    )


def backend_version(health: Mapping[str, Any]) -> tuple[int, int, int] | None:
    """The backend's version from healthz `tag_name` (kubeflow/pipelines@2.17.0:
    backend/src/apiserver/main.go; "unknown" when the image was built without one)."""
    found = re.match(r"^v?(\d+)\.(\d+)\.(\d+)", str(health.get("tag_name") or ""))
    return (int(found[1]), int(found[2]), int(found[3])) if found else None


def check_backend(health: Mapping[str, Any], host: str) -> str | None:
    """KfpError when the backend is older than MIN_BACKEND; a note when its version cannot be
    read or is newer than TESTED_BACKEND; None when it is in the supported range."""
    tag = str(health.get("tag_name") or "")
    version = backend_version(health)
    supported = f"{MIN_BACKEND[0]}.{MIN_BACKEND[1]} to {TESTED_BACKEND[0]}.{TESTED_BACKEND[1]}"
    if version is None:
        return (
            f"could not read the KFP backend version at {host} (healthz tag_name "
            f"'{tag or 'missing'}'); satk8s supports KFP {supported}"
        )
    if version < MIN_BACKEND:
        raise KfpError(
            f"the KFP backend at {host} is KFP {tag} (healthz tag_name); satk8s needs KFP "
            f"{MIN_BACKEND[0]}.{MIN_BACKEND[1]} or newer: its pipelines reference Secrets "
            "with `optional: true`, which older backends drop, so every step pod whose "
            "optional Secret is absent stays in CreateContainerConfigError. Upgrade Kubeflow "
            f"Pipelines (supported: {supported})"
        )
    if version[:2] > TESTED_BACKEND:
        return f"KFP {tag} at {host} is newer than satk8s is checked against ({supported})"
    return None


def check_health(settings: KfpSettings) -> dict[str, Any]:
    """GET healthz once, with the token: fails fast and clearly where kfp.Client would retry."""
    import requests

    host = settings.require_host()
    headers = {"Accept": "application/json"}
    if settings.token:
        headers["Authorization"] = f"Bearer {settings.token}"
    try:
        response = requests.get(
            host + HEALTHZ_PATH, headers=headers, timeout=(_CONNECT_TIMEOUT_S, _READ_TIMEOUT_S)
        )
    except requests.RequestException as err:
        raise _unreachable(settings, err) from None
    if response.status_code in (401, 403):
        raise KfpError(
            f"the KFP API at {host} refused the request (HTTP {response.status_code}); set "
            f"KFP_TOKEN ({submit_token_hint(settings.namespace)})"
        )
    if response.status_code != 200:
        raise KfpError(
            f"the KFP API at {host} answered HTTP {response.status_code} on {HEALTHZ_PATH}; "
            "is KFP_HOST the URL kfp.Client takes (the API, not the central dashboard)?"
        )
    try:
        health = response.json()
    except ValueError:
        raise KfpError(
            f"{host}{HEALTHZ_PATH} answered with a page, not KFP's JSON (a login page?); set "
            "KFP_TOKEN so the auth proxy lets requests through, or point KFP_HOST at the API"
        ) from None
    return health if isinstance(health, dict) else {}


def connect(settings: KfpSettings) -> kfp.Client:
    """A kfp.Client for `settings`, after one healthz check."""
    check_health(settings)
    return _client(settings)


def _client(settings: KfpSettings) -> kfp.Client:
    import kfp

    return _call(
        settings,
        "connecting",
        lambda: kfp.Client(
            host=settings.host, existing_token=settings.token, namespace=settings.namespace
        ),
    )


@dataclass(frozen=True)
class RunRequest:
    """Everything `submit` sends to create a run, checked and known before any network call."""

    package: Path
    host: str
    namespace: str
    experiment: str
    service_account: str
    """Empty: the server picks its default runner (multi-user: the profile's default-editor)."""
    pipeline_name: str
    run_name: str
    arguments: dict[str, Any]
    """The parameters sent, typed as the pipeline declares them."""
    defaults: dict[str, Any]
    """The pipeline's own defaults for the parameters not sent (they apply on the server)."""
    pipeline_root: str | None
    tasks: int
    token_set: bool

    def body(self) -> dict[str, Any]:
        """The POST body kfp.Client sends (kfp_server_api.V2beta1Run), the pipeline spec and
        the experiment id (looked up by name at submit time) shown as descriptions."""
        runtime: dict[str, Any] = {"parameters": dict(self.arguments)}
        if self.pipeline_root:
            runtime["pipeline_root"] = self.pipeline_root
        body: dict[str, Any] = {
            "display_name": self.run_name,
            "experiment_id": f"<id of experiment '{self.experiment}' in {self.namespace}>",
            "pipeline_spec": f"<{self.pipeline_name}: {self.tasks} tasks, from {self.package}>",
            "runtime_config": runtime,
        }
        if self.service_account:
            body["service_account"] = self.service_account
        return body

    def describe(self, settings: KfpSettings) -> str:
        """The request for a person: where it goes, as whom, with which parameters; the
        token never, every known secret value masked."""
        root = self.pipeline_root or "(the namespace's kfp-launcher default)"
        account = self.service_account or "(the server's default runner)"
        lines = [
            f"POST {self.host}{RUNS_PATH}",
            f"  host             {self.host}",
            f"  namespace        {self.namespace}",
            f"  experiment       {self.experiment} (found by name, created if missing)",
            f"  service account  {account}",
            f"  pipeline         {self.pipeline_name} ({self.package}, {self.tasks} tasks)",
            f"  run name         {self.run_name}",
            f"  pipeline root    {root}",
            f"  token            {'set (hidden)' if self.token_set else 'none'}",
            "  parameters (sent):" if self.arguments else "  parameters (sent): none",
            *(f"    {k} = {v!r}" for k, v in sorted(self.arguments.items())),
            "  parameters (the pipeline's defaults, applied by the server):",
            *(f"    {k} = {v!r}" for k, v in sorted(self.defaults.items())),
            "body:",
            json.dumps(self.body(), indent=2, sort_keys=True, default=str),
        ]
        return settings.redact("\n".join(lines))


def prepare_submit(
    package: Path,
    settings: KfpSettings,
    run_name: str | None = None,
    arguments: Mapping[str, Any] | None = None,
    service_account: str | None = None,
) -> RunRequest:
    """The run request for a compiled package: the package and arguments checked, the run
    named, nothing sent."""
    spec = load_pipeline_spec(Path(package))
    args = pipeline_arguments(spec, dict(arguments or {}))
    host = settings.require_host()
    pipeline = spec.get("pipelineInfo", {}).get("name") or Path(package).stem
    if run_name is None:
        run_name = f"{pipeline} {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M:%S}"
    params = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {}) or {}
    defaults = {
        name: p["defaultValue"]
        for name, p in params.items()
        if name not in args and "defaultValue" in p
    }
    return RunRequest(
        package=Path(package),
        host=host,
        namespace=settings.namespace,
        experiment=settings.experiment,
        service_account=service_account or "",
        pipeline_name=pipeline,
        run_name=run_name,
        arguments=args,
        defaults=defaults,
        pipeline_root=settings.pipeline_root,
        tasks=len(spec.get("root", {}).get("dag", {}).get("tasks", {}) or {}),
        token_set=bool(settings.token),
    )


def submit(
    package: Path,
    settings: KfpSettings,
    run_name: str | None = None,
    arguments: Mapping[str, Any] | None = None,
    client: kfp.Client | None = None,
    service_account: str | None = None,
) -> SubmittedRun:
    """Create a run of a compiled pipeline package in the settings' experiment, executing as
    `service_account` (None: the server's default runner).

    The package and the arguments are checked before any network call; a backend older than
    KFP 2.15 is refused before anything is created."""
    request = prepare_submit(package, settings, run_name, arguments, service_account)
    return send(request, settings, client)


def send(
    request: RunRequest, settings: KfpSettings, client: kfp.Client | None = None
) -> SubmittedRun:
    """Create the run `request` describes (healthz and the backend version checked first
    unless a client is given)."""
    notes: tuple[str, ...] = ()
    if client is None:
        note = check_backend(check_health(settings), request.host)
        notes = (note,) if note else ()
        client = _client(settings)
    result = _call(
        settings,
        "submitting the run",
        lambda: client.create_run_from_pipeline_package(
            pipeline_file=str(request.package),
            arguments=request.arguments,
            run_name=request.run_name,
            experiment_name=request.experiment,
            namespace=request.namespace,
            pipeline_root=request.pipeline_root,
            service_account=request.service_account or None,
        ),
    )
    run_id = result.run_id
    return SubmittedRun(
        run_id,
        settings.run_url(run_id),
        request.run_name,
        request.experiment,
        request.service_account,
        notes,
    )


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


def _run_info(settings: KfpSettings, run: Any) -> RunInfo:
    error = getattr(run, "error", None)
    message = getattr(error, "message", None) if error is not None else None
    store_root, report_config = run_pipeline_facts(
        getattr(run, "pipeline_spec", None), getattr(run, "runtime_config", None)
    )
    return RunInfo(
        run_id=run.run_id,
        name=run.display_name or "",
        state=str(run.state or "RUNTIME_STATE_UNSPECIFIED").upper(),
        url=settings.run_url(run.run_id),
        created_at=_text(run.created_at),
        finished_at=_text(run.finished_at),
        error=settings.redact(message or ""),
        service_account=getattr(run, "service_account", None) or "",
        store_root=store_root,
        report_config=report_config,
    )


def run_pipeline_facts(pipeline_spec: Any, runtime_config: Any) -> tuple[str, str]:
    """(store root, report task config JSON) of a run created from an inline pipeline spec,
    which the server returns with the run (kubeflow/pipelines@2.17.0:backend/src/apiserver/
    server/api_converter.go, toApiRun: pipeline_spec and runtime_config); ("", "") when the run
    is not a satk8s grid."""
    spec = pipeline_spec if isinstance(pipeline_spec, Mapping) else {}
    spec = spec.get("pipeline_spec", spec)  # kfp.Client nests it when a platform spec exists
    if not isinstance(spec, Mapping):
        return "", ""
    params = getattr(runtime_config, "parameters", None)
    if params is None and isinstance(runtime_config, Mapping):
        params = runtime_config.get("parameters")
    declared = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {}) or {}
    store_root = (params or {}).get("store_root") or (declared.get("store_root") or {}).get(
        "defaultValue", ""
    )
    report = ""
    for task in (spec.get("root", {}).get("dag", {}).get("tasks") or {}).values():
        if task.get("taskInfo", {}).get("name") == "report":
            config = task.get("inputs", {}).get("parameters", {}).get("config_json", {})
            report = config.get("runtimeValue", {}).get("constant", "") or ""
    return str(store_root or ""), str(report)


def list_runs(
    settings: KfpSettings, limit: int = 20, client: kfp.Client | None = None
) -> list[RunInfo]:
    """The newest `limit` runs in the settings' experiment; none when it does not exist yet."""
    client = client or connect(settings)

    def experiment_id() -> str | None:
        try:
            found = client.get_experiment(
                experiment_name=settings.experiment, namespace=settings.namespace
            )
        except ValueError as err:  # kfp's "No experiment is found with name …"
            if str(err).startswith("No experiment is found"):
                return None
            raise KfpError(settings.redact(str(err))) from None
        return found.experiment_id

    exp_id = _call(settings, f"finding experiment '{settings.experiment}'", experiment_id)
    if exp_id is None:
        return []
    response = _call(
        settings,
        "listing runs",
        lambda: client.list_runs(
            experiment_id=exp_id,
            namespace=settings.namespace,
            page_size=limit,
            sort_by="created_at desc",
        ),
    )
    return [_run_info(settings, run) for run in response.runs or []]


def run_status(run_id: str, settings: KfpSettings, client: kfp.Client | None = None) -> RunInfo:
    """One run's state, name, times and error message."""
    return run_details(run_id, settings, client)[0]


def run_details(
    run_id: str, settings: KfpSettings, client: kfp.Client | None = None
) -> tuple[RunInfo, dict[str, Any]]:
    """One run's RunInfo, and the server's whole v2beta1 Run as a dict (its
    `run_details.task_details` and `pipeline_spec`, for `run_watch`)."""
    client = client or connect(settings)
    run = _call(settings, f"getting run {run_id}", lambda: client.get_run(run_id))
    return _run_info(settings, run), run.to_dict()


def wait_for_run(
    run_id: str,
    settings: KfpSettings,
    timeout: float | None = None,
    poll: float = 10.0,
    on_change: Callable[[RunInfo], None] | None = None,
    client: kfp.Client | None = None,
) -> RunInfo:
    """Poll a run until it reaches a terminal state; KfpError after `timeout` seconds.

    `on_change` sees the run each time its state changes (progress for the CLI).
    """
    client = client or connect(settings)
    deadline = None if timeout is None else time.monotonic() + timeout
    last = None
    while True:
        info = run_status(run_id, settings, client=client)
        if on_change is not None and info.state != last:
            on_change(info)
        last = info.state
        if info.finished:
            return info
        if deadline is not None and time.monotonic() >= deadline:
            raise KfpError(
                f"run {run_id} is still {info.state} after {timeout:g} s; "
                f"see {info.url} (the run goes on; `satk8s runs wait {run_id}` again)"
            )
        time.sleep(poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic())))
