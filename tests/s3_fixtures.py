"""A real S3 endpoint for tests: moto in server mode on 127.0.0.1 (a free port), reached by
boto3 over HTTP exactly as MinIO or AWS would be. Registered in conftest.py.

- `moto_endpoint` (session): the server's URL.
- `s3_env` (function): the environment a process needs to use it (endpoint, fake credentials).
- `s3_bucket` (function): a fresh, empty bucket.
- `store_root` (function, parametrized): a store root on `file://` and on `s3://`, so one test
  covers both.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Fake, but shaped like the real thing; the tests assert they never leak.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "AKIASATK8STESTKEY001",
    "AWS_SECRET_ACCESS_KEY": "satk8s-test-secret-Zq8vN3xT7rWp2Lk9",
    "AWS_SESSION_TOKEN": "satk8s-test-session-token-Hc4mB6yE1uJd5Sg0",
}


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """Point this process (and its children) at the moto server; the cache goes to tmp."""
    for name in (
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "SATK8S_S3_ADDRESSING_STYLE",
    ):
        monkeypatch.delenv(name, raising=False)
    env = {
        **FAKE_CREDENTIALS,
        "SATK8S_S3_ENDPOINT_URL": moto_endpoint,
        "AWS_REGION": "us-east-1",
        "NO_PROXY": "127.0.0.1,localhost",  # never through a proxy: loopback only
        "no_proxy": "127.0.0.1,localhost",
        "SATK8S_STORE_CACHE": str(tmp_path / "store-cache"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def s3_bucket(s3_env: dict[str, str]) -> str:
    from satk8s.store.base import default_settings
    from satk8s.store.s3 import s3_store

    name = f"satk8s-test-{uuid.uuid4().hex[:12]}"
    s3_store(default_settings()).client.create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["file", "s3"])
def store_root(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """`file:///<tmp>/store` or `s3://<fresh bucket>/satk8s`."""
    if request.param == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        return f"s3://{bucket}/satk8s"
    monkeypatch.setenv("SATK8S_STORE_CACHE", str(tmp_path / "store-cache"))
    return f"file://{tmp_path / 'store'}"
