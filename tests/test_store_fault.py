"""Fault tests: a generation step killed midway (SIGKILL, a real process) and rerun gives the
same samples as an uninterrupted run, on file:// and on S3."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa
import pytest
import torch

from satk8s.generation import SamplingConfig
from satk8s.generation.shards import read_samples
from satk8s.steps import GenerateConfig, PrepareConfig
from satk8s.steps.generate import generate
from satk8s.steps.outputs import PARTIALS, finished_summary, input_path
from satk8s.steps.prepare import prepare
from satk8s.store import get_store
from satk8s.store.uri import join

pytestmark = pytest.mark.slow

QUESTIONS = 6
SETTINGS = {
    "limit": QUESTIONS,
    "shard_size": 1,
    "batch_size": 4,
    "sampling.n": 2,
    "sampling.max_new_tokens": 12,
    "sampling.seed": 7,
}


def _config(model: Path) -> GenerateConfig:
    sampling = SamplingConfig(n=2, max_new_tokens=12, seed=7)
    return GenerateConfig(
        model=str(model), limit=QUESTIONS, shard_size=1, batch_size=4, sampling=sampling
    )


@pytest.fixture(scope="module")
def random_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init tiny Qwen3: fast, and its samples are seeded like any model's."""
    from satk8s.tiny.model import new_model
    from satk8s.tiny.tokenizer import build_tokenizer

    path = tmp_path_factory.mktemp("model") / "random-tiny"
    tokenizer = build_tokenizer()
    new_model(tokenizer, seed=1).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def reference(random_model: Path, tmp_path_factory: pytest.TempPathFactory) -> pa.Table:
    """The samples of an uninterrupted run."""
    root = tmp_path_factory.mktemp("reference")
    prepare(str(root / "questions"), PrepareConfig())
    generate(str(root / "questions"), str(root / "samples"), _config(random_model))
    return read_samples(root / "samples")


def committed_shards(out: str) -> list[str]:
    """Shards committed in full: the file and then its record (`commit_partial`). A kill
    between the two leaves a file without a record, which is (rightly) not resumed from."""
    prefix = join(out, PARTIALS).rstrip("/") + "/"
    names = [unquote(o.uri[len(prefix) :]) for o in get_store(out).list(join(out, PARTIALS))]
    return sorted(n.removesuffix(".json") for n in names if n.startswith("shard-"))


def test_a_killed_generation_resumes_to_the_same_samples(
    store_root: str, random_model: Path, reference: pa.Table
) -> None:
    questions = join(store_root, "steps", "prepare", "k")
    prepare(questions, PrepareConfig())
    out = join(store_root, "steps", "generate", "k")
    command = [
        sys.executable,
        "-m",
        "satk8s.cli.main",
        "step",
        "generate",
        "--input",
        f"questions={questions}",
        "--out",
        out,
        "--set",
        f"model={random_model}",
        *(f"--set={k}={v}" for k, v in SETTINGS.items()),
    ]
    # The same torch thread count as this process (conftest sets it): float sums, and so
    # logprobs, differ in their last bits between thread counts.
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while not committed_shards(out) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, stderr.decode()[-2000:]

    done_before = committed_shards(out)
    assert 1 <= len(done_before) < QUESTIONS and finished_summary(out) is None

    summary = generate(questions, out, _config(random_model))
    assert summary["shards_skipped"] >= len(done_before) >= 1  # resumed, not restarted
    assert summary["shards_written"] == QUESTIONS - summary["shards_skipped"]
    assert read_samples(input_path(out, "samples", "step")).equals(reference)
