"""One step in its image with `docker run`: the exact command line, and the CLI around it.

No Docker engine runs here: the argv is checked element by element, and the command is run
through a stand-in `docker` script that records what it was given.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from satk8s.cli.component_cmd import COMPONENT_SETTINGS, component
from satk8s.errors import ConfigError
from satk8s.orchestration.docker import component_argv, forwarded_env_names, shell_line

GPU_REF = "registry.example.com/satk8s-gpu@sha256:" + "a" * 64
CPU_REF = "registry.example.com/satk8s-cpu@sha256:" + "b" * 64
SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEY123",
    "AWS_SECRET_ACCESS_KEY": "wJalr/EXAMPLE+secret",
    "HF_TOKEN": "hf_EXAMPLEtoken42",
}


@pytest.fixture
def digests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "digests.json"
    path.write_text(json.dumps({"cpu": CPU_REF, "gpu": GPU_REF}))
    monkeypatch.setenv("SATK8S_IMAGE_DIGESTS", str(path))
    return path


def test_gpu_step_on_an_s3_store_forwards_credentials_by_name_only(
    digests: Path, tmp_path: Path
) -> None:
    env = {
        **SECRETS,
        "SATK8S_S3_ENDPOINT_URL": "http://minio.example:9000",
        "AWS_REGION": "eu-west-1",
        "SATK8S_CODE_VERSION": "v-test",
        "SATK8S_CACHE": "/home/me/.cache",  # a host path: replaced, not forwarded
        "SATK8S_IMAGE_DIGESTS": str(digests),  # a host path: not forwarded
        "HF_HOME": str(tmp_path / "no-hf-cache"),  # absent: nothing to mount
        "PATH": "/usr/bin",
        "KFP_TOKEN": "not-for-steps",
    }
    args = ["--out", "s3://bucket/runs/samples", "-i", "questions=s3://bucket/runs/q"]

    argv = component_argv("generate", args, None, "s3://bucket/runs", env=env, user="1000:1000")

    assert argv == [
        "docker", "run", "--rm",
        "--gpus", "all", "--ipc=host",
        "--user", "1000:1000", "-e", "USER=satk8s",
        "-e", "HOME=/tmp",
        "-e", "SATK8S_CACHE=/tmp/satk8s-cache",
        "-e", "HF_HOME=/tmp/huggingface",
        "-e", "SATK8S_S3_ENDPOINT_URL",
        "-e", "AWS_REGION",
        "-e", "AWS_ACCESS_KEY_ID",
        "-e", "AWS_SECRET_ACCESS_KEY",
        "-e", "HF_TOKEN",
        "-e", "SATK8S_CODE_VERSION",
        GPU_REF,
        "satk8s", "step", "generate",
        "--out", "s3://bucket/runs/samples", "-i", "questions=s3://bucket/runs/q",
    ]  # fmt: skip
    line = shell_line(argv)
    for value in [*SECRETS.values(), "not-for-steps", "/home/me/.cache"]:
        assert value not in line


def test_cpu_step_on_a_file_store_mounts_it_at_the_same_path(digests: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    hf = tmp_path / "hf"
    hf.mkdir()
    args = [
        "--out", f"file://{store}/saturate/abc",
        "-i", f"questions={store}/prepare/q1",
        "--input=samples=store/generate/s1",  # relative: resolved in the (same) working dir
        "--set", "prompt.prefix=Q: hi",
    ]  # fmt: skip

    argv = component_argv(
        "saturate", args, None, f"file://{store}", env={"HF_HOME": str(hf)}, user="1000:1000",
        cwd=tmp_path,
    )  # fmt: skip

    assert argv == [
        "docker", "run", "--rm",
        "--user", "1000:1000", "-e", "USER=satk8s",
        "-e", "HOME=/tmp",
        "-e", "SATK8S_CACHE=/tmp/satk8s-cache",
        "-v", f"{hf}:{hf}", "-e", f"HF_HOME={hf}",
        "-v", f"{store}:{store}", "-w", str(tmp_path),
        CPU_REF,
        "satk8s", "step", "saturate", *args,
    ]  # fmt: skip
    assert "'prompt.prefix=Q: hi'" in shell_line(argv)


def test_image_override_gpus_mounts_network_and_default_user(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    argv = component_argv(
        "train",
        ["--out", "runs/t", "-i", "dataset=runs/d"],
        "registry.example.com/satk8s-gpu:dev",
        "runs",
        gpus="device=1",
        env_names=["OPENAI_API_KEY", "MY_JUDGE_KEY"],
        env={"MY_JUDGE_KEY": "sk-judge-secret", "HF_HOME": str(tmp_path / "none")},
        mounts=[str(model)],
        network="host",
        cwd=tmp_path,
    )
    runs = tmp_path / "runs"
    assert argv == [
        "docker", "run", "--rm",
        "--gpus", "device=1", "--ipc=host",
        "--user", f"{os.getuid()}:{os.getgid()}", "-e", "USER=satk8s",
        "-e", "HOME=/tmp",
        "-e", "SATK8S_CACHE=/tmp/satk8s-cache",
        "-e", "HF_HOME=/tmp/huggingface",
        "-v", f"{runs}:{runs}", "-w", str(tmp_path),
        "-v", f"{model}:{model}:ro",
        "--network", "host",
        "-e", "MY_JUDGE_KEY",  # OPENAI_API_KEY is not set: not forwarded
        "registry.example.com/satk8s-gpu:dev",
        "satk8s", "step", "train", "--out", "runs/t", "-i", "dataset=runs/d",
    ]  # fmt: skip


def test_image_override_needs_no_digests_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SATK8S_IMAGE_DIGESTS", str(tmp_path / "missing.json"))
    argv = component_argv("report", [], "my/cpu:dev", "s3://b/r", env={}, user="")
    assert argv[:3] == ["docker", "run", "--rm"]
    assert argv[-4:] == ["my/cpu:dev", "satk8s", "step", "report"]
    assert "--user" not in argv  # user="" keeps the image's own uid 10001


def test_missing_digests_file_says_how_to_get_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "missing.json"
    monkeypatch.setenv("SATK8S_IMAGE_DIGESTS", str(missing))
    with pytest.raises(ConfigError) as err:
        component_argv("generate", [], None, "s3://b/r", env={})
    assert str(err.value) == (
        f"config field 'images': no image digests file at {missing}; build and push the step "
        "images with `make images REGISTRY=<registry>`, or point SATK8S_IMAGE_DIGESTS at a "
        "digests file"
    )


def test_unknown_step_lists_the_steps(digests: Path) -> None:
    with pytest.raises(ConfigError) as err:
        component_argv("genrate", [], None, "s3://b/r", env={})
    from satk8s.steps import STEPS

    assert str(err.value) == (
        f"config field 'step': unknown step 'genrate'; known: {', '.join(STEPS)}"
    )
    assert {"prepare", "generate", "train", "evaluate", "report"} <= set(STEPS)


def test_local_locations_must_be_inside_the_mounted_store(digests: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"/elsewhere/out is outside the store root"):
        component_argv(
            "prepare", ["--out", "/elsewhere/out"], None, str(tmp_path), env={}, cwd=tmp_path
        )
    with pytest.raises(ConfigError, match=r"runs/q is local, but the store s3://b/r is remote"):
        component_argv(
            "generate", ["--out", "s3://b/r/s", "-i", "questions=runs/q"], None, "s3://b/r", env={}
        )


def test_env_values_are_refused(digests: Path) -> None:
    with pytest.raises(ConfigError, match=r"'HF_TOKEN=…': pass environment variables by name"):
        component_argv("generate", [], None, "s3://b/r", env_names=["HF_TOKEN=x"], env={})


def test_forwarded_names_follow_the_s3_settings_then_tokens_then_satk8s() -> None:
    env = {
        "SATK8S_Z": "1",
        "OPENAI_API_KEY": "k",
        "AWS_SESSION_TOKEN": "t",
        "SATK8S_S3_MAX_ATTEMPTS": "3",
        "SATK8S_IMAGE": "gpu",
        "SATK8S_STORE_CACHE": "/x",
        "HOME": "/root",
    }
    assert forwarded_env_names(env) == [
        "AWS_SESSION_TOKEN",
        "SATK8S_S3_MAX_ATTEMPTS",
        "OPENAI_API_KEY",
        "SATK8S_Z",
    ]


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command("component", context_settings=COMPONENT_SETTINGS)(component)
    app.command("other")(lambda: None)  # two commands: `component` stays a subcommand
    return app


def test_dry_run_prints_the_command_line(digests: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    args = ["--out", "s3://b/r/s", "-i", "questions=s3://b/r/q", "--set", "prompt.prefix=Q: hi"]

    result = CliRunner().invoke(
        _cli(), ["component", "generate", "--dry-run", "--store", "s3://b/r", *args]
    )

    assert result.exit_code == 0, result.output
    expected = component_argv("generate", args, None, "s3://b/r")
    assert result.stdout == shell_line(expected) + "\n"
    assert shlex.split(result.stdout) == expected
    assert result.stdout.startswith(
        "docker run --rm --gpus all --ipc=host "
        f"--user {os.getuid()}:{os.getgid()} -e USER=satk8s -e HOME=/tmp"
    )
    assert result.stdout.endswith(
        f"{GPU_REF} satk8s step generate --out s3://b/r/s -i questions=s3://b/r/q "
        "--set 'prompt.prefix=Q: hi'\n"
    )
    assert "-e AWS_SECRET_ACCESS_KEY" in result.stdout
    for value in SECRETS.values():
        assert value not in result.output


def test_cli_errors_exit_2(digests: Path) -> None:
    result = CliRunner().invoke(_cli(), ["component", "nope", "--dry-run"])
    assert result.exit_code == 2
    assert result.output.startswith("error: config field 'step': unknown step 'nope'; known:")


def test_without_docker_on_path_it_says_so(
    digests: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    result = CliRunner().invoke(_cli(), ["component", "report", "--store", "s3://b/r"])
    assert result.exit_code == 2
    assert "error: docker is not on PATH" in result.output


def test_runs_docker_with_the_argv_and_returns_its_exit_code(
    digests: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in docker: records its arguments and the secret it can read from its own
    # environment (how real docker resolves `-e NAME`), then fails with code 3.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "argv.txt"
    fake = bin_dir / "docker"
    fake.write_text(
        "#!/bin/sh\n"
        f"printf '%s\\n' \"$@\" > {record}\n"
        f'printf "%s" "$AWS_SECRET_ACCESS_KEY" > {tmp_path / "seen-secret"}\n'
        "exit 3\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRETS["AWS_SECRET_ACCESS_KEY"])

    result = CliRunner().invoke(
        _cli(), ["component", "calibrate", "--store", "s3://b/r", "--out", "s3://b/r/c"]
    )

    assert result.exit_code == 3
    recorded = record.read_text().splitlines()
    assert recorded == component_argv("calibrate", ["--out", "s3://b/r/c"], None, "s3://b/r")[1:]
    assert recorded[recorded.index("AWS_SECRET_ACCESS_KEY") - 1] == "-e"
    assert SECRETS["AWS_SECRET_ACCESS_KEY"] not in recorded
    assert (tmp_path / "seen-secret").read_text() == SECRETS["AWS_SECRET_ACCESS_KEY"]
    assert result.stdout == ""  # the command line went to stderr: stdout is the step's own


@pytest.mark.parametrize(
    ("step", "ref", "gpu_flags"),
    [
        ("prepare", CPU_REF, False),
        ("saturate", CPU_REF, False),
        ("calibrate", CPU_REF, False),
        ("build_dataset", CPU_REF, False),
        ("report", CPU_REF, False),
        ("generate", GPU_REF, True),
        ("signals", GPU_REF, True),
        ("train", GPU_REF, True),
        ("evaluate", GPU_REF, True),
    ],
)
def test_each_step_gets_its_pinned_image(
    digests: Path, step: str, ref: str, gpu_flags: bool
) -> None:
    argv = component_argv(step, [], None, "s3://b/r", env={}, user="")
    assert argv[-4:] == [ref, "satk8s", "step", step]
    assert ("--gpus" in argv, "--ipc=host" in argv) == (gpu_flags, gpu_flags)


def test_aws_profile_and_the_callers_aws_config_reach_the_step(
    digests: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "config").write_text("[profile research]\nregion = eu-west-1\n")
    env = {"HOME": str(home), "AWS_PROFILE": "research", "HF_HOME": str(tmp_path / "none")}
    args = ["--out", "s3://bucket/runs/samples", "-i", "questions=s3://bucket/runs/q"]

    argv = component_argv("generate", args, None, "s3://bucket/runs", env=env, user="1000:1000")

    # The profile by name, the files read-only where boto3 looks with HOME=/tmp; nothing of
    # their contents on the command line.
    assert argv[argv.index("-v", argv.index("HF_HOME=/tmp/huggingface")) :][:2] == [
        "-v",
        f"{home / '.aws'}:/tmp/.aws:ro",
    ]
    assert ["-e", "AWS_PROFILE"] == argv[
        argv.index("AWS_PROFILE") - 1 : argv.index("AWS_PROFILE") + 1
    ]
    assert "research" not in shell_line(argv)
    # Without a ~/.aws there is nothing to mount.
    bare = component_argv(
        "generate", args, None, "s3://bucket/runs", env={"HOME": str(tmp_path)}, user="1:1"
    )
    assert not any(a.endswith(":/tmp/.aws:ro") for a in bare)
