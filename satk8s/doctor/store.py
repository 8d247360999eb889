"""Check: the satk8s store (satk8s-settings' storeRoot) takes a write, a read and a delete with
the credentials and endpoint the step pods get: the keys of the S3 Secret the settings name (or,
without one, this machine's environment, as a pod's cloud identity would), the settings' S3
endpoint, region and addressing style. This is the bucket every step writes its outputs to."""

from __future__ import annotations

from satk8s.doctor.context import DoctorContext, api_error_text, settings_for_check
from satk8s.doctor.result import CheckResult
from satk8s.doctor.s3_probe import ProbeTarget, probe, s3_client

NAME = "store"


def check_store(ctx: DoctorContext) -> CheckResult:
    ns = ctx.namespace
    settings = settings_for_check(ctx, NAME)
    if isinstance(settings, CheckResult):
        return settings
    if not settings.store_root:
        return CheckResult.warn(
            NAME,
            "satk8s-settings names no store (storeRoot): every compile must be given one",
            f"helm upgrade satk8s helm/satk8s -n {ns} --reuse-values "
            "--set store.root=s3://<bucket>/<prefix>",
        )
    keys = None
    if settings.s3_secret:
        try:
            data = ctx.secret(settings.s3_secret)
        except Exception as err:
            return CheckResult.fail(
                NAME,
                f"cannot read Secret {settings.s3_secret} for the S3 keys: {api_error_text(err)}",
                f"you need get on that Secret in {ns} (the chart's Role grants it to the runs)",
            )
        access, secret = settings.s3_access_key_key, settings.s3_secret_key_key
        if not data or not data.get(access) or not data.get(secret):
            return CheckResult.fail(
                NAME,
                f"Secret {settings.s3_secret} is missing or lacks {access}/{secret}: the step "
                "pods would have no S3 keys",
                f"kubectl -n {ns} create secret generic {settings.s3_secret} "
                f"--from-literal={access}=<id> --from-literal={secret}=<secret>",
            )
        keys = (data[access], data[secret])
    who = (
        f"keys from Secret {settings.s3_secret}"
        if settings.s3_secret
        else "credentials from the environment (the pods' cloud identity)"
    )
    target = ProbeTarget(
        NAME, settings.store_root, who, settings.s3_secret or None, ns, "store.root"
    )
    path_style = settings.s3_addressing_style == "path" or (
        settings.s3_addressing_style == "auto" and bool(settings.s3_endpoint_url)
    )
    client = s3_client(settings.s3_endpoint_url or None, settings.s3_region, path_style, keys)
    return probe(target, client)
