"""Check: the namespace's `kfp-launcher` ConfigMap sends run artifacts to S3 and says how.

KFP reads `defaultPipelineRoot` and the `providers` YAML from it, per namespace:
    providers: |
      s3:
        default:
          endpoint: s3.amazonaws.com
          region: us-east-1
          credentials: {fromEnv: true}   # or {fromEnv: false, secretRef: {secretName, accessKeyKey, secretKeyKey}}
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from satk8s.doctor.context import LAUNCHER_CONFIGMAP, DoctorContext, api_error_text
from satk8s.doctor.result import CheckResult

NAME = "kfp-launcher"
INSTALL_FIX = (
    "install the satk8s chart in this namespace: helm upgrade --install satk8s helm/satk8s "
    "-n {ns} --set store.pipelineRoot=s3://<bucket>/<prefix>"
)


@dataclass(frozen=True)
class SecretRef:
    name: str
    access_key_key: str
    secret_key_key: str


@dataclass(frozen=True)
class LauncherConfig:
    pipeline_root: str
    endpoint: str | None = None
    region: str | None = None
    disable_ssl: bool = False
    force_path_style: bool = True
    secret_ref: SecretRef | None = None
    """None: credentials come from the pod's environment (cloud identity)."""


def parse_launcher(data: dict[str, str]) -> LauncherConfig:
    """The S3 settings of a kfp-launcher ConfigMap's data. Raises ValueError naming the bad key."""
    root = (data.get("defaultPipelineRoot") or "").strip()
    if not root:
        raise ValueError("has no defaultPipelineRoot, so runs fall back to KFP's default store")
    if not root.startswith("s3://") or len(root) <= len("s3://"):
        raise ValueError(f"defaultPipelineRoot is '{root}', not s3://bucket[/prefix]")
    if not data.get("providers"):
        # KFP then reads S3 credentials from the pod's environment (fromEnv).
        return LauncherConfig(pipeline_root=root)
    try:
        providers = yaml.safe_load(data["providers"]) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"providers is not valid YAML: {err}") from err
    default = ((providers.get("s3") or {}) if isinstance(providers, dict) else {}).get("default")
    if not isinstance(default, dict):
        raise ValueError("providers has no s3.default section for the s3:// pipeline root")
    credentials = default.get("credentials")
    if not isinstance(credentials, dict):
        raise ValueError("providers.s3.default has no credentials (fromEnv or secretRef)")
    secret_ref = None
    if not credentials.get("fromEnv"):
        ref = credentials.get("secretRef") or {}
        missing = [k for k in ("secretName", "accessKeyKey", "secretKeyKey") if not ref.get(k)]
        if missing:
            raise ValueError(
                f"providers.s3.default.credentials.secretRef lacks {', '.join(missing)} "
                "(and fromEnv is false)"
            )
        secret_ref = SecretRef(ref["secretName"], ref["accessKeyKey"], ref["secretKeyKey"])
    return LauncherConfig(
        pipeline_root=root,
        endpoint=default.get("endpoint") or None,
        region=default.get("region") or None,
        disable_ssl=bool(default.get("disableSSL", False)),
        force_path_style=bool(default.get("forcePathStyle", True)),
        secret_ref=secret_ref,
    )


def read_launcher(ctx: DoctorContext) -> LauncherConfig:
    """The namespace's launcher config. Raises LookupError if absent, ValueError if malformed."""
    data = ctx.configmap(LAUNCHER_CONFIGMAP)
    if data is None:
        raise LookupError(f"no ConfigMap {LAUNCHER_CONFIGMAP} in namespace {ctx.namespace}")
    return parse_launcher(data)


def check_launcher(ctx: DoctorContext) -> CheckResult:
    fix = INSTALL_FIX.format(ns=ctx.namespace)
    try:
        launcher = read_launcher(ctx)
    except LookupError as err:
        return CheckResult.fail(NAME, f"{err}: runs would write to KFP's default store", fix)
    except ValueError as err:
        return CheckResult.fail(NAME, f"ConfigMap {LAUNCHER_CONFIGMAP} {err}", fix)
    except Exception as err:
        return CheckResult.fail(
            NAME,
            f"cannot read ConfigMap {LAUNCHER_CONFIGMAP}: {api_error_text(err)}",
            f"you need get on configmaps in {ctx.namespace} (a namespace editor role)",
        )
    credentials = (
        f"Secret {launcher.secret_ref.name}" if launcher.secret_ref else "the pod's environment"
    )
    endpoint = launcher.endpoint or "AWS default"
    return CheckResult.ok(
        NAME,
        f"pipeline root {launcher.pipeline_root} (endpoint {endpoint}, keys from {credentials})",
    )
