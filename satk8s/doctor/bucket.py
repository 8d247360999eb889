"""Check: the bucket under the pipeline root takes a write (and a delete) with the runs' keys."""

from __future__ import annotations

import uuid
from urllib.parse import urlparse

from satk8s.doctor.context import DoctorContext, api_error_text
from satk8s.doctor.launcher import LauncherConfig, read_launcher
from satk8s.doctor.result import CheckResult

NAME = "bucket"
PROBE_DIR = ".satk8s-doctor"


def _split(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"'{uri}' is not s3://bucket[/prefix]")
    return parsed.netloc, parsed.path.strip("/")


def _endpoint_url(launcher: LauncherConfig | None) -> str | None:
    """boto3's endpoint_url for KFP's `endpoint` (host[:port]); None lets boto3 pick AWS's
    regional endpoint, which path-style requests to a non-us-east-1 bucket need."""
    endpoint = launcher.endpoint if launcher else None
    if not endpoint or endpoint.split(":")[0].endswith("amazonaws.com"):
        return None
    if "://" in endpoint:
        return endpoint
    return f"{'http' if launcher.disable_ssl else 'https'}://{endpoint}"


def _s3_client(launcher: LauncherConfig | None, keys: tuple[str, str] | None):
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=5,
        read_timeout=10,
        retries={"max_attempts": 1, "mode": "standard"},
        s3={"addressing_style": "path" if (launcher and launcher.force_path_style) else "auto"},
        # boto3 >= 1.36 adds CRC checksums by default, which many S3-compatible stores reject.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    credentials = {}
    if keys:
        credentials = {"aws_access_key_id": keys[0], "aws_secret_access_key": keys[1]}
    return boto3.client(
        "s3",
        endpoint_url=_endpoint_url(launcher),
        region_name=(launcher.region if launcher else None) or "us-east-1",
        config=config,
        **credentials,
    )


def _client_error_fix(code: str, bucket: str, prefix: str, ns: str, secret: str | None) -> str:
    resource = f"arn:aws:s3:::{bucket}/{prefix + '/' if prefix else ''}*"
    if code in ("NoSuchBucket",):
        return f"create the bucket (aws s3 mb s3://{bucket}) or fix store.pipelineRoot"
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"):
        where = f"Secret {secret} in {ns}" if secret else "your AWS credentials"
        return f"the keys are wrong or expired: update {where}"
    if code in ("AccessDenied", "403", "AllAccessDisabled"):
        who = (
            f"the keys in Secret {secret}"
            if secret
            else "the role the runs use (IRSA/workload identity)"
        )
        return (
            f"grant {who} s3:PutObject, s3:GetObject and s3:DeleteObject on {resource}, "
            f"and s3:ListBucket on arn:aws:s3:::{bucket}"
        )
    if code in ("PermanentRedirect", "301", "AuthorizationHeaderMalformed"):
        return "the bucket is in another region: set store.region to the bucket's region"
    return f"check store.endpoint and store.region for bucket {bucket}"


def check_bucket(ctx: DoctorContext) -> CheckResult:
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    ns = ctx.namespace
    launcher: LauncherConfig | None = None
    reason = ""
    try:
        launcher = read_launcher(ctx)
    except (LookupError, ValueError) as err:
        reason = str(err)
    except Exception as err:
        reason = api_error_text(err)
    if launcher is None and not ctx.options.bucket:
        return CheckResult.fail(
            NAME,
            f"no pipeline root to probe: {reason}",
            "fix the kfp-launcher check above, or pass --bucket s3://<bucket>/<prefix>",
        )
    uri = ctx.options.bucket or launcher.pipeline_root
    try:
        bucket, prefix = _split(uri)
    except ValueError as err:
        return CheckResult.fail(NAME, str(err), "pass --bucket s3://<bucket>/<prefix>")

    keys = None
    secret = launcher.secret_ref if launcher else None
    if secret:
        try:
            data = ctx.secret(secret.name)
        except Exception as err:
            return CheckResult.fail(
                NAME,
                f"cannot read Secret {secret.name} for the S3 keys: {api_error_text(err)}",
                f"you need get on that Secret in {ns} (the chart's Role grants it to the runs)",
            )
        if not data or not data.get(secret.access_key_key) or not data.get(secret.secret_key_key):
            return CheckResult.fail(
                NAME,
                f"Secret {secret.name} is missing or lacks "
                f"{secret.access_key_key}/{secret.secret_key_key}",
                f"kubectl -n {ns} create secret generic {secret.name} "
                f"--from-literal={secret.access_key_key}=<id> "
                f"--from-literal={secret.secret_key_key}=<secret>",
            )
        keys = (data[secret.access_key_key], data[secret.secret_key_key])
    who = f"keys from Secret {secret.name}" if secret else "credentials from the environment"

    key = "/".join(p for p in (prefix, PROBE_DIR, f"{uuid.uuid4().hex}.txt") if p)
    s3 = _s3_client(launcher, keys)
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=b"satk8s doctor write probe\n")
    except ClientError as err:
        code = str(err.response.get("Error", {}).get("Code", "unknown"))
        return CheckResult.fail(
            NAME,
            f"cannot write s3://{bucket}/{key} with {who}: {code}",
            _client_error_fix(code, bucket, prefix, ns, secret.name if secret else None),
        )
    except NoCredentialsError:
        return CheckResult.fail(
            NAME,
            "no S3 credentials: kfp-launcher takes them from the pod's environment, and this "
            "machine has none",
            "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE here, or run the check "
            "in the namespace: helm test <release>",
        )
    except BotoCoreError as err:
        return CheckResult.fail(
            NAME,
            f"cannot reach S3 for s3://{bucket}: {err}",
            "check store.endpoint (host[:port], no scheme) and store.disableSSL in the chart values",
        )
    try:
        s3.delete_object(Bucket=bucket, Key=key)
    except (ClientError, BotoCoreError) as err:
        return CheckResult.warn(
            NAME,
            f"wrote s3://{bucket}/{key} with {who} but could not delete it: {err}",
            f"grant s3:DeleteObject on arn:aws:s3:::{bucket}/*; delete the probe object by hand",
        )
    return CheckResult.ok(NAME, f"s3://{bucket}/{prefix} is writable with {who}")
