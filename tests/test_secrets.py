"""Secrets never printed: a run made with marker secrets (S3 credentials, a judge API key, a
password in the judge's URL) leaves none of them in any output, log, error or compiled YAML;
settings that carry credentials are refused for compiled pipelines."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from satk8s.cli.main import app
from satk8s.steps.outputs import commit, open_output
from satk8s.store import get_store
from tests.s3_fixtures import FAKE_CREDENTIALS
from tests.test_openai_judge import FakeOpenAI, Reply, logprobs_reply

KEY = "sk-marker-key-7Hq2Zx9Lp4Vd"
PASSWORD = "url-marker-pw-3Nf8Kc1Rt6"
MARKERS = [KEY, PASSWORD, *FAKE_CREDENTIALS.values()]
IMAGES = {
    "gpu": "registry.example/satk8s-gpu@sha256:" + "a" * 64,
    "cpu": "registry.example/satk8s-cpu@sha256:" + "b" * 64,
}
runner = CliRunner()


def leaks(text: str | bytes) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [m for m in MARKERS if m.encode() in data]


def kept_output(out: str) -> str:
    """A saturate output with one question's three correct solutions."""
    root = open_output(out)
    table = pa.table(
        {
            "question_id": ["q"] * 3,
            "sample_index": pa.array([0, 1, 2], pa.int32()),
            "prompt": ["Question: 1+1\nAnswer:"] * 3,
            "completion": [" 1+1=2 #### 2", " 1+1=2 so #### 2", " 1+1=2 so it is #### 2"],
        }
    )
    pq.write_table(table, root / "kept.parquet")
    commit(root, "saturate", {}, {}, {"kept_solutions": 3}, 0.0)
    return out


def judge_args(kept: str, out: str, base_url: str) -> list[str]:
    return [
        "step", "signals", "-i", f"kept={kept}", "--out", out,
        "--set=signal=external_judge", "--set=external_judge.kind=openai",
        "--set=external_judge.model=judge-model", f"--set=external_judge.base_url={base_url}",
        "--set=external_judge.timeout_s=2", "--set=external_judge.max_retries=0",
    ]  # fmt: skip


def with_password(url: str) -> str:
    return url.replace("http://", f"http://judge-user:{PASSWORD}@")


def test_credentials_in_settings_are_refused_for_compiled_pipelines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    from satk8s.cluster.settings import ClusterSettings

    digests = tmp_path / "digests.json"
    digests.write_text(json.dumps(IMAGES))
    settings = tmp_path / "settings.yaml"
    settings.write_text(ClusterSettings(store_root="s3://acme-runs/satk8s").export_yaml())
    judge = ["signal/external_judge=openai"]
    for setting, says in (
        (
            f"signal.external_judge.base_url={with_password('http://judge:8000/v1')}",
            "a password in a URL",
        ),
        (f"signal.external_judge.model={KEY}", "the value of a secret environment variable"),
    ):
        out = tmp_path / "p.yaml"
        result = runner.invoke(
            app,
            [
                "grid",
                "compile",
                "smoke",
                *judge,
                setting,
                "-o",
                str(out),
                "--images",
                str(digests),
                "--settings",
                str(settings),
            ],
        )
        assert result.exit_code == 2, result.output
        assert "signal-external_judge" in result.output and says in result.output
        assert "environment variable" in result.output and "Secret" in result.output
        assert leaks(result.output) == [] and not out.exists()
    # Through `satk8s component` (the docker command line) the same.
    result = runner.invoke(
        app, ["component", "signals", "--dry-run", "--", "--out", "s3://b/x",
              f"--set=external_judge.base_url={with_password('http://j/v1')}"],
    )  # fmt: skip
    assert result.exit_code == 2 and "a password in a URL" in result.output
    assert leaks(result.output) == []


@pytest.mark.slow
def test_no_marker_secret_reaches_any_output_log_or_yaml(
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    caplog.set_level(logging.DEBUG)  # botocore's and urllib3's debug logs included
    store = f"s3://{s3_bucket}/satk8s"
    seen: list[str] = []  # every text a user or an operator could see

    def verdict(n: int, body: dict) -> Reply:
        return logprobs_reply({" A": -0.1, " B": -2.4})

    def garbage(n: int, body: dict) -> Reply:  # echoes the key it got, as some servers do
        return Reply(body={"choices": [{"text": f"no model for key {KEY}"}]})

    good, bad = FakeOpenAI(verdict).__enter__(), FakeOpenAI(garbage).__enter__()
    try:
        kept = kept_output(f"{store}/kept")
        env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            result = subprocess.run(
                [sys.executable, "-m", "satk8s.cli.main", *args],
                env=env, capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            seen.extend([result.stdout, result.stderr])
            return result

        # A judge step that works (behind basic auth: the URL's password is sent) ...
        ok = cli(*judge_args(kept, f"{store}/judge", with_password(good.base_url)))
        assert ok.returncode == 0, ok.stderr
        assert good.seen[0].headers["Authorization"].startswith("Basic ")
        # ... one that fails on the garbage its endpoint answers (the error quotes a reply) ...
        failed = cli(*judge_args(kept, f"{store}/judge-bad", bad.base_url))
        assert bad.seen[0].headers["Authorization"] == f"Bearer {KEY}"
        assert failed.returncode == 2 and "a sample reply" in failed.stderr
        # ... bad settings that quote the value they got ...
        for bad_setting in (f"--set=sampling.n={KEY}", f"--set=model=http://u:{PASSWORD}@h/m"):
            rejected = cli(
                "step", "generate", "-i", f"questions={kept}", "--out", f"{store}/g", bad_setting
            )
            assert rejected.returncode == 2
        # ... the same judge step in this process, with every library's debug log on.
        from satk8s.config import build_config
        from satk8s.steps.signals import SignalConfig, score

        overrides = [
            a.removeprefix("--set=")
            for a in judge_args(kept, "", with_password(good.base_url))
            if a.startswith("--set=")
        ]
        score(kept, f"{store}/judge-here", build_config(SignalConfig, overrides))
    finally:
        good.__exit__()
        bad.__exit__()

    # A compiled pipeline with the judge's key from the environment, and a kfp.local run.
    from satk8s.cluster.settings import ClusterSettings

    digests = tmp_path / "digests.json"
    digests.write_text(json.dumps(IMAGES))
    settings = tmp_path / "settings.yaml"
    cluster = ClusterSettings(
        store_root="s3://acme-runs/satk8s",
        s3_secret="satk8s-s3",
        judge_api_key_secret="satk8s-judge-api-key",
    )
    settings.write_text(cluster.export_yaml())
    compiled = runner.invoke(
        app, ["grid", "compile", "smoke", "signal/external_judge=openai",
              "-o", str(tmp_path / "smoke.yaml"), "--images", str(digests),
              "--settings", str(settings)],
    )  # fmt: skip
    assert compiled.exit_code == 0, compiled.output
    seen.append(compiled.output)
    from satk8s.grid.plan import Node, Plan
    from satk8s.orchestration.addressed import resolve_config
    from satk8s.orchestration.local_run import run_local

    plan = Plan(
        "cheap", (Node("prepare-a", "prepare", "cpu", resolve_config("prepare")),), (), store
    )
    run_local(plan, store, tmp_path / "kfp")

    captured = capfd.readouterr()
    seen += [captured.out, captured.err, caplog.text]
    assert "Sending http request" in caplog.text  # the debug logs were there, masked
    found = {m: i for i, text in enumerate(seen) for m in leaks(text)}
    assert found == {}, found
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert leaks(path.read_bytes()) == [], path
    objects = get_store(store).list(store)
    assert any(o.uri.endswith("/judge/manifest.json") for o in objects)
    for obj in objects:
        assert leaks(get_store(obj.uri).read_bytes(obj.uri) or b"") == [], obj.uri
