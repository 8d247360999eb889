"""A step's identity is its location and its config: an explicit output location that holds (or
is being written with) another config, other inputs or another model is refused, showing the
difference, unless forced; grid outputs stay content-addressed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from satk8s.cli.main import app
from satk8s.errors import Satk8sError
from satk8s.orchestration.addressed import resolve_config, run_addressed
from satk8s.steps.outputs import (
    OutputConflictError,
    commit_partial,
    finished_summary,
    step_output,
)
from satk8s.steps.prepare import PrepareConfig, prepare
from satk8s.store.fetch import read_manifest_at
from satk8s.store.keys import step_key
from satk8s.store.uri import join

runner = CliRunner()
SMALL = ["--set=arith.train.easy=4", "--set=arith.train.medium=0", "--set=arith.train.hard=0"]


def step(*args: str) -> tuple[int, str]:
    """(exit code, stdout: the JSON summary alone) on success, (code, all output) on failure (the
    step's log lines, such as its thread count, go to stderr)."""
    result = runner.invoke(app, ["step", *args])
    return result.exit_code, result.stdout if result.exit_code == 0 else result.output


def test_rerunning_prepare_with_another_seed_is_refused_never_cached(store_root: str) -> None:
    out = join(store_root, "runs", "q")
    code, output = step("prepare", "--out", out, *SMALL)
    assert code == 0, output
    code, output = step("prepare", "--out", out, *SMALL, "--set=arith.seed=1")
    assert code == 2
    assert "holds the output of another config" in output
    assert "arith.seed: 0 -> 1" in output and "--force" in output
    assert read_manifest_at(out)["config"]["arith"]["seed"] == 0  # untouched

    code, output = step("prepare", "--out", out, *SMALL, "--set=arith.seed=1", "--force")
    assert code == 0, output
    assert json.loads(output)["cached"] is False
    assert read_manifest_at(out)["config"]["arith"]["seed"] == 1
    code, output = step("prepare", "--out", out, *SMALL, "--set=arith.seed=1")
    assert code == 0 and json.loads(output)["cached"] is True  # same config: a cache hit


def test_a_location_being_written_with_another_config_is_refused(store_root: str) -> None:
    out = join(store_root, "runs", "half")
    with step_output(out, "prepare", PrepareConfig(seed=3), {}) as output:
        root = output.open()
        (root / "piece.txt").write_text("first writer's piece")
        commit_partial(root, "piece.txt")
        # the writer dies here: its committed piece stays, resumable by the same config
    assert finished_summary(out) is None
    with pytest.raises(OutputConflictError, match="unfinished output of another config") as err:
        prepare(out, PrepareConfig(seed=4))
    assert "seed: 3 -> 4" in str(err.value)
    assert prepare(out, PrepareConfig(seed=4), force=True)["cached"] is False


def test_another_input_at_the_same_out_is_refused(store_root: str) -> None:
    from satk8s.steps.saturate import SaturateConfig

    a, b = join(store_root, "qa"), join(store_root, "qb")
    prepare(a, PrepareConfig(seed=0))
    prepare(b, PrepareConfig(seed=1))
    out = join(store_root, "x")
    with step_output(out, "saturate", SaturateConfig(), {"questions": a}) as output:
        root = output.open()
        (root / "f.txt").write_text("x")
        output.commit(root, {"n": 1}, 0.0)
    with pytest.raises(OutputConflictError, match="input 'questions'"):
        with step_output(out, "saturate", SaturateConfig(), {"questions": b}):
            pass


def test_a_replaced_local_model_is_a_new_identity(tmp_path: Path, store_root: str) -> None:
    from satk8s.store.model_identity import model_digests

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "qwen3"}')
    (model / "model.safetensors").write_bytes(b"weights one")
    config = {"model": str(model), "sampling": {"n": 2}}
    first = model_digests(config)
    assert set(first) == {"model"} and len(first["model"]) == 64
    (model / "model.safetensors").write_bytes(b"weights two")
    second = model_digests(config)
    assert second != first
    assert step_key("generate", config, {}, "v", second) != step_key(
        "generate", config, {}, "v", first
    )


def test_a_hub_model_is_identified_by_its_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    from satk8s.store.model_identity import model_digests

    commits = iter(["a" * 40, "b" * 40])
    monkeypatch.setattr(
        huggingface_hub.HfApi,
        "model_info",
        lambda self, repo_id, revision=None, **_: type("Info", (), {"sha": next(commits)})(),
    )
    moving = {"model": "Org/Model"}
    assert model_digests(moving) == {"model": "hub:Org/Model@" + "a" * 40}
    assert model_digests(moving) == {"model": "hub:Org/Model@" + "b" * 40}  # main moved


def test_an_unreachable_hub_model_fails_before_any_store_write(
    store_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    def offline(self: object, repo_id: str, **_: object) -> None:
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", offline)
    out = join(store_root, "gen")
    code, output = step("generate", "-i", f"questions={out}-q", "--out", out, "--set=model=Org/M")
    assert code == 2
    assert "Org/M" in output and "stage-model" in output
    from satk8s.store import get_store

    assert get_store(out).list(out) == []


def test_grid_outputs_stay_content_addressed(tmp_path: Path) -> None:
    root = (tmp_path / "store").as_uri()
    a = run_addressed("prepare", root, resolve_config("prepare", {"seed": 0}), {})
    b = run_addressed("prepare", root, resolve_config("prepare", {"seed": 1}), {})
    again = run_addressed("prepare", root, resolve_config("prepare", {"seed": 0}), {})
    assert a["out"] != b["out"] and again["out"] == a["out"]
    assert (a["cached"], b["cached"], again["cached"]) == (False, False, True)
    assert read_manifest_at(a["out"])["key"] == a["out"].rsplit("/", 1)[-1]


def test_bad_model_references_fail_before_any_store_write(tmp_path: Path, store_root: str) -> None:
    from satk8s.store import get_store

    empty = tmp_path / "empty-model"
    empty.mkdir()
    out = join(store_root, "g")
    for model, says in (
        (str(tmp_path / "no" / "such" / "dir"), "does not exist"),
        (str(empty), "no config.json"),
    ):
        code, output = step(
            "generate", "-i", f"questions={out}-q", "--out", out, f"--set=model={model}"
        )
        assert code == 2 and says in output and model in output
        assert "Traceback" not in output
        assert get_store(out).list(out) == []


def test_a_relative_path_that_exists_is_local(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from satk8s.store.model_identity import model_digests
    from satk8s.store.stage_model import is_local_reference, resolve_model

    (tmp_path / "runs" / "tiny").mkdir(parents=True)
    (tmp_path / "runs" / "tiny" / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert is_local_reference("runs/tiny")
    assert resolve_model("runs/tiny") == str(tmp_path / "runs" / "tiny")
    assert model_digests({"model": "runs/tiny"})["model"] != "hub:runs/tiny"
    shutil.rmtree(tmp_path / "runs")
    with pytest.raises(Satk8sError, match="runs/tiny"):
        model_digests({"model": "runs/tiny/"})


def _checkpoint_dir(tmp_path: Path) -> str:
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text('{"model_type": "qwen3"}')
    return str(model)


def test_generate_with_another_n_at_the_same_out_is_refused(
    tmp_path: Path, store_root: str
) -> None:
    from satk8s.generation import SamplingConfig
    from satk8s.steps.generate import GenerateConfig, generate

    questions = join(store_root, "q")
    prepare(questions, PrepareConfig())
    out = join(store_root, "s")
    first = GenerateConfig(model=_checkpoint_dir(tmp_path), sampling=SamplingConfig(n=4))
    with step_output(out, "generate", first, {"questions": questions}) as output:
        root = output.open()
        (root / "shard-00000.parquet").write_bytes(b"samples of n=4")
        output.commit(root, {"samples": 4}, 0.0)
    again = GenerateConfig(model=first.model, sampling=SamplingConfig(n=8))
    with pytest.raises(OutputConflictError, match="sampling.n: 4 -> 8"):
        generate(questions, out, again)
    assert generate(questions, out, first)["cached"] is True


def test_a_crashed_train_rerun_with_a_new_learning_rate_and_seed_is_refused(
    tmp_path: Path, store_root: str
) -> None:
    from satk8s.steps.train import TrainStepConfig, train_model
    from satk8s.training import TrainConfig

    dataset = join(store_root, "dataset")
    with step_output(dataset, "build_dataset", {"algorithm": "sft"}, {}) as output:
        root = output.open()
        (root / "train.parquet").write_bytes(b"rows")
        output.commit(root, {}, 0.0)
    out = join(store_root, "train")
    old = TrainStepConfig(model=_checkpoint_dir(tmp_path), train=TrainConfig(learning_rate=1e-3))
    with (
        pytest.raises(RuntimeError),
        step_output(out, "train", old, {"dataset": dataset}) as output,
    ):
        root = output.open()
        (root / "checkpoints" / "checkpoint-2").mkdir(parents=True)
        (root / "checkpoints" / "checkpoint-2" / "trainer_state.json").write_text("{}")
        commit_partial(root, "checkpoints/checkpoint-2")
        raise RuntimeError("the pod is preempted")
    new = TrainStepConfig(model=old.model, train=TrainConfig(learning_rate=2e-3, seed=1))
    with pytest.raises(OutputConflictError) as err:
        train_model(dataset, out, new)
    message = str(err.value)
    assert "unfinished output of another config" in message
    assert "train.learning_rate: 0.001 -> 0.002" in message and "train.seed: 0 -> 1" in message
