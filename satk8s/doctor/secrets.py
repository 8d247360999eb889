"""Check: the satk8s-settings ConfigMap is there, and every Secret it names holds its keys."""

from __future__ import annotations

from satk8s.cluster.settings import SECRET_KEYS
from satk8s.doctor.context import SETTINGS_CONFIGMAP, DoctorContext, api_error_text, forbidden
from satk8s.doctor.launcher import INSTALL_FIX
from satk8s.doctor.result import CheckResult
from satk8s.errors import ConfigError

NAME = "secrets"

_WHAT = {
    "s3Secret": "S3 credentials",
    "hubTokenSecret": "hub token",
    "judgeApiKeySecret": "judge API key",
}
SECRETS = tuple((_WHAT[name], name, keys) for name, keys in SECRET_KEYS)
"""(what it is, settings key of the Secret's name, settings keys of the keys it must hold)."""


def check_secrets(ctx: DoctorContext) -> CheckResult:
    ns = ctx.namespace
    try:
        settings = ctx.configmap(SETTINGS_CONFIGMAP)
        ctx.settings()  # every key checked: a bad value is named here
    except ConfigError as err:
        return CheckResult.fail(
            NAME, str(err), f"fix the chart values and `helm upgrade satk8s helm/satk8s -n {ns}`"
        )
    except Exception as err:
        return CheckResult.fail(
            NAME,
            f"cannot read ConfigMap {SETTINGS_CONFIGMAP}: {api_error_text(err)}",
            f"you need get on configmaps and secrets in {ns} (a namespace editor role)",
        )
    if settings is None:
        return CheckResult.fail(
            NAME,
            f"no ConfigMap {SETTINGS_CONFIGMAP} in namespace {ns}: the satk8s chart is not "
            "installed here",
            INSTALL_FIX.format(ns=ns),
        )

    details, problems, fixes = [], [], []
    for what, name_key, key_keys in SECRETS:
        name = settings.get(name_key, "")
        keys = [settings.get(k, "") for k in key_keys]
        if not name:
            details.append(f"{what}: not configured")
            continue
        try:
            data = ctx.secret(name)
        except Exception as err:
            problems.append(f"cannot read Secret {name} ({what}): {api_error_text(err)}")
            fixes.append(
                f"you need get on secrets in {ns}"
                if forbidden(err)
                else "re-run when the API answers"
            )
            continue
        if data is None:
            problems.append(f"Secret {name} ({what}) is missing")
            literals = " ".join(f"--from-literal={k}=<value>" for k in keys)
            fixes.append(
                f"kubectl -n {ns} create secret generic {name} {literals} (or, with "
                f"source=external, check `kubectl -n {ns} describe externalsecret {name}`)"
            )
            continue
        empty = [k for k in keys if not data.get(k)]
        if empty:
            problems.append(f"Secret {name} ({what}) has no value for {', '.join(empty)}")
            fixes.append(
                f"recreate it with those keys: kubectl -n {ns} create secret generic {name} "
                + " ".join(f"--from-literal={k}=<value>" for k in keys)
                + " --dry-run=client -o yaml | kubectl apply -f -"
            )
            continue
        details.append(f"{what}: Secret {name} has {', '.join(keys)}")

    if problems:
        return CheckResult.fail(NAME, "; ".join(problems), "; ".join(fixes), tuple(details))
    configured = sum(1 for d in details if not d.endswith("not configured"))
    return CheckResult.ok(
        NAME, f"{SETTINGS_CONFIGMAP} found; {configured} Secret(s) present", tuple(details)
    )
