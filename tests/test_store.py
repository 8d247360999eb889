"""The store interface on file:// and on a real S3 endpoint (moto server on loopback)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from satk8s.store import (
    CorruptObjectError,
    S3Settings,
    StoreError,
    get_dir,
    get_file,
    get_store,
    output_uri,
    put_dir,
    put_file,
    step_key,
)
from satk8s.store.keys import current_code_version, source_hash
from satk8s.store.s3 import split
from satk8s.store.uri import join


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _checkpoint(root: Path) -> Path:
    (root / "checkpoint-10").mkdir(parents=True)
    (root / "config.json").write_text('{"hidden_size": 64}')
    (root / "checkpoint-10" / "model.safetensors").write_bytes(os.urandom(300_000))
    (root / "checkpoint-10" / "trainer_state.json").write_text("{}")
    return root


def test_a_directory_round_trips_with_a_sha256_per_object(store_root: str, tmp_path: Path) -> None:
    src = _checkpoint(tmp_path / "src")
    where = join(store_root, "ckpt")
    put_dir(src, where)
    store = get_store(where)
    listed = {o.uri: o.size for o in store.list(where)}
    assert listed == {join(where, rel): len(data) for rel, data in _tree(src).items()}
    for rel, data in _tree(src).items():
        assert store.exists(join(where, rel))
        assert store.sha256(join(where, rel)) == hashlib.sha256(data).hexdigest()
    assert not store.exists(join(where, "nothing-here"))
    assert _tree(get_dir(where, tmp_path / "back")) == _tree(src)


def test_small_objects_are_written_read_and_deleted(store_root: str) -> None:
    store = get_store(store_root)
    uri = join(store_root, "a", "note.json")
    assert store.read_bytes(uri) is None
    store.write_bytes(uri, b'{"x": 1}')
    store.write_bytes(uri, b'{"x": 2}')
    assert store.read_bytes(uri) == b'{"x": 2}'
    store.delete([uri, join(store_root, "never-was")])
    assert store.read_bytes(uri) is None and store.list(store_root) == []


def test_a_corrupted_object_is_detected_on_read(store_root: str, tmp_path: Path) -> None:
    src = tmp_path / "weights.bin"
    src.write_bytes(b"a" * 1000)
    uri = join(store_root, "weights.bin")
    put_file(src, uri)
    _overwrite_keeping_metadata(uri, b"b" * 1000)
    with pytest.raises(CorruptObjectError, match="sha256 mismatch") as err:
        get_file(uri, tmp_path / "back.bin", hashlib.sha256(b"a" * 1000).hexdigest())
    assert uri in str(err.value) and not (tmp_path / "back.bin").exists()


def _overwrite_keeping_metadata(uri: str, data: bytes) -> None:
    """Bit rot: new bytes under the old recorded sha256."""
    if uri.startswith("s3://"):
        store = get_store(uri)
        bucket, key = split(uri)
        old = store.client.head_object(Bucket=bucket, Key=key)["Metadata"]
        store.client.put_object(Bucket=bucket, Key=key, Body=data, Metadata=old)
    else:
        Path(uri.removeprefix("file://")).write_bytes(data)


def test_s3_object_keeps_its_sha256_and_detects_corruption_without_one_given(
    s3_bucket: str, tmp_path: Path
) -> None:
    src = tmp_path / "x.bin"
    src.write_bytes(b"payload")
    uri = f"s3://{s3_bucket}/x.bin"
    put_file(src, uri)
    _overwrite_keeping_metadata(uri, b"PAYLOAD")
    with pytest.raises(CorruptObjectError, match=uri):
        get_file(uri, tmp_path / "back.bin")  # checked against the stored sha256


def test_large_files_go_up_in_parts_and_come_back_verified(s3_bucket: str, tmp_path: Path) -> None:
    settings = S3Settings.from_config({"multipart_threshold_mb": 5, "multipart_chunk_mb": 5})
    store = get_store(f"s3://{s3_bucket}", settings)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(11 * (1 << 20)))
    uri = f"s3://{s3_bucket}/big.bin"
    store.put_files([(big, uri, None)])
    head = store.client.head_object(Bucket=s3_bucket, Key="big.bin")
    assert head["ETag"].strip('"').endswith("-3")  # a multipart object of 3 parts
    assert head["Metadata"]["sha256"] == hashlib.sha256(big.read_bytes()).hexdigest()
    store.get_files([(uri, tmp_path / "back.bin", None)])
    assert (tmp_path / "back.bin").read_bytes() == big.read_bytes()


def test_settings_come_from_config_else_the_environment() -> None:
    env = {
        "AWS_ENDPOINT_URL": "http://minio.local:9000",
        "AWS_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "id-from-env",
        "AWS_SECRET_ACCESS_KEY": "secret-from-env",
        "SATK8S_S3_MULTIPART_CHUNK_MB": "32",
    }
    settings = S3Settings.from_config({"region": "us-east-2"}, env)
    assert settings.endpoint_url == "http://minio.local:9000"
    assert settings.region == "us-east-2"  # config wins
    assert settings.addressing_style == "path"  # a custom endpoint: MinIO-style by default
    assert settings.multipart_chunk_mb == 32
    assert settings.secret_access_key == "secret-from-env"
    assert S3Settings.from_config({}, {}).addressing_style == "auto"
    assert "secret-from-env" not in repr(settings) and "secret-from-env" not in str(settings)
    assert "id-from-env" not in repr(settings)


def test_a_missing_bucket_is_a_clear_error(s3_env: dict[str, str]) -> None:
    with pytest.raises(StoreError, match="s3://satk8s-no-such-bucket.*bucket does not exist"):
        get_store("s3://satk8s-no-such-bucket").list("s3://satk8s-no-such-bucket/x")


def test_an_unreachable_endpoint_is_a_clear_error(s3_env: dict[str, str]) -> None:
    settings = S3Settings.from_config({"endpoint_url": "http://127.0.0.1:9", "max_attempts": 1})
    with pytest.raises(StoreError, match="cannot reach the S3 endpoint http://127.0.0.1:9"):
        get_store("s3://b", settings).list("s3://b/x")


@dataclass(frozen=True)
class _Config:
    n: int = 4
    temperature: float = 1.0


def test_step_keys_hash_step_config_inputs_and_code() -> None:
    base = step_key("generate", _Config(), {"questions": "k1"}, "v1")
    assert base == step_key("generate", {"temperature": 1.0, "n": 4}, {"questions": "k1"}, "v1")
    assert len(base) == 32
    changed = [
        step_key("saturate", _Config(), {"questions": "k1"}, "v1"),
        step_key("generate", _Config(n=5), {"questions": "k1"}, "v1"),
        step_key("generate", _Config(), {"questions": "k2"}, "v1"),
        step_key("generate", _Config(), {"questions": "k1"}, "v2"),
    ]
    assert base not in changed and len(set(changed)) == 4
    assert output_uri("s3://b/satk8s/", "generate", base) == f"s3://b/satk8s/steps/generate/{base}"


def test_the_code_version_follows_the_source(tmp_path: Path) -> None:
    assert "+src." in current_code_version() or os.environ.get("SATK8S_CODE_VERSION")
    (tmp_path / "a.py").write_text("x = 1\n")
    before = source_hash(tmp_path)
    (tmp_path / "a.py").write_text("x = 2\n")
    assert source_hash(tmp_path) != before


def test_the_code_version_covers_components_pipelines_and_dependencies(tmp_path: Path) -> None:
    from importlib.metadata import version

    from satk8s.store.keys import _package_dir, code_version, dependency_versions

    repo = Path(__file__).resolve().parents[1]
    assert _package_dir("satk8s.components") == repo / "components"
    assert _package_dir("satk8s.pipelines") == repo / "pipelines"
    deps = dependency_versions()
    assert deps["torch"] == version("torch") and deps["trl"] == version("trl")
    assert "pytest" not in deps  # extras are not the pinned stack

    folders = {name: tmp_path / name for name in ("satk8s", "components", "pipelines")}
    for folder in folders.values():
        folder.mkdir()
        (folder / "a.py").write_text("x = 1\n")
    before = code_version("0.1.0", folders, deps)
    assert before == code_version("0.1.0", folders, deps)
    (folders["components"] / "a.py").write_text("x = 2\n")
    after_component = code_version("0.1.0", folders, deps)
    (folders["pipelines"] / "b.py").write_text("y = 1\n")
    after_pipeline = code_version("0.1.0", folders, deps)
    upgraded = code_version("0.1.0", folders, {**deps, "transformers": "9.9.9"})
    assert len({before, after_component, after_pipeline, upgraded}) == 4
