"""prepare → generate → saturate on the tiny model, through the plain step functions."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from satk8s.generation import SamplingConfig
from satk8s.generation.shards import read_samples
from satk8s.steps import GenerateConfig, PrepareConfig, SaturateConfig
from satk8s.steps.generate import generate
from satk8s.steps.prepare import prepare
from satk8s.steps.saturate import saturate
from satk8s.tasks.arith import ArithTaskConfig

pytestmark = pytest.mark.slow

SMALL = ArithTaskConfig(train={"easy": 12, "hard": 12}, eval_id={"easy": 4}, eval_hard={"hard": 4})


@pytest.fixture(scope="module")
def run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("run")
    questions, samples, sat = (str(root / name) for name in ("prepare", "generate", "saturate"))
    prepared = prepare(questions, PrepareConfig(task="arith", arith=SMALL))
    config = GenerateConfig(
        model=str(tiny_model_dir),
        shard_size=10,
        sampling=SamplingConfig(n=4, max_new_tokens=40, seed=3),
    )
    generated = generate(questions, samples, config)
    saturated = saturate(questions, samples, sat, SaturateConfig())
    return {
        "root": root,
        "prepared": prepared,
        "generated": generated,
        "saturated": saturated,
        "questions": questions,
        "samples": samples,
        "saturate": sat,
        "gen_config": config,
    }


def test_prepare_writes_disjoint_splits(run: dict) -> None:
    assert run["prepared"]["questions"] == {"train": 24, "eval_id": 4, "eval_hard": 4}
    root = Path(run["questions"])
    texts = {
        s: set(pq.read_table(root / f"{s}.parquet").column("question").to_pylist())
        for s in ("train", "eval_id", "eval_hard")
    }
    assert not texts["train"] & texts["eval_id"] and not texts["train"] & texts["eval_hard"]


def test_generate_writes_n_samples_per_question_in_shards(run: dict) -> None:
    table = read_samples(Path(run["samples"]))
    assert table.num_rows == 24 * 4
    assert sorted(p.name for p in Path(run["samples"]).glob("shard-*.parquet")) == [
        "shard-00000.parquet",
        "shard-00001.parquet",
        "shard-00002.parquet",
    ]
    for ids, logprobs in zip(
        table.column("token_ids").to_pylist(),
        table.column("token_logprobs").to_pylist(),
        strict=True,
    ):
        assert len(ids) == len(logprobs) > 0
        assert all(lp <= 0 for lp in logprobs)


def test_saturation_keeps_only_correct_samples_of_saturated_questions(run: dict) -> None:
    root = Path(run["saturate"])
    accuracy = pq.read_table(root / "accuracy.parquet").to_pylist()
    kept = pq.read_table(root / "kept.parquet").to_pylist()
    saturated = {a["question_id"] for a in accuracy if a["saturated"]}
    assert all(a["accuracy"] == 1.0 for a in accuracy if a["saturated"])
    assert {k["question_id"] for k in kept} == saturated
    assert all(k["correct"] for k in kept) and len(kept) == 4 * len(saturated)
    summary = json.loads((root / "summary.json").read_text())
    assert summary["saturated_questions"] == len(saturated)
    assert sum(summary["histogram"].values()) == 24
    # The tiny model solves easy questions and fails hard ones: both ends are populated.
    easy_ids = {a["question_id"] for a in accuracy if a["question_id"].startswith("train-easy")}
    assert len(saturated & easy_ids) >= 9, accuracy


def test_finished_steps_are_cache_hits(run: dict) -> None:
    again = generate(run["questions"], run["samples"], run["gen_config"])
    assert again["cached"] is True and again["samples"] == run["generated"]["samples"]


def test_forced_rerun_gives_the_same_samples(run: dict, tmp_path: Path) -> None:
    before = read_samples(Path(run["samples"]))
    generate(run["questions"], str(tmp_path / "again"), run["gen_config"])
    assert read_samples(tmp_path / "again").equals(before)
