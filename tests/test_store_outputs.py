"""The step cache on file:// and s3://: manifests written last, cache hits, resume from
committed pieces, truncated and corrupted objects, concurrent writers, secrets kept out."""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from satk8s.errors import DataError
from satk8s.steps import outputs
from satk8s.steps.outputs import (
    commit,
    commit_partial,
    finished_summary,
    input_path,
    open_output,
    step_output,
)
from satk8s.store import CorruptObjectError, StoreError, get_store, step_key
from satk8s.store.cache import cache_root
from satk8s.store.fetch import read_manifest_at
from satk8s.store.keys import current_code_version
from satk8s.store.uri import join
from tests.s3_fixtures import FAKE_CREDENTIALS


def run_toy_step(
    out: str,
    text: str = "hello",
    force: bool = False,
    inputs: dict[str, str] | None = None,
    calls: list | None = None,
) -> dict[str, Any]:
    """A step in the shape every satk8s step has: cache check, write, commit."""
    if not force and (cached := finished_summary(out)):
        return cached
    if calls is not None:
        calls.append(out)
    started = time.time()
    for name, uri in (inputs or {}).items():
        input_path(uri, name, "step")
    root = open_output(out, force)
    (root / "data.txt").write_text(text)
    (root / "parts").mkdir(exist_ok=True)
    (root / "parts" / "a.txt").write_text(text.upper())
    return commit(root, "toy", {"text": text}, inputs or {}, {"chars": len(text)}, started)


def objects(out: str) -> dict[str, int]:
    prefix = out.rstrip("/") + "/"
    return {
        o.uri[len(prefix) :]: o.size
        for o in get_store(out).list(out)
        if not any(p.startswith(".") for p in o.uri[len(prefix) :].split("/"))
    }


def test_a_committed_output_has_a_full_manifest(store_root: str) -> None:
    upstream = run_toy_step(join(store_root, "up"), "question")
    assert upstream["cached"] is False
    out = join(store_root, "down")
    summary = run_toy_step(out, "answer", inputs={"questions": join(store_root, "up")})
    assert summary["chars"] == 6 and summary["cached"] is False
    manifest = read_manifest_at(out)
    assert {f["path"]: f["size"] for f in manifest["files"]} == {"data.txt": 6, "parts/a.txt": 6}
    assert all(len(f["sha256"]) == 64 for f in manifest["files"])
    assert manifest["config"] == {"text": "answer"}
    assert manifest["inputs"] == {"questions": join(store_root, "up")}
    up_key = read_manifest_at(join(store_root, "up"))["key"]
    assert manifest["input_digests"] == {"questions": up_key}
    assert manifest["key"] == step_key("toy", {"text": "answer"}, {"questions": up_key})
    assert manifest["code_version"] == current_code_version()
    assert set(manifest["timings"]) == {"started", "finished", "seconds"}
    assert objects(out) == {
        "data.txt": 6,
        "parts/a.txt": 6,
        "manifest.json": objects(out)["manifest.json"],
    }


def test_the_manifest_is_written_last(store_root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[str] = []
    real = get_store(store_root)

    class Recording:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def put_files(self, items: Any, link: bool = False, create_only: bool = False) -> None:
            writes.extend(uri for _, uri, _ in items)
            real.put_files(items, link=link, create_only=create_only)

        def write_bytes(self, uri: str, data: bytes) -> None:
            writes.append(uri)
            real.write_bytes(uri, data)

        def create_bytes(self, uri: str, data: bytes) -> bool:
            writes.append(uri)
            return real.create_bytes(uri, data)

    monkeypatch.setattr(outputs, "get_store", lambda uri: Recording())
    out = join(store_root, "x")
    run_toy_step(out)
    data_writes = [w for w in writes if "/." not in w]
    assert data_writes[-1] == join(out, "manifest.json")
    assert set(data_writes[:-1]) == {join(out, "data.txt"), join(out, "parts/a.txt")}


def test_a_finished_step_is_a_cache_hit_and_force_recomputes(store_root: str) -> None:
    calls: list[str] = []
    out = join(store_root, "steps", "toy", "k1")
    first = run_toy_step(out, "abc", calls=calls)
    again = run_toy_step(out, "abc", calls=calls)
    assert again == {
        **{k: v for k, v in first.items() if k not in ("cached", "seconds")},
        "cached": True,
    }
    assert len(calls) == 1
    forced = run_toy_step(out, "abcd", force=True, calls=calls)
    assert forced["cached"] is False and forced["chars"] == 4 and len(calls) == 2
    assert (input_path(out, "x", "step") / "data.txt").read_text() == "abcd"


def test_an_output_without_a_manifest_is_not_finished(store_root: str, tmp_path: Path) -> None:
    out = join(store_root, "half")
    (tmp_path / "data.txt").write_text("uploaded, never committed")
    get_store(out).put_files([(tmp_path / "data.txt", join(out, "data.txt"), None)])
    assert finished_summary(out) is None
    with pytest.raises(DataError, match="not a finished step output"):
        input_path(out, "samples", "step")


def test_a_manifest_over_a_truncated_object_is_not_finished(store_root: str) -> None:
    out = join(store_root, "trunc")
    run_toy_step(out, "a long enough text")
    store = get_store(out)
    uri = join(out, "data.txt")
    if uri.startswith("s3://"):
        from satk8s.store.s3 import split

        bucket, key = split(uri)
        store.client.put_object(Bucket=bucket, Key=key, Body=b"a long")
    else:
        Path(uri.removeprefix("file://")).write_bytes(b"a long")
    shutil.rmtree(cache_root(), ignore_errors=True)
    assert finished_summary(out) is None
    with pytest.raises(DataError, match="data.txt"):
        input_path(out, "samples", "step")
    assert run_toy_step(out, "a long enough text")["cached"] is False  # recomputed, not trusted
    assert finished_summary(out) is not None


def test_a_failed_upload_leaves_no_finished_output(
    store_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = join(store_root, "fails")
    real = get_store(out)

    class Failing:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def put_files(self, items: Any, link: bool = False, create_only: bool = False) -> None:
            real.put_files(items[:1], link=link, create_only=create_only)
            raise StoreError(out, "connection reset (simulated)")

    with monkeypatch.context() as patch:
        patch.setattr(outputs, "get_store", lambda uri: Failing())
        with pytest.raises(StoreError, match="simulated"):
            run_toy_step(out)
    assert finished_summary(out) is None
    assert run_toy_step(out)["cached"] is False


def test_a_killed_multipart_upload_is_invisible_and_collected(s3_bucket: str) -> None:
    from satk8s.store import gc

    store = get_store(f"s3://{s3_bucket}")
    out = f"s3://{s3_bucket}/satk8s/steps/train/k"
    started = store.client.create_multipart_upload(
        Bucket=s3_bucket, Key="satk8s/steps/train/k/model.bin"
    )
    store.client.upload_part(
        Bucket=s3_bucket,
        Key="satk8s/steps/train/k/model.bin",
        PartNumber=1,
        UploadId=started["UploadId"],
        Body=b"x" * (5 << 20),
    )
    assert not store.exists(join(out, "model.bin")) and finished_summary(out) is None
    plan = gc.plan(f"s3://{s3_bucket}/satk8s", [], grace_s=0)
    assert [u["Key"] for u in plan.uploads] == ["satk8s/steps/train/k/model.bin"]
    gc.execute(plan)
    assert store.incomplete_uploads(f"s3://{s3_bucket}/satk8s") == []


def test_a_restarted_step_gets_back_its_committed_pieces(store_root: str) -> None:
    out = join(store_root, "gen")
    root = open_output(out)
    (root / "shard-00000.parquet").write_bytes(b"shard zero")
    commit_partial(root, "shard-00000.parquet")
    (root / "checkpoint-2").mkdir()
    (root / "checkpoint-2" / "model.bin").write_bytes(b"weights")
    (root / "checkpoint-2" / "state.json").write_text("{}")
    commit_partial(root, "checkpoint-2")
    (root / "shard-00001.parquet").write_bytes(b"never committed")
    assert finished_summary(out) is None  # pieces are not a finished output
    # the writer dies here; a new one starts
    again = open_output(out)
    assert again != root
    assert sorted(p.relative_to(again).as_posix() for p in again.rglob("*") if p.is_file()) == [
        "checkpoint-2/model.bin",
        "checkpoint-2/state.json",
        "shard-00000.parquet",
    ]
    assert (again / "shard-00000.parquet").read_bytes() == b"shard zero"


def test_an_incomplete_piece_is_not_resumed_from(store_root: str) -> None:
    out = join(store_root, "train")
    root = open_output(out)
    (root / "checkpoint-4").mkdir()
    (root / "checkpoint-4" / "model.bin").write_bytes(b"weights")
    (root / "checkpoint-4" / "optimizer.bin").write_bytes(b"moments")
    commit_partial(root, "checkpoint-4")
    get_store(out).delete([join(out, "checkpoint-4/optimizer.bin")])
    again = open_output(out)
    assert not (again / "checkpoint-4").exists()


def test_a_corrupted_input_is_detected_when_read(store_root: str) -> None:
    out = join(store_root, "samples")
    run_toy_step(out, "0123456789")
    uri = join(out, "data.txt")
    if uri.startswith("s3://"):
        from satk8s.store.s3 import split

        bucket, key = split(uri)
        store = get_store(uri)
        meta = store.client.head_object(Bucket=bucket, Key=key)["Metadata"]
        store.client.put_object(Bucket=bucket, Key=key, Body=b"9876543210", Metadata=meta)
    else:
        Path(uri.removeprefix("file://")).write_bytes(b"9876543210")
    shutil.rmtree(cache_root(), ignore_errors=True)
    with pytest.raises(CorruptObjectError, match="data.txt: sha256 mismatch") as err:
        input_path(out, "samples", "step")
    assert "--force" in str(err.value)


def test_a_remote_input_is_downloaded_once(s3_bucket: str) -> None:
    out = f"s3://{s3_bucket}/x"
    run_toy_step(out, "cached")
    shutil.rmtree(cache_root(), ignore_errors=True)
    first = input_path(out, "x", "step")
    stamp = (first / "data.txt").stat().st_mtime_ns
    assert input_path(out, "x", "step") == first
    assert (first / "data.txt").stat().st_mtime_ns == stamp and (
        first / "data.txt"
    ).read_text() == "cached"


def test_a_tampered_cached_input_is_checked_and_fetched_again(s3_bucket: str) -> None:
    out = f"s3://{s3_bucket}/x"
    run_toy_step(out, "the real bytes")
    shutil.rmtree(cache_root(), ignore_errors=True)
    cached = input_path(out, "x", "step") / "data.txt"
    cached.write_text("the fake bytes")  # same size: only the sha256 tells
    assert (input_path(out, "x", "step") / "data.txt").read_text() == "the real bytes"
    # a prefix without a manifest (a model someone uploaded) is checked the same way
    raw = f"s3://{s3_bucket}/raw"
    get_store(raw).write_bytes(join(raw, "config.json"), b'{"a": 1}')
    copy = input_path(raw, "model") / "config.json"
    copy.write_bytes(b'{"a": 2}')
    assert (input_path(raw, "model") / "config.json").read_bytes() == b'{"a": 1}'


def _writer(out: str, tag: str, results: dict[str, Any]) -> None:
    """A step's writer of `out`; it records whether it did the work."""
    try:
        with step_output(out, "toy", {"text": "same"}, {}) as output:
            if output.cached is not None:
                results[tag] = {**output.cached, "worked": False}
                return
            root = output.open()
            for i in range(3):
                (root / f"shard-{i}.txt").write_text(f"{tag} {i} " * (i + 1))
            time.sleep(0.5)  # the other writer starts meanwhile
            commit_partial(root, "shard-0.txt")
            (root / "summary.json").write_text(json.dumps({"writer": tag}))
            results[tag] = {**output.commit(root, {"writer": tag}, time.time()), "worked": True}
    except Exception as err:  # reported by the test
        import traceback

        traceback.print_exc()
        results[tag] = err


def test_identical_steps_started_at_once_do_the_work_once(store_root: str) -> None:
    out = join(store_root, "steps", "toy", "same-key")
    results: dict[str, Any] = {}
    threads = [threading.Thread(target=_writer, args=(out, tag, results)) for tag in "AB"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(isinstance(r, dict) for r in results.values()), results
    workers = [tag for tag, r in results.items() if r["worked"]]
    assert len(workers) == 1  # the other waited for the lease, then found the output finished
    winner = workers[0]
    loser = results["B" if winner == "A" else "A"]
    assert loser["cached"] is True and loser["writer"] == winner
    shutil.rmtree(cache_root(), ignore_errors=True)
    root = input_path(out, "x", "step")  # every object matches the manifest's sha256
    assert all((root / f"shard-{i}.txt").read_text().startswith(f"{winner} ") for i in range(3))
    assert json.loads((root / "summary.json").read_text()) == {"writer": winner}


def test_identical_writer_processes_do_the_work_once(store_root: str) -> None:
    import multiprocessing

    out = join(store_root, "steps", "toy", "same-key-procs")
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_process_writer, args=(out, tag, queue)) for tag in "CD"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    worked = sorted(queue.get(timeout=5) for _ in procs)
    assert worked == [False, True]
    shutil.rmtree(cache_root(), ignore_errors=True)
    root = input_path(out, "x", "step")
    winner = json.loads((root / "summary.json").read_text())["writer"]
    assert all((root / f"shard-{i}.txt").read_text().startswith(f"{winner} ") for i in range(3))


def _process_writer(out: str, tag: str, queue: Any) -> None:
    results: dict[str, Any] = {}
    _writer(out, tag, results)
    if not isinstance(results[tag], dict):
        raise results[tag]
    queue.put(results[tag]["worked"])


SECRETS = [
    FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
    "sk-judge-api-key-0123456789",
]


def test_secrets_never_reach_logs_manifests_or_errors(
    s3_bucket: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRETS[2])
    caplog.set_level(logging.DEBUG)  # botocore's debug logs print request headers
    out = f"s3://{s3_bucket}/steps/judge/k"
    root = open_output(out)
    (root / "scores.txt").write_text("0.9")
    config = {
        "endpoint": "https://api.example.com",
        "api_key": SECRETS[2],
        "note": f"token {SECRETS[1]}",
        "max_new_tokens": 8,
    }
    commit(root, "judge", config, {}, {"ok": True}, time.time())
    manifest = get_store(out).read_bytes(join(out, "manifest.json")).decode()
    assert json.loads(manifest)["config"]["max_new_tokens"] == 8
    errors = []
    for broken in ("s3://satk8s-no-such-bucket/x", f"s3://{s3_bucket}/missing"):
        try:
            input_path(broken, "x", "step")
        except (StoreError, DataError) as err:
            errors.append(str(err))
    from satk8s.store import S3Settings

    try:
        bad = S3Settings.from_config(
            {"endpoint_url": f"http://user:{SECRETS[0]}@127.0.0.1:9", "max_attempts": 1}
        )
        get_store("s3://b", bad).list("s3://b")
    except StoreError as err:
        errors.append(str(err))
    assert len(errors) == 3
    for secret in SECRETS:
        assert secret not in caplog.text
        assert secret not in manifest
        assert not any(secret in e for e in errors), errors
    assert FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"] not in manifest + "".join(errors)
    assert "Sending http request" in caplog.text  # the debug logs were there, redacted


def test_absent_and_listed_inputs_are_digested(store_root: str) -> None:
    a = join(store_root, "a")
    b = join(store_root, "b")
    run_toy_step(a, "one")
    run_toy_step(b, "two")
    out = join(store_root, "c")
    root = open_output(out)
    (root / "x.txt").write_text("x")
    commit(root, "toy", {}, {"kept": a, "scores": "", "evals": f"{a},{b}"}, {}, time.time())
    digests = read_manifest_at(out)["input_digests"]
    assert digests["kept"] == read_manifest_at(a)["key"]
    assert digests["scores"] is None
    assert digests["evals"] not in (None, digests["kept"])


def _lease_holder(uri: str, host: str, pid: int) -> None:
    body = json.dumps({"host": host, "pid": pid, "nonce": "x", "renewed": 0}).encode()
    get_store(uri).write_bytes(uri, body)


def test_a_dead_writers_lock_is_taken_over(s3_bucket: str) -> None:
    import socket
    import subprocess

    gone = subprocess.Popen(["true"])
    gone.wait()
    out = f"s3://{s3_bucket}/steps/toy/locked"
    _lease_holder(join(out, ".lock"), socket.gethostname(), gone.pid)
    started = time.monotonic()
    assert run_toy_step(out)["cached"] is False
    assert time.monotonic() - started < 10  # not the 60 s lease: the holder is known dead


def test_a_lock_not_renewed_for_its_ttl_is_taken_over(
    s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SATK8S_S3_LOCK_TTL_S", "1")
    out = f"s3://{s3_bucket}/steps/toy/stale"
    _lease_holder(join(out, ".lock"), "another-host", 1)
    started = time.monotonic()
    assert run_toy_step(out)["cached"] is False
    assert 1 <= time.monotonic() - started < 15
