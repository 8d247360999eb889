"""Fault injection through the real command line: a step (or gc) is killed or frozen at a named
point (`SATK8S_FAULT`, `satk8s.store.faults`) in a real process, on file:// and on S3 (moto on
loopback), and the rerun ends with exactly what an uninterrupted run gives."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from satk8s.generation.shards import read_samples
from satk8s.steps.outputs import commit, finished_summary, input_path, open_output
from satk8s.store import get_store
from satk8s.store.inventory import inventory
from satk8s.store.uri import join
from tests.test_training import sft_table

QUESTIONS = 4
GENERATE = [
    "--set=limit=4",
    "--set=shard_size=1",
    "--set=batch_size=4",
    "--set=sampling.n=2",
    "--set=sampling.max_new_tokens=8",
    "--set=sampling.seed=7",
]
# A constant learning rate and a final step that is not a multiple of save_steps: one step
# too many would change the weights.
TRAIN = [
    "--set=train.max_steps=5",
    "--set=train.save_steps=2",
    "--set=train.per_device_batch_size=4",
    "--set=train.max_length=64",
    "--set=train.learning_rate=0.001",
    "--set=train.lr_scheduler_type=constant",
    "--set=train.logging_steps=1",
]


@pytest.fixture(scope="module")
def random_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from satk8s.tiny.model import new_model
    from satk8s.tiny.tokenizer import build_tokenizer

    path = tmp_path_factory.mktemp("model") / "random-tiny"
    tokenizer = build_tokenizer()
    new_model(tokenizer, seed=1).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def cli_env(**extra: str) -> dict[str, str]:
    # The same torch thread count as this process: float sums differ between thread counts.
    return {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), **extra}


def satk8s(*args: str, fault: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    """`satk8s ARGS` in a new process; `fault` goes into SATK8S_FAULT."""
    extra = {"SATK8S_FAULT": fault, **env} if fault else env
    return subprocess.run(
        [sys.executable, "-m", "satk8s.cli.main", *args],
        env=cli_env(**extra),
        capture_output=True,
        text=True,
        timeout=600,
    )


def start(*args: str, fault: str = "", **env: str) -> subprocess.Popen[str]:
    extra = {"SATK8S_FAULT": fault, **env} if fault else env
    return subprocess.Popen(
        [sys.executable, "-m", "satk8s.cli.main", *args],
        env=cli_env(**extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_stopped(proc: subprocess.Popen[str], timeout: float = 300) -> None:
    """Until `proc` has frozen itself at its fault point (state T in /proc)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "T":
            return
        time.sleep(0.05)
    raise AssertionError("the process never reached its fault point")


def killed(result: subprocess.CompletedProcess[str]) -> bool:
    return result.returncode == -signal.SIGKILL


def summary_of(result: subprocess.CompletedProcess[str]) -> dict:
    """A step's stdout is its JSON summary and nothing else."""
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def prepared(store_root: str) -> str:
    questions = join(store_root, "questions")
    summary_of(satk8s("step", "prepare", "--out", questions))
    return questions


def files_sha256(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def store_of(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store root: `file://` under tmp, or `s3://` on the moto server."""
    if kind == "s3":
        return f"s3://{request.getfixturevalue('s3_bucket')}/satk8s"
    request.getfixturevalue("monkeypatch").setenv("SATK8S_STORE_CACHE", str(tmp_path / "cache"))
    return (tmp_path / "store").as_uri()


def overrides(settings: list[str]) -> list[str]:
    """`--set=k=v` arguments as overrides for `build_config`."""
    return [item.removeprefix("--set=") for item in settings]


# ----------------------------------------------------------------------------- generate


@pytest.fixture(scope="module")
def reference_samples(random_model: Path, tmp_path_factory: pytest.TempPathFactory) -> pa.Table:
    """The samples of an uninterrupted run (in this process: the same thread count)."""
    from satk8s.config import build_config
    from satk8s.steps.generate import GenerateConfig, generate
    from satk8s.steps.prepare import prepare

    root = tmp_path_factory.mktemp("reference")
    prepare(str(root / "questions"))
    config = build_config(GenerateConfig, [f"model={random_model}", *overrides(GENERATE)])
    generate(str(root / "questions"), str(root / "samples"), config)
    return read_samples(root / "samples")


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "point"), [("file", "after-shard@2"), ("s3", "before-manifest")])
def test_a_generation_killed_at_a_named_point_resumes_to_identical_samples(
    kind: str,
    point: str,
    random_model: Path,
    reference_samples: pa.Table,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    store_root = store_of(kind, request, tmp_path)
    questions = prepared(store_root)
    out = join(store_root, "samples")
    args = ("step", "generate", "-i", f"questions={questions}", "--out", out,
            f"--set=model={random_model}", *GENERATE)  # fmt: skip
    assert killed(satk8s(*args, fault=point))
    assert finished_summary(out) is None  # a killed step never looks finished

    summary = summary_of(satk8s(*args))
    assert summary["cached"] is False
    assert summary["shards_skipped"] == (2 if point == "after-shard@2" else QUESTIONS)
    assert read_samples(input_path(out, "s", "step")).equals(reference_samples)


# ----------------------------------------------------------------------------- train


def _dataset(store_root: str) -> str:
    out = join(store_root, "dataset")
    staging = open_output(out)
    pq.write_table(sft_table(), staging / "train.parquet")
    commit(staging, "build_dataset", {"algorithm": "sft"}, {}, {"rows": 8}, 0.0)
    return out


@pytest.fixture(scope="module")
def reference_model(random_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The summary and model files of an uninterrupted train step."""
    from satk8s.config import build_config
    from satk8s.steps.train import TrainStepConfig, train_model

    root = tmp_path_factory.mktemp("reference-train")
    config = build_config(TrainStepConfig, [f"model={random_model}", *overrides(TRAIN)])
    summary = train_model(_dataset(str(root)), str(root / "train"), config)
    assert summary["steps"] == 5
    return {"summary": summary, "files": files_sha256(root / "train" / "model")}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "point"), [("file", "after-last-checkpoint"), ("s3", "before-manifest")]
)
def test_a_train_step_killed_after_its_last_checkpoint_ends_bit_identical(
    kind: str,
    point: str,
    random_model: Path,
    reference_model: dict,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    store_root = store_of(kind, request, tmp_path)
    dataset = _dataset(store_root)
    args = ("step", "train", "-i", f"dataset={dataset}", "--out", join(store_root, "train"),
            f"--set=model={random_model}", *TRAIN)  # fmt: skip
    out = join(store_root, "train")
    assert killed(satk8s(*args, fault=point))
    assert finished_summary(out) is None
    # A new pod: an empty local cache, only the store survives.
    rerun = summary_of(satk8s(*args, SATK8S_STORE_CACHE=str(tmp_path / "pod2")))
    assert rerun["steps"] == 5 and rerun["resumed_from"] == "checkpoint-5"
    assert rerun["losses"] == reference_model["summary"]["losses"]
    assert rerun["model"] == join(out, "model")  # where it lives, not a staging directory
    names = {o.uri.rsplit("/", 2)[-2] for o in get_store(out).list(join(out, "checkpoints"))}
    assert "checkpoint-6" not in names  # the end of training is not a place to continue from
    assert files_sha256(input_path(out, "t", "step") / "model") == reference_model["files"]


# ----------------------------------------------------------------------------- gc


def _toy(out: str, step: str, inputs: dict[str, str] | None = None) -> str:
    root = open_output(out)
    (root / "data.bin").write_bytes(os.urandom(2000))
    commit(root, step, {"step": step}, inputs or {}, {}, time.time())
    return out


def test_gc_killed_midway_leaves_nothing_that_looks_finished(store_root: str) -> None:
    keep = _toy(join(store_root, "steps", "report", "k"), "report")
    doomed = [_toy(join(store_root, "steps", "generate", f"g{i}"), "generate") for i in range(3)]
    gc = ("store", "gc", store_root, "--keep", keep, "--grace-hours", "0", "--yes")

    assert killed(satk8s(*gc, fault="during-gc"))
    states = {o.uri: o.finished for o in inventory(store_root)[0]}
    assert states[keep] is True
    # The output being deleted lost its manifest first: it never looks finished.
    half = [uri for uri in doomed if not states.get(uri, True)]
    assert len(half) == 1 and finished_summary(half[0]) is None

    assert satk8s(*gc).returncode == 0
    assert [o.uri for o in inventory(store_root)[0]] == [keep]
    assert finished_summary(keep) is not None


# ----------------------------------------------------------------------------- fencing


@pytest.mark.parametrize("point", ["before-manifest", "before-upload"])
def test_a_stalled_s3_writer_cannot_overwrite_the_new_owner(
    s3_bucket: str, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    """Writer A freezes just after checking its lease (before its uploads, or with everything
    uploaded just before its manifest); its lease runs out (1 s), B takes the output over and
    commits; A wakes up: it fails and changes nothing."""
    monkeypatch.setenv("SATK8S_S3_LOCK_TTL_S", "1")
    out = f"s3://{s3_bucket}/steps/prepare/same"
    writer_a = start("step", "prepare", "--out", out, fault=f"{point}:stop")
    try:
        wait_stopped(writer_a)
        writer_b = satk8s("step", "prepare", "--out", out)
        assert summary_of(writer_b)["cached"] is False
        committed = {o.uri: o for o in get_store(out).list(out) if "/." not in o.uri}
        time.sleep(1.1)  # a rewrite, even of the same bytes, would show a later LastModified
    finally:
        writer_a.send_signal(signal.SIGCONT)
        _, stderr = writer_a.communicate(timeout=120)
    assert writer_a.returncode == 2, stderr[-3000:]
    assert "another writer" in stderr and "Traceback" not in stderr
    after = {o.uri: o for o in get_store(out).list(out) if "/." not in o.uri}
    assert after == committed  # not one object of B's rewritten
    input_path(out, "questions", "step")  # every file matches B's manifest


def test_a_live_local_writer_is_waited_for_never_taken_over(tmp_path: Path) -> None:
    """file:// leases are kernel locks: a frozen writer still holds its output, the second
    writer waits, and gets the first one's result once it finishes."""
    out = (tmp_path / "store" / "steps" / "prepare" / "same").as_uri()
    writer_a = start("step", "prepare", "--out", out, fault="before-manifest:stop")
    wait_stopped(writer_a)
    writer_b = start("step", "prepare", "--out", out)
    time.sleep(3)
    assert writer_b.poll() is None  # waiting for A's lease, not computing over it
    writer_a.send_signal(signal.SIGCONT)
    a_out, a_err = writer_a.communicate(timeout=120)
    b_out, b_err = writer_b.communicate(timeout=120)
    assert json.loads(a_out)["cached"] is False, a_err
    assert json.loads(b_out)["cached"] is True, b_err
    input_path(out, "questions", "step")


@pytest.mark.slow
def test_gc_spares_an_output_whose_writer_holds_its_lease(
    store_root: str, random_model: Path
) -> None:
    questions = prepared(store_root)
    out = join(store_root, "steps", "generate", "busy")
    writer = start(
        "step", "generate", "-i", f"questions={questions}", "--out", out,
        f"--set=model={random_model}", *GENERATE, fault="after-shard:stop",
    )  # fmt: skip
    try:
        wait_stopped(writer)
        result = satk8s(
            "store", "gc", store_root, "--keep", questions, "--grace-hours", "0", "--yes"
        )
        assert result.returncode == 0, result.stderr
        assert "being written" in result.stdout
        assert any(o.uri == out for o in inventory(store_root)[0])
    finally:
        writer.send_signal(signal.SIGCONT)
        stdout, stderr = writer.communicate(timeout=300)
    assert writer.returncode == 0, stderr[-3000:]
    assert json.loads(stdout)["shards_written"] == QUESTIONS
    assert read_samples(input_path(out, "s", "step")).num_rows == QUESTIONS * 2


def test_fault_points_are_checked_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from satk8s.errors import ConfigError
    from satk8s.store import faults
    from satk8s.store.faults import FaultInjected, fault_point, parse_faults

    monkeypatch.setattr(faults, "_reached", faults.Counter())

    assert parse_faults("after-shard@3:stop, before-manifest") == {
        "after-shard": (3, "stop"),
        "before-manifest": (1, "kill"),
    }
    with pytest.raises(ConfigError, match="unknown fault point 'after-shrad'"):
        parse_faults("after-shrad")
    monkeypatch.setenv("SATK8S_FAULT", "during-gc@2:raise")
    fault_point("during-gc")  # the first time: nothing
    fault_point("after-shard")  # not named: nothing
    with pytest.raises(FaultInjected, match="during-gc"):
        fault_point("during-gc")
