"""Check: KFP's kfp-launcher ConfigMap gives runs the pipeline root satk8s-settings names, with
S3 credentials for it (what `satk8s setup launcher` merges in; `satk8s.cluster.launcher`).

KFP's own default root (the profile controller's `minio://…` in a profile namespace, or none at
all) is fine when the settings name no pipeline root: KFP keeps its artifacts in its own store."""

from __future__ import annotations

from satk8s.cluster.launcher import (
    KFP_MINIO_SECRET,
    LAUNCHER_CONFIGMAP,
    LauncherConfig,
    parse_launcher,
    s3_provider,
)
from satk8s.cluster.settings import ClusterSettings
from satk8s.doctor.context import DoctorContext, api_error_text
from satk8s.doctor.result import CheckResult

NAME = "kfp-launcher"
INSTALL_FIX = (
    "install the satk8s chart in this namespace: helm upgrade --install satk8s helm/satk8s "
    "-n {ns} --set store.root=s3://<bucket>/<prefix>"
)
SETUP_FIX = "satk8s setup launcher -n {ns} (shows the change, then merges satk8s's keys)"

__all__ = ["INSTALL_FIX", "NAME", "LauncherConfig", "check_launcher", "read_launcher"]


def read_launcher(ctx: DoctorContext) -> LauncherConfig:
    """The namespace's launcher config. Raises LookupError if absent, ValueError if malformed."""
    data = ctx.configmap(LAUNCHER_CONFIGMAP)
    if data is None:
        raise LookupError(f"no ConfigMap {LAUNCHER_CONFIGMAP} in namespace {ctx.namespace}")
    return parse_launcher(data)


def _providers_match(ctx: DoctorContext, settings: ClusterSettings) -> bool:
    """Whether kfp-launcher's providers.s3.default is what the settings would write."""
    import yaml

    data = ctx.configmap(LAUNCHER_CONFIGMAP) or {}
    providers = yaml.safe_load(data.get("providers") or "") or {}
    return ((providers.get("s3") or {}).get("default")) == s3_provider(settings)


def check_launcher(ctx: DoctorContext) -> CheckResult:
    ns = ctx.namespace
    setup = SETUP_FIX.format(ns=ns)
    try:
        launcher = read_launcher(ctx)
    except LookupError as err:
        return CheckResult.fail(
            NAME,
            f"{err}: KFP creates it (its profile controller in every multi-user profile "
            "namespace; a standalone KFP in its own namespace, kubeflow), so runs cannot run here",
            "pass the namespace your runs use (-n); on multi-user Kubeflow, is it a profile "
            "namespace with pipelines enabled?",
        )
    except ValueError as err:
        return CheckResult.fail(NAME, f"ConfigMap {LAUNCHER_CONFIGMAP} {err}", setup)
    except Exception as err:
        return CheckResult.fail(
            NAME,
            f"cannot read ConfigMap {LAUNCHER_CONFIGMAP}: {api_error_text(err)}",
            f"you need get on configmaps in {ns} (a namespace editor role)",
        )
    try:
        settings = ctx.settings()
    except Exception:  # the secrets check reports a missing or malformed satk8s-settings
        settings = None
    root = launcher.pipeline_root
    wanted = settings.pipeline_root if settings else ""
    if wanted and root != wanted:
        return CheckResult.fail(
            NAME,
            f"defaultPipelineRoot is {root if not launcher.root_is_default else 'unset'}, but "
            f"satk8s-settings names {wanted}",
            setup,
        )
    if launcher.scheme == "s3":
        fallback = (settings is None or settings.s3_secret) and not launcher.has_s3_provider
        if fallback:
            return CheckResult.fail(
                NAME,
                f"pipeline root {root} has no providers.s3 section: KFP's launcher would take "
                "S3 credentials from the pod's environment, and the runs have none there",
                setup,
            )
        if (
            settings is not None
            and launcher.has_s3_provider
            and not _providers_match(ctx, settings)
        ):
            return CheckResult.warn(
                NAME,
                f"pipeline root {root}: providers.s3.default differs from what satk8s-settings "
                "says (endpoint, region, addressing or credentials)",
                setup,
            )
        credentials = (
            f"Secret {launcher.secret_ref.name}" if launcher.secret_ref else "the pod's environment"
        )
        endpoint = launcher.endpoint or "AWS default"
        return CheckResult.ok(
            NAME, f"pipeline root {root} (endpoint {endpoint}, keys from {credentials})"
        )
    if launcher.scheme == "minio":
        where = "KFP's default" if launcher.root_is_default else "KFP's object store"
        return CheckResult.ok(
            NAME,
            f"pipeline root {root} ({where}; the launcher reads Secret {KFP_MINIO_SECRET}); "
            "satk8s's own outputs go to the store",
        )
    return CheckResult.ok(NAME, f"pipeline root {root} (provider '{launcher.scheme}', not checked)")
