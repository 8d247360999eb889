"""`satk8s store ls|du|gc|stage-model` and model references, on file:// and s3://."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from satk8s.cli.store_cmd import store_app
from satk8s.errors import DataError
from satk8s.steps.outputs import commit, finished_summary, open_output
from satk8s.store import gc, get_store
from satk8s.store.inventory import inventory
from satk8s.store.stage_model import StageModelConfig, model_uri, resolve_model, stage_model
from satk8s.store.uri import join

runner = CliRunner()


def make_output(
    out: str,
    step: str,
    inputs: dict[str, str] | None = None,
    config: dict | None = None,
    size: int = 100,
) -> str:
    root = open_output(out)
    (root / "data.bin").write_bytes(b"x" * size)
    commit(root, step, config or {}, inputs or {}, {"step": step}, time.time())
    return out


def make_run(root: str) -> dict[str, str]:
    """prepare -> generate -> report, plus an orphan, an unfinished output and a staged model."""
    runs = {
        name: join(root, "steps", name, f"key-{name}")
        for name in ("prepare", "generate", "report", "orphan", "unfinished")
    }
    runs["model"] = join(root, "models", "org", "tiny", "main")
    make_output(runs["model"], "stage-model")
    make_output(runs["prepare"], "prepare")
    make_output(
        runs["generate"],
        "generate",
        {"questions": runs["prepare"]},
        {"model": runs["model"]},
        size=5000,
    )
    make_output(runs["report"], "report", {"evaluations": f"{runs['generate']},{runs['prepare']}"})
    make_output(runs["orphan"], "generate", size=7000)
    (open_output(runs["unfinished"]) / "shard-00000.parquet").write_bytes(b"y" * 10)
    return runs


def test_ls_lists_outputs_finished_or_not(store_root: str) -> None:
    runs = make_run(store_root)
    result = runner.invoke(store_app, ["ls", store_root, "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["uri"]: r for r in map(json.loads, result.output.splitlines())}
    assert set(rows) == set(runs.values())
    assert rows[runs["unfinished"]]["status"] == "unfinished"
    assert rows[runs["generate"]] | {"modified": 0} == {
        "uri": runs["generate"],
        "status": "finished",
        "step": "generate",
        "files": 1,
        "bytes": rows[runs["generate"]]["bytes"],
        "modified": 0,
    }
    assert rows[runs["generate"]]["bytes"] > 5000
    text = runner.invoke(store_app, ["ls", store_root]).output
    assert "6 outputs" in text and "unfinished" in text


def test_du_sums_bytes_by_step(store_root: str) -> None:
    make_run(store_root)
    result = runner.invoke(store_app, ["du", store_root, "--json"])
    assert result.exit_code == 0, result.output
    usage = json.loads(result.output)
    assert usage["by_step"]["generate"]["outputs"] == 2
    assert usage["by_step"]["generate"]["bytes"] > 12000
    assert usage["by_step"]["(unfinished)"]["outputs"] == 1
    assert usage["total_bytes"] == sum(o.bytes for o in inventory(store_root)[0])


def test_gc_is_a_dry_run_unless_told_and_keeps_the_lineage(store_root: str, tmp_path: Path) -> None:
    runs = make_run(store_root)
    keep = ["--keep", join(runs["report"], "manifest.json"), "--grace-hours", "0"]
    dry = runner.invoke(store_app, ["gc", store_root, *keep])
    assert dry.exit_code == 0, dry.output
    assert "would delete" in dry.output and runs["orphan"] in dry.output
    assert len(inventory(store_root)[0]) == 6  # nothing gone
    real = runner.invoke(store_app, ["gc", store_root, *keep, "--yes"])
    assert real.exit_code == 0, real.output
    left = {o.uri for o in inventory(store_root)[0]}
    # report -> generate, prepare (inputs) -> model (a config value): all kept
    assert left == {runs[n] for n in ("report", "generate", "prepare", "model")}
    assert finished_summary(runs["generate"]) is not None
    assert get_store(runs["orphan"]).list(runs["orphan"]) == []


def test_gc_spares_recent_outputs_and_refuses_a_missing_keep(store_root: str) -> None:
    runs = make_run(store_root)
    plan = gc.plan(store_root, [runs["report"]])  # default grace: a day
    assert plan.delete == [] and {o.uri for o in plan.young} == {runs["orphan"], runs["unfinished"]}
    result = runner.invoke(store_app, ["gc", store_root, "--keep", join(store_root, "typo.json")])
    assert result.exit_code == 2 and "does not exist" in result.output


def _checkpoint(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"model_type": "qwen3"}')
    (path / "model.safetensors").write_bytes(b"w" * 2048)
    return path


def test_stage_model_mirrors_a_hub_model_once(
    store_root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    downloads = []

    def fake_snapshot_download(repo_id: str, revision: str, local_dir: Path, **_: object) -> str:
        downloads.append((repo_id, revision))
        _checkpoint(Path(local_dir) / "sub")
        (Path(local_dir) / ".cache").mkdir()
        (Path(local_dir) / ".cache" / "meta").write_text("hub bookkeeping")
        return str(local_dir)

    sha = "0f3c" * 10

    class FakeHub:  # huggingface_hub.HfApi.model_info: the commit a revision points at
        def model_info(self, repo_id: str, revision: str) -> object:
            assert (repo_id, revision) == ("Org/Tiny-Model", "main")
            return type("ModelInfo", (), {"sha": sha})()

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    out = model_uri(store_root, "Org/Tiny-Model")
    assert out == join(store_root, "models", "Org", "Tiny-Model", "main")
    first = runner.invoke(store_app, ["stage-model", "Org/Tiny-Model", "--store", store_root])
    assert first.exit_code == 0, first.output
    assert json.loads(first.output)["files"] == 2
    # The revision was resolved to a commit, downloaded at that commit and recorded.
    assert downloads == [("Org/Tiny-Model", sha)]
    from satk8s.store.fetch import finished_manifest

    assert finished_manifest(out)["summary"]["commit"] == sha
    again = stage_model(out, StageModelConfig(model="Org/Tiny-Model"))
    assert again["cached"] is True and downloads == [("Org/Tiny-Model", sha)]
    # A pod that names the hub id loads the mirror, never the hub.
    monkeypatch.setenv("SATK8S_MODEL_STORE", store_root)
    local = Path(resolve_model("Org/Tiny-Model"))
    assert (local / "sub" / "model.safetensors").read_bytes() == b"w" * 2048
    assert not (local / ".cache").exists()
    assert resolve_model("Org/Not-Staged") == "Org/Not-Staged"


def test_model_references_resolve_to_local_directories(s3_bucket: str, tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path / "my-model")
    assert resolve_model(str(ckpt)) == str(ckpt)
    assert resolve_model(f"file://{ckpt}") == str(ckpt)
    with pytest.raises(DataError, match="does not exist"):
        resolve_model(str(tmp_path / "nope"))
    result = runner.invoke(store_app, ["stage-model", str(ckpt), "--store", f"s3://{s3_bucket}/m"])
    assert result.exit_code == 0, result.output
    uri = json.loads(result.output)["uri"]
    assert uri.startswith(f"s3://{s3_bucket}/m/models/local/my-model-")
    local = Path(resolve_model(uri))
    assert (local / "config.json").read_text() == '{"model_type": "qwen3"}'
    # a plain prefix someone uploaded (no manifest) works too
    get_store(uri).put_files([(ckpt / "config.json", f"s3://{s3_bucket}/raw/config.json", None)])
    assert (Path(resolve_model(f"s3://{s3_bucket}/raw")) / "config.json").exists()


def test_the_pipelines_stage_task_stages_at_its_address_and_steps_load_that_copy(
    store_root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The `stage-model` node of a compiled grid: one task mirrors the hub model at its
    content address; a model-taking task gets that location as its model and loads the copy."""
    import huggingface_hub

    from satk8s.cluster.settings import ClusterSettings
    from satk8s.grid.cluster import load_cluster_plan
    from satk8s.orchestration.addressed import run_addressed

    sha = "9a" * 20
    monkeypatch.setattr(
        huggingface_hub,
        "HfApi",
        lambda: type(
            "Hub", (), {"model_info": lambda self, m, revision: type("I", (), {"sha": sha})()}
        )(),
    )

    def fake_download(repo_id: str, revision: str, local_dir: Path, **_: object) -> str:
        assert revision == sha
        _checkpoint(Path(local_dir) / "weights")
        return str(local_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    settings = ClusterSettings(store_root="s3://acme-x/s", source="t")
    plan = load_cluster_plan("arith", ["seeds=[0]", "signals=[entropy]"], settings)
    stage = plan.node("stage-model")

    staged = run_addressed("stage_model", store_root, stage.config, {})

    assert staged["commit"] == sha and staged["model"] == "Qwen/Qwen3-1.7B-Base"
    local = Path(resolve_model(staged["out"]))  # what generate, train, ... load
    assert (local / "weights" / "config.json").read_text() == '{"model_type": "qwen3"}'
    again = run_addressed("stage_model", store_root, stage.config, {})
    assert again["cached"] is True and again["out"] == staged["out"]
