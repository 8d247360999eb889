"""Data-parallel sampling and scoring: generate, signals and evaluate split into K part tasks and
merged on CPU give what one task over the whole pool gives (`satk8s.steps.parts`)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from satk8s.config import build_config
from satk8s.errors import ConfigError, DataError
from satk8s.generation.shards import read_samples
from satk8s.grid import load_plan
from satk8s.steps.evaluate import EvaluateStepConfig, evaluate
from satk8s.steps.generate import GenerateConfig, generate
from satk8s.steps.merge import MergeConfig, merge
from satk8s.steps.parts import PartConfig
from satk8s.steps.prepare import PrepareConfig, prepare
from satk8s.steps.saturate import saturate
from satk8s.steps.signals import SignalConfig, score

K = 3


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 100])
def test_parts_are_contiguous_disjoint_and_cover_the_pool(n: int) -> None:
    bounds = [PartConfig(k, K).bounds(n) for k in range(K)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))


@pytest.mark.parametrize(("index", "count"), [(3, 3), (-1, 2), (0, 0)])
def test_a_bad_part_is_refused_naming_the_field(index: int, count: int) -> None:
    with pytest.raises(ConfigError, match="'part"):
        PartConfig(index, count)


def _run_parts(step, config, out: Path, **inputs: str) -> str:
    """The step as K part tasks, then merged: the merged output's location."""
    locations = []
    for k in range(K):
        part = dataclasses.replace(config, part=PartConfig(k, K))
        location = str(out / f"part{k}")
        step(**inputs, out=location, config=part)
        locations.append(location)
    merged = str(out / "merged")
    kind = {generate: "generate", score: "signals", evaluate: "evaluate"}[step]
    merge(",".join(locations), merged, MergeConfig(kind))
    return merged


@pytest.fixture(scope="module")
def world(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Questions, samples of one generate task and of K merged parts, and the kept set."""
    root = tmp_path_factory.mktemp("parts")
    questions = str(root / "questions")
    none = {"easy": 0, "medium": 0, "hard": 0}
    arith = {
        "train": {**none, "easy": 14},
        "eval_id": {**none, "easy": 7},
        "eval_hard": {**none, "hard": 5},
    }
    prepare(questions, build_config(PrepareConfig, base={"arith": arith}))
    config = build_config(
        GenerateConfig,
        base={
            "model": str(tiny_model_dir),
            "shard_size": 3,  # 5 shards over 14 questions: parts of 1, 2 and 2 shards
            "sampling": {"n": 4, "temperature": 1.0, "max_new_tokens": 24, "seed": 7},
        },
    )
    one = str(root / "one")
    generate(questions, one, config)
    split = _run_parts(generate, config, root / "k", questions=questions)
    kept = str(root / "kept")
    saturate(questions, one, kept)
    return {"questions": questions, "one": one, "split": split, "kept": kept, "root": str(root)}


@pytest.mark.slow
def test_k_part_generation_equals_one_task(world: dict[str, str]) -> None:
    one, split = read_samples(world["one"]), read_samples(world["split"])
    assert split.num_rows == one.num_rows == 14 * 4
    assert split.equals(one)  # token ids, logprobs, texts: every sample the same
    assert sorted(p.name for p in Path(world["split"]).glob("shard-*.parquet")) == [
        f"shard-{i:05d}.parquet" for i in range(5)
    ]
    from satk8s.steps.outputs import finished_summary

    merged, whole = finished_summary(world["split"]), finished_summary(world["one"])
    assert (merged["questions"], merged["samples"], merged["tokens"]) == (
        whole["questions"],
        whole["samples"],
        whole["tokens"],
    )
    assert merged["parts"] == K


@pytest.mark.slow
@pytest.mark.parametrize("signal", ["entropy", "self_judge"])
def test_k_part_scoring_equals_one_task(world: dict[str, str], tiny_model_dir: Path, signal: str):
    root = Path(world["root"]) / signal
    config = build_config(
        SignalConfig,
        base={"signal": signal, "model": str(tiny_model_dir), "self_judge": {"max_all_pairs_n": 4}},
    )
    score(world["kept"], str(root / "one"), config)
    split = _run_parts(score, config, root, kept=world["kept"])
    one_scores = pq.read_table(root / "one" / "scores.parquet")
    split_scores = pq.read_table(Path(split) / "scores.parquet")
    assert one_scores.num_rows > K  # every part had questions to score
    assert split_scores.column("question_id").equals(one_scores.column("question_id"))
    assert split_scores.column("sample_index").equals(one_scores.column("sample_index"))
    # A part's batches hold other solutions (other padding, other matrix shapes), so a float32
    # score may differ in its last bits (measured: 8e-8 on an entropy of 0.015).
    for a, b in zip(
        split_scores.column("score").to_pylist(),
        one_scores.column("score").to_pylist(),
        strict=True,
    ):
        assert a == pytest.approx(b, abs=1e-6)
    diagnostics = json.loads((Path(split) / "diagnostics.json").read_text())
    whole = json.loads((root / "one" / "diagnostics.json").read_text())
    assert diagnostics.keys() == whole.keys()
    for key, value in whole.items():
        assert diagnostics[key] == (
            pytest.approx(value, abs=1e-6) if isinstance(value, float) else value
        )


@pytest.mark.slow
def test_k_part_evaluation_equals_one_task(world: dict[str, str], tiny_model_dir: Path) -> None:
    root = Path(world["root"]) / "evaluate"
    config = build_config(
        EvaluateStepConfig,
        base={"model": str(tiny_model_dir), "eval": {"max_new_tokens": 24, "n_boot": 50}},
    )
    evaluate(world["questions"], str(root / "one"), config)
    split = _run_parts(evaluate, config, root, questions=world["questions"])
    one = pq.read_table(root / "one" / "per_question.parquet")
    assert pq.read_table(Path(split) / "per_question.parquet").equals(one)
    merged = json.loads((Path(split) / "summary.json").read_text())
    whole = json.loads((root / "one" / "summary.json").read_text())
    assert merged["eval_sets"] == whole["eval_sets"]  # accuracies and their bootstrap CIs


def test_merge_refuses_parts_out_of_order(tmp_path: Path, random_tiny_dir: Path) -> None:
    questions = str(tmp_path / "q")
    train = {"easy": 4, "medium": 0, "hard": 0}
    prepare(questions, build_config(PrepareConfig, base={"arith": {"train": train}}))
    config = build_config(
        GenerateConfig,
        base={
            "model": str(random_tiny_dir),
            "shard_size": 2,
            "sampling": {"n": 1, "max_new_tokens": 4},
        },
    )
    for k in range(2):
        generate(
            questions, str(tmp_path / f"p{k}"), dataclasses.replace(config, part=PartConfig(k, 2))
        )
    with pytest.raises(DataError, match="where part 0 of 2 belongs"):
        merge(f"{tmp_path / 'p1'},{tmp_path / 'p0'}", str(tmp_path / "m"), MergeConfig("generate"))


def test_a_grid_splits_gpu_steps_into_parts_merged_on_cpu() -> None:
    plan = load_plan("smoke", ["parallel.generate=3", "parallel.signals=2", "parallel.evaluate=2"])
    by_id = {n.id: n for n in plan.nodes}
    parts = [by_id[f"generate-part{k}"] for k in range(3)]
    assert [p.config["part"] for p in parts] == [{"index": k, "count": 3} for k in range(3)]
    assert all(p.role == "generate" and p.step == "generate" for p in parts)
    merged = by_id["generate"]
    assert (merged.step, merged.role, merged.config) == ("merge", "cpu", {"step": "generate"})
    assert merged.inputs == {"parts": tuple(f"generate-part{k}" for k in range(3))}
    assert by_id["saturate"].inputs["samples"] == ("generate",)  # downstream reads the merge
    # GPU signals are split, the CPU controls are not.
    assert by_id["signal-entropy"].step == "merge" and "signal-entropy-part1" in by_id
    assert by_id["signal-random"].step == "signals" and "signal-random-part0" not in by_id
    assert by_id["evaluate-base"].step == "merge"
    assert by_id["evaluate-sft-none-s0-part1"].inputs["model"] == ("train-sft-none-s0",)


def test_k_from_the_pool_size() -> None:
    # gsm8k's 7,473 training questions at 2,000 per part: 4 generate parts.
    plan = load_plan("gsm8k", ["parallel.generate=0", "parallel.questions_per_part=2000"])
    assert [n.id for n in plan.nodes if n.id.startswith("generate-part")] == [
        f"generate-part{k}" for k in range(4)
    ]
    capped = load_plan("gsm8k", ["parallel.generate=0", "parallel.questions_per_part=10"])
    assert sum(n.id.startswith("generate-part") for n in capped.nodes) == 16  # max_parts
