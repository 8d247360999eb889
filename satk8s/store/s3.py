"""The `s3://` store over boto3: AWS S3, MinIO and any S3-compatible endpoint.

Large files stream in parts (boto3 `TransferConfig`: parallel multipart uploads and ranged
downloads). A multipart object becomes visible only when its upload completes, so a killed
upload never leaves a half object behind. Each object carries its sha256 as metadata
(`x-amz-meta-sha256`), checked after every download.
"""

from __future__ import annotations

import functools
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from satk8s.store.base import ObjectInfo
from satk8s.store.errors import CorruptObjectError, StoreError
from satk8s.store.manifest import sha256_file
from satk8s.store.redact import install_log_redaction
from satk8s.store.settings import S3Settings

log = logging.getLogger(__name__)
MiB = 1 << 20
SHA_KEY = "sha256"  # object metadata key: x-amz-meta-sha256
_CONFLICT = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}
_MISSING = {"NoSuchKey", "404", "NotFound"}
_HINTS = {
    "NoSuchBucket": "the bucket does not exist; create it or fix the location",
    "AccessDenied": "access denied; check the credentials and the bucket policy",
    "InvalidAccessKeyId": "the access key is not known to this endpoint; check the credentials",
    "SignatureDoesNotMatch": "the secret key does not match; check the credentials",
    "ExpiredToken": "the session token expired; refresh the credentials",
    "PreconditionFailed": "another writer created or changed it meanwhile (a conditional "
    "write failed); this writer's result is not committed",
    "ConditionalRequestConflict": "another writer is writing it at the same time; this "
    "writer's result is not committed",
    "NoSuchKey": "no such object",
    "404": "no such object",
    "403": "access denied; check the credentials and the bucket policy",
}
T = TypeVar("T")


def split(uri: str) -> tuple[str, str]:
    """`s3://bucket/a/b` -> (`bucket`, `a/b`)."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise StoreError(uri, "not an s3://bucket/key location")
    return parsed.netloc, parsed.path.lstrip("/")


@contextmanager
def s3_errors(uri: str, action: str) -> Iterator[None]:
    """Turn boto3's exceptions into a StoreError naming the location, the cause and a fix.

    Raised `from None`: the original may quote request details; the message is redacted.
    """
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
    )
    from s3transfer.exceptions import S3UploadFailedError, TransferNotDoneError

    try:
        yield
    except ClientError as err:
        code = str(err.response.get("Error", {}).get("Code", "?"))
        hint = _HINTS.get(code) or err.response.get("Error", {}).get("Message") or "see the code"
        raise StoreError(uri, f"{action} failed ({code}): {hint}") from None
    except NoCredentialsError:
        raise StoreError(
            uri,
            f"{action} failed: no S3 credentials; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or use a profile or a pod role",
        ) from None
    except EndpointConnectionError as err:
        endpoint = err.kwargs.get("endpoint_url", "?")
        raise StoreError(
            uri,
            f"{action} failed: cannot reach the S3 endpoint {endpoint}; "
            "check SATK8S_S3_ENDPOINT_URL and the network",
        ) from None
    except (BotoCoreError, Boto3Error, S3UploadFailedError, TransferNotDoneError) as err:
        raise StoreError(uri, f"{action} failed: {type(err).__name__}: {err}") from None


def error_code(err: Exception) -> str:
    response = getattr(err, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class S3Store:
    def __init__(self, settings: S3Settings) -> None:
        import boto3
        import botocore.config
        from boto3.s3.transfer import TransferConfig

        self.settings = settings
        session = boto3.session.Session(
            aws_access_key_id=settings.access_key_id,
            aws_secret_access_key=settings.secret_access_key,
            aws_session_token=settings.session_token,
            region_name=settings.region or ("us-east-1" if settings.endpoint_url else None),
        )
        config = botocore.config.Config(
            s3={"addressing_style": settings.addressing_style},
            retries={"total_max_attempts": settings.max_attempts, "mode": "standard"},
            max_pool_connections=max(10, 2 * settings.max_concurrency),
        )
        self.client = session.client("s3", endpoint_url=settings.endpoint_url, config=config)
        # Objects an upload may only create: s3transfer takes no conditional arguments, so the
        # header goes onto its PutObject / CompleteMultipartUpload calls through botocore's
        # event hooks (a public extension point), for the keys listed here. AWS S3 answers 412
        # (or 409 ConditionalRequestConflict on a race) when the key exists (S3 User Guide,
        # "conditional writes"); moto 5.2 does the same for PutObject and
        # CompleteMultipartUpload, and honours If-Match on DeleteObject
        # (moto/s3/responses.py: put_object, delete_object, the uploadId branch of _key_response_post).
        self._create_only: set[tuple[str, str]] = set()
        for operation in ("PutObject", "CompleteMultipartUpload"):
            self.client.meta.events.register(
                f"before-parameter-build.s3.{operation}", self._add_create_condition
            )
        self.transfer_config = TransferConfig(
            multipart_threshold=settings.multipart_threshold_mb * MiB,
            multipart_chunksize=settings.multipart_chunk_mb * MiB,
            max_concurrency=settings.max_concurrency,
            use_threads=True,
        )
        install_log_redaction()

    def _add_create_condition(self, params: dict[str, Any], **_: Any) -> None:
        if (params.get("Bucket"), params.get("Key")) in self._create_only:
            params["IfNoneMatch"] = "*"

    @contextmanager
    def _transfers(self) -> Iterator[Any]:
        from boto3.s3.transfer import create_transfer_manager

        with create_transfer_manager(self.client, self.transfer_config) as manager:
            yield manager
        install_log_redaction()  # s3transfer creates its loggers lazily

    def _parallel(self, fn: Callable[[Any], T], items: Sequence[Any]) -> list[T]:
        if len(items) <= 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(min(len(items), self.settings.max_concurrency)) as pool:
            return list(pool.map(fn, items))

    def put_files(
        self,
        items: Sequence[tuple[Path, str, str | None]],
        link: bool = False,
        create_only: bool = False,
    ) -> None:
        # The sha256 goes into the object's metadata, which S3 needs before the first byte.
        hashed = [(src, uri, sha or sha256_file(src)) for src, uri, sha in items]
        keys = {split(uri) for _, uri, _ in hashed} if create_only else set()
        self._create_only |= keys
        try:
            with self._transfers() as manager:
                futures = []
                for src, uri, sha in hashed:
                    bucket, key = split(uri)
                    args = {"Metadata": {SHA_KEY: sha}}
                    futures.append((uri, manager.upload(str(src), bucket, key, extra_args=args)))
                for uri, future in futures:
                    with s3_errors(uri, "upload"):
                        future.result()
        finally:
            self._create_only -= keys

    def get_files(self, items: Sequence[tuple[str, Path, str | None]], link: bool = False) -> None:
        missing = [uri for uri, _, sha in items if sha is None]
        stored = dict(zip(missing, self._parallel(self.sha256, missing), strict=True))
        parts = []
        with self._transfers() as manager:
            for uri, dest, _ in items:
                bucket, key = split(uri)
                dest.parent.mkdir(parents=True, exist_ok=True)
                part = dest.with_name(f".{dest.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")
                parts.append((uri, part, manager.download(bucket, key, str(part))))
            try:
                for uri, _, future in parts:
                    with s3_errors(uri, "download"):
                        future.result()
                for (uri, dest, sha), (_, part, _) in zip(items, parts, strict=True):
                    expected = sha or stored.get(uri)
                    if expected is not None and (actual := sha256_file(part)) != expected:
                        raise CorruptObjectError(uri, expected, actual)
                    os.replace(part, dest)
            finally:
                for _, part, _ in parts:
                    part.unlink(missing_ok=True)

    def list(self, uri: str) -> list[ObjectInfo]:
        bucket, key = split(uri)
        prefix = key.rstrip("/") + "/" if key.strip("/") else ""
        out = []
        with s3_errors(uri, "list"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=prefix
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    when = obj["LastModified"].timestamp()
                    uri = f"s3://{bucket}/{obj['Key']}"
                    out.append(ObjectInfo(uri, obj["Size"], when, obj.get("ETag")))
        return sorted(out, key=lambda o: o.uri)

    def _head(self, uri: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        bucket, key = split(uri)
        with s3_errors(uri, "stat"):
            try:
                return self.client.head_object(Bucket=bucket, Key=key)
            except ClientError as err:
                if error_code(err) in _MISSING:
                    return None
                raise

    def exists(self, uri: str) -> bool:
        return self._head(uri) is not None

    def sha256(self, uri: str) -> str | None:
        head = self._head(uri)
        return None if head is None else head.get("Metadata", {}).get(SHA_KEY)

    def read_bytes(self, uri: str) -> bytes | None:
        return None if (found := self.read_with_etag(uri)) is None else found[0]

    def read_with_etag(self, uri: str) -> tuple[bytes, str] | None:
        from botocore.exceptions import ClientError

        bucket, key = split(uri)
        with s3_errors(uri, "read"):
            try:
                response = self.client.get_object(Bucket=bucket, Key=key)
                return response["Body"].read(), response["ETag"]
            except ClientError as err:
                if error_code(err) in _MISSING:
                    return None
                raise

    def read_with_age(self, uri: str) -> tuple[bytes, str, float] | None:
        """(bytes, ETag, seconds since it was last written) or None; the age is the server's
        `Date` header minus the object's `LastModified`, both by the server's clock."""
        import email.utils

        from botocore.exceptions import ClientError

        bucket, key = split(uri)
        with s3_errors(uri, "read"):
            try:
                response = self.client.get_object(Bucket=bucket, Key=key)
            except ClientError as err:
                if error_code(err) in _MISSING:
                    return None
                raise
            data = response["Body"].read()
        date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        now = email.utils.parsedate_to_datetime(date).timestamp() if date else time.time()
        return data, response["ETag"], max(0.0, now - response["LastModified"].timestamp())

    def write_bytes(self, uri: str, data: bytes) -> None:
        import hashlib

        bucket, key = split(uri)
        meta = {SHA_KEY: hashlib.sha256(data).hexdigest()}
        with s3_errors(uri, "write"):
            self.client.put_object(Bucket=bucket, Key=key, Body=data, Metadata=meta)

    def create_bytes(self, uri: str, data: bytes) -> bool:
        """Write a small object only if none exists at `uri` (If-None-Match: *); False when
        one does."""
        import hashlib

        from botocore.exceptions import ClientError

        bucket, key = split(uri)
        meta = {SHA_KEY: hashlib.sha256(data).hexdigest()}
        with s3_errors(uri, "create"):
            try:
                self.client.put_object(
                    Bucket=bucket, Key=key, Body=data, Metadata=meta, IfNoneMatch="*"
                )
            except ClientError as err:
                if error_code(err) in _CONFLICT:
                    return False
                raise
        return True

    def write_conditional(
        self, uri: str, data: bytes, *, if_absent: bool = False, if_etag: str | None = None
    ) -> str | None:
        """Write only if the object is absent (`if_absent`) or still has ETag `if_etag`;
        returns the new ETag, or None when the condition failed."""
        from botocore.exceptions import ClientError

        bucket, key = split(uri)
        condition = {"IfNoneMatch": "*"} if if_absent else {"IfMatch": if_etag}
        with s3_errors(uri, "conditional write"):
            try:
                return self.client.put_object(Bucket=bucket, Key=key, Body=data, **condition)[
                    "ETag"
                ]
            except ClientError as err:
                if error_code(err) in _CONFLICT or (if_etag and error_code(err) in _MISSING):
                    return None
                raise

    def delete_conditional(self, uri: str, etag: str) -> None:
        """Delete the object if it still has ETag `etag` (a lock this writer still holds)."""
        from botocore.exceptions import ClientError

        bucket, key = split(uri)
        with s3_errors(uri, "delete"):
            try:
                self.client.delete_object(Bucket=bucket, Key=key, IfMatch=etag)
            except ClientError as err:
                if error_code(err) in _CONFLICT | _MISSING:
                    return
                if error_code(err) not in ("NotImplemented", "InvalidArgument", "501"):
                    raise
                self.client.delete_object(Bucket=bucket, Key=key)  # no conditional deletes here

    def delete_unchanged(self, objects: Iterable[ObjectInfo]) -> None:
        from botocore.exceptions import ClientError

        for obj in objects:
            if obj.etag is None:
                self.delete([obj.uri])
                continue
            bucket, key = split(obj.uri)
            with s3_errors(obj.uri, "delete"):
                try:
                    self.client.delete_object(Bucket=bucket, Key=key, IfMatch=obj.etag)
                except ClientError as err:
                    if error_code(err) in _MISSING:
                        continue
                    if error_code(err) in _CONFLICT:
                        raise StoreError(
                            obj.uri, "another writer replaced it meanwhile; not deleted"
                        ) from None
                    raise

    def delete(self, uris: Iterable[str]) -> None:
        by_bucket: dict[str, list[str]] = {}
        for uri in uris:
            bucket, key = split(uri)
            by_bucket.setdefault(bucket, []).append(key)
        for bucket, keys in by_bucket.items():
            for first in range(0, len(keys), 1000):  # the API's batch limit
                batch = [{"Key": k} for k in keys[first : first + 1000]]
                with s3_errors(f"s3://{bucket}", "delete"):
                    response = self.client.delete_objects(
                        Bucket=bucket, Delete={"Objects": batch, "Quiet": True}
                    )
                if errors := response.get("Errors"):
                    first_error = errors[0]
                    raise StoreError(
                        f"s3://{bucket}/{first_error.get('Key')}",
                        f"delete failed ({first_error.get('Code')}) for {len(errors)} objects",
                    )

    def lock(self, uri: str, wait: bool = True) -> Any:
        from satk8s.store.lease import S3Lease

        return S3Lease(self, uri, ttl=self.settings.lock_ttl_s, wait=wait)

    def incomplete_uploads(self, uri: str) -> list[dict[str, Any]]:
        """Multipart uploads under `uri` that were started and never completed or aborted."""
        bucket, key = split(uri)
        prefix = key.rstrip("/") + "/" if key.strip("/") else ""
        found = []
        with s3_errors(uri, "list uploads"):
            pages = self.client.get_paginator("list_multipart_uploads")
            for page in pages.paginate(Bucket=bucket, Prefix=prefix):
                for upload in page.get("Uploads", []):
                    found.append({"bucket": bucket, **upload})
        return found

    def abort_upload(self, upload: dict[str, Any]) -> None:
        uri = f"s3://{upload['bucket']}/{upload['Key']}"
        with s3_errors(uri, "abort upload"):
            self.client.abort_multipart_upload(
                Bucket=upload["bucket"], Key=upload["Key"], UploadId=upload["UploadId"]
            )


@functools.lru_cache(maxsize=8)
def s3_store(settings: S3Settings) -> S3Store:
    """One client per distinct settings (boto3 clients are thread-safe and pool connections)."""
    return S3Store(settings)
