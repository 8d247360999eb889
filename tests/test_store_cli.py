"""`satk8s store ls|du|gc|stage-model` and model references, on file:// and s3://."""

from __future__ import annotations

import json
import shutil
import time
from contextlib import suppress
from pathlib import Path

import pytest
from typer.testing import CliRunner

from satk8s.cli.main import app
from satk8s.cli.store_cmd import store_app
from satk8s.errors import DataError
from satk8s.steps.outputs import commit, commit_partial, finished_summary, open_output, step_output
from satk8s.store import gc, get_store
from satk8s.store.fetch import read_manifest_at
from satk8s.store.inventory import inventory
from satk8s.store.stage_model import StageModelConfig, model_uri, resolve_model, stage_model
from satk8s.store.uri import join, local_path

runner = CliRunner()
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def make_output(
    out: str,
    step: str,
    inputs: dict[str, str] | None = None,
    config: dict | None = None,
    size: int = 100,
) -> str:
    root = open_output(out)
    (root / "data.bin").write_bytes(b"x" * size)
    if step == "stage-model":
        (root / "config.json").write_text('{"model_type": "qwen3"}')
    commit(root, step, config or {}, inputs or {}, {"step": step}, time.time())
    return out


def crashed_output(out: str) -> str:
    """A step that committed one piece and died: unfinished, resumable, nobody writing."""
    with suppress(RuntimeError), step_output(out, "generate", {"n": 1}, {}) as output:
        root = output.open()
        (root / "shard-00000.parquet").write_bytes(b"y" * 10)
        commit_partial(root, "shard-00000.parquet")
        raise RuntimeError("the writer dies")
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
    crashed_output(runs["unfinished"])
    return runs


def damage(uri: str, data: bytes) -> None:
    """Replace a stored object's bytes behind the store's back."""
    if uri.startswith("s3://"):
        from satk8s.store.s3 import split

        bucket, key = split(uri)
        get_store(uri).client.put_object(Bucket=bucket, Key=key, Body=data)
    else:
        local_path(uri).write_bytes(data)


def test_ls_lists_outputs_finished_or_not(store_root: str) -> None:
    runs = make_run(store_root)
    result = runner.invoke(store_app, ["ls", store_root, "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["uri"]: r for r in map(json.loads, result.output.splitlines())}
    assert set(rows) == set(runs.values())
    assert rows[runs["unfinished"]]["status"] == "unfinished"
    own = {o.uri.rsplit("/", 1)[-1]: o.size for o in get_store(store_root).list(runs["generate"])}
    assert own["data.bin"] == 5000 and ".staging" not in own
    assert rows[runs["generate"]] | {"modified": 0} == {
        "uri": runs["generate"],
        "status": "finished",
        "step": "generate",
        "files": 1,
        "bytes": sum(own.values()),  # data, manifest, marker (and a local lease file)
        "scratch_bytes": 0,
        "modified": 0,
        "problems": [],
    }
    text = runner.invoke(store_app, ["ls", store_root]).output
    assert "6 outputs" in text and "unfinished" in text


def test_ls_shows_truncated_and_corrupted_outputs_as_damaged(store_root: str) -> None:
    short = make_output(join(store_root, "short"), "generate", size=300)
    flipped = make_output(join(store_root, "flipped"), "generate", size=300)
    damage(join(short, "data.bin"), b"x" * 100)
    damage(join(flipped, "data.bin"), b"y" * 300)  # same size: only sha256 tells

    rows = {
        r["uri"]: r
        for r in map(
            json.loads, runner.invoke(store_app, ["ls", store_root, "--json"]).output.splitlines()
        )
    }
    assert rows[short]["status"] == "damaged"
    assert rows[short]["problems"] == ["data.bin has 100 bytes, not 300"]
    assert rows[flipped]["status"] == "finished"  # sizes alone cannot see it
    verified = runner.invoke(store_app, ["ls", store_root, "--verify"])
    assert verified.exit_code == 0, verified.output
    assert "data.bin does not match its sha256" in verified.output
    assert "2 damaged: rerun their steps with --force" in verified.output


def test_ls_and_du_keep_writers_scratch_apart(store_root: str) -> None:
    out = make_output(join(store_root, "steps", "generate", "k"), "generate", size=1000)
    leftover = join(out, ".staging", "12345-deadbeef", "root", "shard-00000.parquet")
    get_store(out).write_bytes(leftover, b"z" * 4000)  # a dead writer's staging
    [row] = map(
        json.loads, runner.invoke(store_app, ["ls", store_root, "--json"]).output.splitlines()
    )
    assert row["status"] == "finished" and row["bytes"] < 2000
    assert row["scratch_bytes"] >= 4000
    usage = json.loads(runner.invoke(store_app, ["du", store_root, "--json"]).output)
    assert usage["by_step"]["generate"]["bytes"] == row["bytes"]
    assert usage["by_step"]["(scratch)"]["bytes"] == row["scratch_bytes"]


def test_du_sums_bytes_by_step(store_root: str) -> None:
    make_run(store_root)
    result = runner.invoke(store_app, ["du", store_root, "--json"])
    assert result.exit_code == 0, result.output
    usage = json.loads(result.output)
    assert usage["by_step"]["generate"]["outputs"] == 2
    assert usage["by_step"]["generate"]["bytes"] > 12000
    assert usage["by_step"]["(unfinished)"]["outputs"] == 1
    outputs = inventory(store_root)[0]
    assert usage["total_bytes"] == sum(o.total_bytes for o in outputs)


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


@pytest.mark.slow
def test_gc_keeps_a_chain_run_with_relative_paths(
    tmp_path: Path, random_tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's usage: steps run from one directory with relative paths (and a relative
    model path without ./); keeping the last output keeps every dependency, also when the
    manifests hold the relative paths (as manifests written before they were recorded
    absolute do)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SATK8S_STORE_CACHE", str(tmp_path / "cache"))
    shutil.copytree(random_tiny_dir, tmp_path / "models" / "tiny")
    small = ["--set=arith.train.easy=3", "--set=arith.train.medium=0", "--set=arith.train.hard=0"]
    chain = [
        ["prepare", "--out", "runs/q", *small],
        ["prepare", "--out", "runs/orphan", *small, "--set=seed=5"],
        ["generate", "-i", "questions=runs/q", "--out", "runs/s", "--set=model=models/tiny",
         "--set=sampling.n=2", "--set=sampling.max_new_tokens=4"],
        ["saturate", "-i", "questions=runs/q", "-i", "samples=runs/s", "--out", "runs/sat"],
        ["signals", "-i", "kept=runs/sat", "--out", "runs/rand", "--set=signal=random"],
        ["signals", "-i", "kept=runs/sat", "--out", "runs/judge", "--set=signal=external_judge"],
        ["calibrate", "-i", "scores=runs/rand", "-i", "judge=runs/judge", "--out", "runs/cal"],
    ]  # fmt: skip
    for args in chain:
        result = runner.invoke(app, ["step", *args])
        assert result.exit_code == 0, result.output
    manifest = read_manifest_at("runs/sat")
    assert manifest["inputs"] == {
        "questions": (tmp_path / "runs" / "q").as_uri(),
        "samples": (tmp_path / "runs" / "s").as_uri(),
    }
    assert read_manifest_at("runs/s")["models"]["model"]["location"] == (
        (tmp_path / "models" / "tiny").as_uri()
    )
    lineage = {f"runs/{n}" for n in ("q", "s", "sat", "rand", "judge", "cal")}

    def collect() -> set[str]:
        result = runner.invoke(
            store_app,
            ["gc", "runs", "--keep", "runs/cal/manifest.json", "--grace-hours", "0", "--yes"],
        )
        assert result.exit_code == 0, result.output
        return {
            Path(local_path(o.uri)).relative_to(tmp_path).as_posix() for o in inventory("runs")[0]
        }

    assert collect() == lineage  # the orphan went, every dependency stayed
    # Manifests as older versions wrote them: relative input paths, no model record.
    for name in lineage:
        path = tmp_path / name / "manifest.json"
        old = json.loads(path.read_text())
        old["inputs"] = {k: ",".join(f"runs/{Path(v).name}" for v in vs.split(",") if v)
                         for k, vs in old["inputs"].items()}  # fmt: skip
        old.pop("models")
        path.write_text(json.dumps(old))
    assert collect() == lineage
    for name in lineage:
        assert finished_summary(name) is not None


def _fake_hub(monkeypatch: pytest.MonkeyPatch, downloads: list | None = None) -> None:
    import huggingface_hub

    def fake_snapshot_download(repo_id: str, revision: str, local_dir: Path, **_: object) -> str:
        if downloads is not None:
            downloads.append((repo_id, revision))
        _checkpoint(Path(local_dir) / "sub")
        (Path(local_dir) / "config.json").write_text('{"model_type": "qwen3"}')
        (Path(local_dir) / ".cache").mkdir()
        (Path(local_dir) / ".cache" / "meta").write_text("hub bookkeeping")
        return str(local_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    monkeypatch.setattr(
        huggingface_hub.HfApi,
        "model_info",
        lambda self, repo_id, revision=None, **_: type("Info", (), {"sha": COMMIT})(),
    )


def test_gc_keeps_a_staged_hub_model_a_kept_step_read(
    store_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_hub(monkeypatch)
    mirror = model_uri(store_root, "Org/Tiny")
    stage_model(mirror, StageModelConfig(model="Org/Tiny"))
    monkeypatch.setenv("SATK8S_MODEL_STORE", store_root)
    new = make_output(
        join(store_root, "steps", "generate", "new"), "generate", config={"model": "Org/Tiny"}
    )
    assert read_manifest_at(new)["models"]["model"] == {
        "reference": "Org/Tiny",
        "identity": f"hub:Org/Tiny@{COMMIT}",
        "location": mirror,
    }
    old = make_output(
        join(store_root, "steps", "generate", "old"), "generate", config={"model": "Org/Tiny"}
    )
    manifest = read_manifest_at(old)
    manifest.pop("models")  # as written before models were recorded
    get_store(old).write_bytes(join(old, "manifest.json"), json.dumps(manifest).encode())
    for kept in (new, old):
        plan = gc.plan(store_root, [kept], grace_s=0)
        assert mirror in {o.uri for o in plan.keep}, kept


def _checkpoint(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"model_type": "qwen3"}')
    (path / "model.safetensors").write_bytes(b"w" * 2048)
    return path


def test_stage_model_mirrors_a_hub_model_once(
    store_root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    downloads: list = []
    _fake_hub(monkeypatch, downloads)
    out = model_uri(store_root, "Org/Tiny-Model")
    assert out == join(store_root, "models", "Org", "Tiny-Model", "main")
    first = runner.invoke(store_app, ["stage-model", "Org/Tiny-Model", "--store", store_root])
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert summary["files"] == 3 and summary["commit"] == COMMIT
    # The revision was resolved to a commit, downloaded at that commit and recorded.
    from satk8s.store.fetch import finished_manifest

    assert finished_manifest(out)["summary"]["commit"] == COMMIT
    again = stage_model(out, StageModelConfig(model="Org/Tiny-Model"))
    assert again["cached"] is True and downloads == [("Org/Tiny-Model", COMMIT)]  # pinned
    # A pod that names the hub id loads the mirror, never the hub.
    monkeypatch.setenv("SATK8S_MODEL_STORE", store_root)
    local = Path(resolve_model("Org/Tiny-Model"))
    assert (local / "sub" / "model.safetensors").read_bytes() == b"w" * 2048
    assert not (local / ".cache").exists()
    assert resolve_model("Org/Not-Staged") == "Org/Not-Staged"


def test_failed_stage_model_runs_leave_nothing_and_name_the_problem(
    store_root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    _fake_hub(monkeypatch)

    def broken_download(repo_id: str, **_: object) -> str:
        raise OSError("connection reset by peer")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", broken_download)
    (tmp_path / "empty").mkdir()
    for model, says in (
        ("Org/Tiny-Model", "downloading Org/Tiny-Model at 0123456789ab from the hub failed"),
        (str(tmp_path / "empty"), "no config.json"),
        (str(tmp_path / "missing"), "does not exist"),
    ):
        result = runner.invoke(store_app, ["stage-model", model, "--store", store_root])
        assert result.exit_code == 2 and says in result.output, result.output
        assert "Traceback" not in result.output
        assert inventory(store_root) == ([], [])  # no unfinished output, no leftovers


def test_model_references_resolve_to_local_directories(s3_bucket: str, tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path / "my-model")
    assert resolve_model(str(ckpt)) == str(ckpt)
    assert resolve_model(f"file://{ckpt}") == str(ckpt)
    with pytest.raises(DataError, match="does not exist"):
        resolve_model(str(tmp_path / "nope"))
    result = runner.invoke(store_app, ["stage-model", str(ckpt), "--store", f"s3://{s3_bucket}/m"])
    assert result.exit_code == 0, result.output
    uri = json.loads(result.stdout)["uri"]
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
        (Path(local_dir) / "config.json").write_text('{"model_type": "qwen3"}')
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
