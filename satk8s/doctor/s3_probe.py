"""Write, read back and delete one probe object in a bucket, as the pods would reach it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from satk8s.doctor.result import CheckResult

PROBE_DIR = ".satk8s-doctor"


def split_s3(uri: str) -> tuple[str, str]:
    """(bucket, prefix) of s3://bucket[/prefix]; ValueError otherwise."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"'{uri}' is not s3://bucket[/prefix]")
    return parsed.netloc, parsed.path.strip("/")


def s3_client(
    endpoint_url: str | None,
    region: str | None,
    path_style: bool,
    keys: tuple[str, str] | None,
) -> Any:
    """A boto3 S3 client that fails in seconds; `keys` None uses boto3's own chain."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=5,
        read_timeout=10,
        retries={"max_attempts": 1, "mode": "standard"},
        s3={"addressing_style": "path" if path_style else "auto"},
        # boto3 >= 1.36 adds CRC checksums by default, which many S3-compatible stores reject.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    credentials = {}
    if keys:
        credentials = {"aws_access_key_id": keys[0], "aws_secret_access_key": keys[1]}
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region or "us-east-1",
        config=config,
        **credentials,
    )


@dataclass(frozen=True)
class ProbeTarget:
    """What is probed and how a failure is explained."""

    check: str
    """The doctor check's name."""
    uri: str
    who: str
    """The credentials, for messages: `keys from Secret X` or `credentials from the environment`."""
    secret: str | None
    """The Secret the keys came from, if any."""
    namespace: str
    settings_hint: str
    """Which setting fixes the root, endpoint or region (chart values)."""


def client_error_fix(code: str, target: ProbeTarget, bucket: str, prefix: str) -> str:
    resource = f"arn:aws:s3:::{bucket}/{prefix + '/' if prefix else ''}*"
    if code in ("NoSuchBucket",):
        return f"create the bucket (aws s3 mb s3://{bucket}) or fix {target.settings_hint}"
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"):
        where = f"Secret {target.secret} in {target.namespace}" if target.secret else "the keys"
        return f"the keys are wrong or expired: update {where}"
    if code in ("AccessDenied", "403", "AllAccessDisabled"):
        who = (
            f"the keys in Secret {target.secret}"
            if target.secret
            else "the role the runs use (IRSA/workload identity)"
        )
        return (
            f"grant {who} s3:PutObject, s3:GetObject and s3:DeleteObject on {resource}, "
            f"and s3:ListBucket on arn:aws:s3:::{bucket}"
        )
    if code in ("PermanentRedirect", "301", "AuthorizationHeaderMalformed"):
        return "the bucket is in another region: set store.region to the bucket's region"
    return f"check store.endpoint and store.region for bucket {bucket}"


def probe(target: ProbeTarget, s3: Any) -> CheckResult:
    """Put a small object under the root, read it back, delete it."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    name = target.check
    try:
        bucket, prefix = split_s3(target.uri)
    except ValueError as err:
        return CheckResult.fail(name, str(err), f"set {target.settings_hint} to s3://bucket/prefix")
    key = "/".join(p for p in (prefix, PROBE_DIR, f"{uuid.uuid4().hex}.txt") if p)
    where = f"s3://{bucket}/{key}"
    body = f"satk8s doctor probe {uuid.uuid4().hex}\n".encode()
    step = "write"
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        step = "read back"
        got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as err:
        code = str(err.response.get("Error", {}).get("Code", "unknown"))
        return CheckResult.fail(
            name,
            f"cannot {step} {where} with {target.who}: {code}",
            client_error_fix(code, target, bucket, prefix),
        )
    except NoCredentialsError:
        return CheckResult.fail(
            name,
            f"no S3 credentials for {target.uri}: the pods take them from their environment "
            "(cloud identity), and this machine has none",
            "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE here, or run the check "
            "in the namespace: helm test <release>",
        )
    except BotoCoreError as err:
        return CheckResult.fail(
            name,
            f"cannot reach S3 for s3://{bucket}: {err}",
            "check store.endpoint (host[:port], no scheme) and store.disableSSL in the chart values",
        )
    problem = None if got == body else f"read back other bytes than were written to {where}"
    try:
        s3.delete_object(Bucket=bucket, Key=key)
    except (ClientError, BotoCoreError) as err:
        return CheckResult.warn(
            name,
            f"wrote and read {where} with {target.who} but could not delete it: {err}",
            f"grant s3:DeleteObject on arn:aws:s3:::{bucket}/*; delete the probe object by hand",
        )
    if problem:
        return CheckResult.fail(
            name, problem, "check store.endpoint: is it the S3 API of the store you mean?"
        )
    return CheckResult.ok(
        name, f"{target.uri} takes a write, a read and a delete with {target.who}"
    )


__all__ = ["PROBE_DIR", "ProbeTarget", "client_error_fix", "probe", "s3_client", "split_s3"]
