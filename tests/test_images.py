"""The step images: their pinned stack matches pyproject.toml, they run as non-root with the
satk8s version on them, no secret can reach them, and `make images` records pushed digests that
the compiler reads back (docker itself is faked: no docker engine here)."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from satk8s.errors import ConfigError
from satk8s.images import digest_from_metadata, load_image_refs, record_digest

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "images"
DOCKERFILES = {name: IMAGES / f"Dockerfile.{name}" for name in ("gpu", "cpu")}
DIGEST_GPU = "sha256:" + "1" * 64
DIGEST_CPU = "sha256:" + "2" * 64


# -- A small Dockerfile reader -------------------------------------------------------------------


def instructions(dockerfile: Path) -> list[tuple[int, str, str]]:
    """(stage index, INSTRUCTION, arguments) with line continuations joined, comments dropped."""
    out, stage, buffer = [], -1, ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        buffer += " " + line.removesuffix("\\").strip()
        if line.endswith("\\"):
            continue
        word, _, args = buffer.strip().partition(" ")
        buffer = ""
        if word.upper() == "FROM":
            stage += 1
        out.append((stage, word.upper(), args.strip()))
    return out


def args_of(dockerfile: Path) -> dict[str, str]:
    """Every `ARG NAME=default`, in any stage."""
    found = {}
    for _, word, args in instructions(dockerfile):
        if word == "ARG" and "=" in args:
            name, _, value = args.partition("=")
            found[name] = value
    return found


def final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    steps = instructions(dockerfile)
    last = max(stage for stage, _, _ in steps)
    return [(word, args) for stage, word, args in steps if stage == last]


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def pinned(name: str) -> Requirement:
    project = pyproject()["project"]
    deps = project["dependencies"] + [
        d for ds in project["optional-dependencies"].values() for d in ds
    ]
    (req,) = [Requirement(d) for d in deps if Requirement(d).name == name]
    return req


# -- The pinned stack ---------------------------------------------------------------------------


@pytest.mark.parametrize("image", ["gpu", "cpu"])
def test_dockerfile_pins_match_pyproject(image):
    args = args_of(DOCKERFILES[image])

    for arg, package in [
        ("TORCH_VERSION", "torch"),
        ("TRANSFORMERS_VERSION", "transformers"),
        ("TRL_VERSION", "trl"),
    ]:
        version = args[arg]
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{arg}={version} must be an exact version"
        assert pinned(package).specifier.contains(version), (
            f"{image}: {arg}={version} is outside pyproject's {package}{pinned(package).specifier}"
        )


def test_gpu_image_pins_vllm_exactly_as_the_vllm_extra():
    (spec,) = pinned("vllm").specifier

    assert spec.operator == "=="
    assert args_of(DOCKERFILES["gpu"])["VLLM_VERSION"] == spec.version


def test_both_images_carry_the_same_stack():
    gpu, cpu = args_of(DOCKERFILES["gpu"]), args_of(DOCKERFILES["cpu"])

    for arg in ("TORCH_VERSION", "TRANSFORMERS_VERSION", "TRL_VERSION"):
        assert gpu[arg] == cpu[arg]


def test_pins_are_enforced_as_constraints_and_checked():
    for image, dockerfile in DOCKERFILES.items():
        runs = " ".join(a for _, w, a in instructions(dockerfile) if w == "RUN")
        assert "-c /opt/pins.txt" in runs, image
        assert "pip check" in runs, image
    gpu_runs = " ".join(a for _, w, a in instructions(DOCKERFILES["gpu"]) if w == "RUN")
    assert '"vllm==${VLLM_VERSION}"' in gpu_runs and '[vllm,gpu]"' in gpu_runs


@pytest.mark.parametrize("image", ["gpu", "cpu"])
def test_base_images_are_pinned_by_digest(image):
    dockerfile = DOCKERFILES[image]
    base = args_of(dockerfile)["PYTHON_IMAGE"]

    assert re.fullmatch(r"python:3\.12-slim-bookworm@sha256:[0-9a-f]{64}", base), base
    froms = [a for _, w, a in instructions(dockerfile) if w == "FROM"]
    assert froms and all(a.split()[0] == "${PYTHON_IMAGE}" for a in froms)


def test_gpu_image_takes_cuda_from_the_torch_wheels_not_a_cuda_base():
    from satk8s.images import GPU_CUDA, GPU_MIN_DRIVER

    labels = dict(re.findall(r'(\S+)="([^"]*)"', dict(final_stage(DOCKERFILES["gpu"]))["LABEL"]))
    # torch 2.13.0's Linux wheels depend on CUDA 13.0 (nvidia-*-cu13 pip packages): a plain
    # Python base, and the driver requirement the doctor checks nodes against on the image.
    assert "nvidia/cuda" not in DOCKERFILES["gpu"].read_text().split("FROM")[1]
    assert labels["io.satk8s.cuda"] == GPU_CUDA == "13.0"
    assert labels["io.satk8s.min-driver"] == str(GPU_MIN_DRIVER) == "580"


def test_torch_and_vllm_each_get_their_own_layer():
    runs = [a for w, a in final_stage(DOCKERFILES["gpu"]) if w == "RUN"]

    torch_layer = runs.index("pip install -c /opt/pins.txt torch")
    vllm_layer = runs.index("pip install -c /opt/pins.txt vllm")
    assert torch_layer < vllm_layer  # vLLM's layer reuses torch's, which changes least
    satk8s_layer = next(i for i, r in enumerate(runs) if "/tmp/wheels/satk8s-" in r)
    assert vllm_layer < satk8s_layer
    # The source tree stays in the build stage: only the built wheel reaches the image.
    final_copies = [a for w, a in final_stage(DOCKERFILES["gpu"]) if w == "COPY"]
    assert final_copies == ["--from=wheel /wheels /tmp/wheels"]


@pytest.mark.parametrize("image", ["gpu", "cpu"])
def test_home_and_working_directory_are_usable_by_any_uid(image):
    final = final_stage(DOCKERFILES[image])
    env = " ".join(a for w, a in final if w == "ENV")
    runs = " ".join(a for w, a in final if w == "RUN")

    assert "HOME=/home/satk8s" in env
    assert "install -d -m 1777 /home/satk8s /workspace" in runs  # like /tmp: any uid writes
    assert [a for w, a in final if w == "WORKDIR"] == ["/workspace"]


def test_cpu_image_takes_the_cpu_torch_wheel():
    dockerfile = DOCKERFILES["cpu"]

    assert args_of(dockerfile)["TORCH_INDEX_URL"].endswith("/whl/cpu")
    runs = " ".join(a for _, w, a in instructions(dockerfile) if w == "RUN")
    assert "torch.version.cuda is None" in runs


# -- Runs as non-root, labelled with the version --------------------------------------------------


@pytest.mark.parametrize("image", ["gpu", "cpu"])
def test_image_runs_as_a_numeric_non_root_user(image):
    users = [args for word, args in final_stage(DOCKERFILES[image]) if word == "USER"]

    assert users, "the final stage must set USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) >= 1000, "numeric, so runAsNonRoot can verify it"
    assert gid.isdigit() and int(gid) >= 1000


@pytest.mark.parametrize("image", ["gpu", "cpu"])
def test_image_labels_carry_the_satk8s_version(image):
    final = final_stage(DOCKERFILES[image])
    labels = dict(re.findall(r'(\S+)="([^"]*)"', " ".join(a for w, a in final if w == "LABEL")))

    assert labels["org.opencontainers.image.version"] == "${SATK8S_VERSION}"
    assert labels["io.satk8s.version"] == "${SATK8S_VERSION}"
    assert labels["org.opencontainers.image.title"] == f"satk8s-{image}"
    assert ("ARG", "SATK8S_VERSION") in final
    # A build without the version fails instead of labelling the image with nothing.
    assert any('test -n "${SATK8S_VERSION}"' in a for w, a in final if w == "RUN")


# -- No credentials in an image ---------------------------------------------------------------

SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|API_?KEY|ACCESS_KEY|CREDENTIAL|AUTH", re.I)
SECRET_VALUE = re.compile(
    r"hf_[A-Za-z0-9]{20,}|AKIA[0-9A-Z]{16}|ghp_[A-Za-z0-9]{30,}|sk-[A-Za-z0-9]{20,}"
)
ALLOWED_SOURCES = {"pyproject.toml", "setup.py", "README.md", "satk8s", "components", "pipelines"}


@pytest.mark.parametrize("image", ["gpu", "cpu"])
def test_no_secret_is_passed_or_copied_into_the_image(image):
    dockerfile = DOCKERFILES[image]
    text = dockerfile.read_text()
    steps = instructions(dockerfile)

    for _, word, args in steps:
        if word in ("ARG", "ENV"):
            names = re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", f" {args}") or [args]
            assert not [n for n in names if SECRET_NAME.search(n)], f"{word} {args}"
        if word == "ADD":
            pytest.fail(f"ADD fetches or unpacks implicitly; use COPY: ADD {args}")
        if word == "COPY" and not args.startswith("--from="):
            *sources, _dest = args.split()
            assert set(sources) <= ALLOWED_SOURCES, f"COPY {args}"
    assert not SECRET_VALUE.search(text)


# Docker's .dockerignore rules, as far as this file uses them: a pattern matches a path or any
# folder above it; `*` stays within one path element, `**` spans any; the last match wins.
def _pattern(pattern: str) -> re.Pattern:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def _dockerignore() -> list[tuple[bool, re.Pattern]]:
    rules = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        rules.append((negate, _pattern(line.lstrip("!").strip("/"))))
    return rules


def sent_to_docker(path: str) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negate, regex in _dockerignore():
        if any(regex.match(p) for p in prefixes):
            excluded = not negate
    return not excluded


@pytest.mark.parametrize(
    "path",
    [
        ".env",
        ".env.local",
        "satk8s/.env",
        ".venv/bin/python",
        ".cache/satk8s/tiny/model.bin",
        ".demo/store/samples.jsonl",
        ".git/config",
        ".aws/credentials",
        ".kube/config",
        "kubeconfig",
        "satk8s/kubeconfig.yaml",
        "secrets/hub-token",
        "satk8s/secrets/key",
        "deploy/tls.pem",
        "satk8s/tls.key",
        ".docker/config.json",
        ".netrc",
        "tests/test_images.py",
        "images/digests.json",
        "helm/satk8s/values.yaml",
        "my-values.yaml",
        "satk8s/__pycache__/images.cpython-311.pyc",
        "satk8s.egg-info/PKG-INFO",
        "satk8s/hf-token.txt",
        "gcp-credentials.json",
    ],
)
def test_dockerignore_keeps_secrets_and_local_state_out_of_the_build(path):
    assert not sent_to_docker(path)


def test_dockerignore_sends_everything_the_dockerfiles_copy():
    sources = {
        source
        for dockerfile in DOCKERFILES.values()
        for _, word, args in instructions(dockerfile)
        if word == "COPY" and not args.startswith("--from=")
        for source in args.split()[:-1]
    }
    package_files = [
        str(p.relative_to(REPO))
        for folder in ("satk8s", "components", "pipelines")
        for p in (REPO / folder).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    ]

    assert sources == ALLOWED_SOURCES
    assert all(sent_to_docker(s) for s in ("pyproject.toml", "setup.py", "README.md"))
    assert "satk8s/tiny/tokenizer.py" in package_files  # "token" in a name is no secret
    assert [p for p in package_files if not sent_to_docker(p)] == []


# -- Digests: buildx metadata -> images/digests.json -> the compiler ------------------------------


def _metadata(tmp_path: Path, digest: str, name: str = "gpu") -> Path:
    """What `docker buildx build --push --metadata-file` writes."""
    path = tmp_path / f"{name}-metadata.json"
    path.write_text(
        json.dumps(
            {
                "buildx.build.ref": "builder/builder0/xyz",
                "containerimage.config.digest": "sha256:" + "c" * 64,
                "containerimage.descriptor": {
                    "mediaType": "application/vnd.oci.image.index.v1+json",
                    "digest": digest,
                    "size": 1609,
                },
                "containerimage.digest": digest,
                "image.name": f"registry.example.com/acme/satk8s-{name}:0.1.0",
            }
        )
    )
    return path


def test_record_digest_writes_image_at_digest_and_keeps_other_entries(tmp_path):
    out = tmp_path / "digests.json"
    repo = "registry.example.com/acme"

    record_digest(_metadata(tmp_path, DIGEST_GPU), "gpu", f"{repo}/satk8s-gpu", out)
    ref = record_digest(_metadata(tmp_path, DIGEST_CPU, "cpu"), "cpu", f"{repo}/satk8s-cpu", out)

    assert ref == f"{repo}/satk8s-cpu@{DIGEST_CPU}"
    assert json.loads(out.read_text()) == {
        "cpu": f"{repo}/satk8s-cpu@{DIGEST_CPU}",
        "gpu": f"{repo}/satk8s-gpu@{DIGEST_GPU}",
    }
    assert load_image_refs(out) == json.loads(out.read_text())


def test_record_digest_refuses_metadata_without_a_pushed_digest(tmp_path):
    metadata = tmp_path / "m.json"
    metadata.write_text(json.dumps({"image.name": "x/satk8s-gpu:0.1.0"}))

    with pytest.raises(ConfigError, match="built with --push"):
        digest_from_metadata(metadata)


def test_record_digest_refuses_a_tagged_repository(tmp_path):
    with pytest.raises(ConfigError, match="no tag or digest"):
        record_digest(
            _metadata(tmp_path, DIGEST_GPU),
            "gpu",
            "r.example.com/satk8s-gpu:0.1.0",
            tmp_path / "d.json",
        )


def test_load_image_refs_rejects_an_entry_not_pinned_by_digest(tmp_path):
    path = tmp_path / "digests.json"
    path.write_text(
        json.dumps(
            {
                "gpu": "r.example.com/satk8s-gpu:0.1.0",
                "cpu": f"r.example.com/satk8s-cpu@{DIGEST_CPU}",
            }
        )
    )

    with pytest.raises(ConfigError, match=r"images\.gpu.*not pinned by digest"):
        load_image_refs(path)


def test_load_image_refs_requires_both_images(tmp_path):
    path = tmp_path / "digests.json"
    path.write_text(json.dumps({"gpu": f"r.example.com/satk8s-gpu@{DIGEST_GPU}"}))

    with pytest.raises(ConfigError, match=r"no entry for \['cpu'\]"):
        load_image_refs(path)


def test_load_image_refs_says_how_to_make_the_file(tmp_path):
    with pytest.raises(ConfigError, match="make images REGISTRY="):
        load_image_refs(tmp_path / "missing.json")


def test_load_image_refs_follows_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "elsewhere.json"
    refs = {
        "gpu": f"r.example.com/satk8s-gpu@{DIGEST_GPU}",
        "cpu": f"r.example.com/satk8s-cpu@{DIGEST_CPU}",
    }
    path.write_text(json.dumps(refs))
    monkeypatch.setenv("SATK8S_IMAGE_DIGESTS", str(path))

    assert load_image_refs() == refs


FAKE_DOCKER = """#!/usr/bin/env bash
# Records its arguments and writes buildx's metadata file, as a real push would.
printf '%s\\n' "$*" >> "$FAKE_DOCKER_LOG"
metadata=""; file=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --metadata-file) metadata="$2"; shift ;;
    --file) file="$2"; shift ;;
  esac
  shift
done
case "$file" in
  *gpu) digest="sha256:$(printf '1%.0s' {1..64})" ;;
  *) digest="sha256:$(printf '2%.0s' {1..64})" ;;
esac
printf '{"containerimage.digest": "%s"}' "$digest" > "$metadata"
"""


@pytest.fixture
def fake_docker(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(docker.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ)
    env.update(
        {
            "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}",
            "FAKE_DOCKER_LOG": str(tmp_path / "docker.log"),
            "DIGESTS_FILE": str(tmp_path / "digests.json"),
            "PYTHON": str(REPO / ".venv" / "bin" / "python")
            if (REPO / ".venv" / "bin" / "python").exists()
            else "python3",
        }
    )
    return env


def test_build_script_pushes_both_images_and_records_their_digests(tmp_path, fake_docker):
    env = {**fake_docker, "REGISTRY": "registry.example.com/acme/"}

    result = subprocess.run(
        [str(IMAGES / "build.sh")], env=env, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    version = pyproject()["project"]["version"]
    calls = (tmp_path / "docker.log").read_text().splitlines()
    assert len(calls) == 2
    for call, name in zip(calls, ["cpu", "gpu"], strict=True):
        assert call.startswith("buildx build ")
        assert f"--file images/Dockerfile.{name}" in call
        assert f"--tag registry.example.com/acme/satk8s-{name}:{version}" in call
        assert f"--build-arg SATK8S_VERSION={version}" in call
        assert "--push" in call and "--metadata-file" in call
        assert "--platform linux/amd64" in call
        assert not SECRET_NAME.search(call.replace("--metadata-file", ""))
    refs = load_image_refs(tmp_path / "digests.json")
    assert refs == {
        "cpu": f"registry.example.com/acme/satk8s-cpu@{DIGEST_CPU}",
        "gpu": f"registry.example.com/acme/satk8s-gpu@{DIGEST_GPU}",
    }


def test_build_script_can_rebuild_one_image(tmp_path, fake_docker):
    env = {**fake_docker, "REGISTRY": "r.example.com", "TAG": "dev", "PLATFORM": "linux/arm64"}

    result = subprocess.run(
        [str(IMAGES / "build.sh"), "cpu"], env=env, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    (call,) = (tmp_path / "docker.log").read_text().splitlines()
    assert "--tag r.example.com/satk8s-cpu:dev" in call and "--platform linux/arm64" in call
    assert json.loads((tmp_path / "digests.json").read_text()) == {
        "cpu": f"r.example.com/satk8s-cpu@{DIGEST_CPU}"
    }


def test_build_script_needs_a_registry(fake_docker):
    env = {k: v for k, v in fake_docker.items() if k != "REGISTRY"}

    result = subprocess.run(
        [str(IMAGES / "build.sh")], env=env, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 2
    assert "make images REGISTRY=" in result.stderr
