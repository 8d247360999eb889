"""One satk8s step in its container image, with the GPU, against the same store.

`component_argv` builds the exact `docker run` command line; the `satk8s component` command
prints it and runs it. The container sees the store at the same locations the caller uses:
an `s3://` store through the forwarded S3 settings, a local store bind-mounted at its own
absolute path (so `file://` URIs and paths in manifests stay valid on both sides).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from satk8s.errors import ConfigError
from satk8s.images import load_image_refs
from satk8s.store.settings import _ENV as _S3_ENV
from satk8s.store.uri import scheme_of

CPU_STEPS = frozenset(
    {"tiny", "stage_model", "prepare", "saturate", "calibrate", "build_dataset", "report"}
)
"""Steps that run in the CPU image with no GPU (the tiny model is built on CPU by design);
every other step, and any step added later, runs in the GPU image."""

CONTAINER_HOME = "/tmp"
"""HOME inside the container: the image's /home/satk8s belongs to uid 10001, and the step runs
as the caller's uid (see `component_argv`), so caches (triton, vLLM, torch) go to /tmp."""
CONTAINER_CACHE = "/tmp/satk8s-cache"
"""SATK8S_CACHE inside the container (staging for s3:// outputs, verified input copies)."""
CONTAINER_HF_HOME = "/tmp/huggingface"
"""HF_HOME inside the container when the caller has no Hugging Face cache to mount."""

_FIXED_NAMES = ("AWS_PROFILE", "HF_TOKEN", "OPENAI_API_KEY")
CONTAINER_AWS_DIR = f"{CONTAINER_HOME}/.aws"
"""Where the caller's ~/.aws is mounted (read-only): boto3 reads its config and credentials
files, for AWS_PROFILE among others, from ~/.aws with HOME=/tmp."""
_NOT_FORWARDED = frozenset(
    {
        "SATK8S_IMAGE",  # set by each image itself (gpu / cpu)
        "SATK8S_IMAGE_DIGESTS",  # a host path, meaningless in the container
        "SATK8S_CACHE",  # host paths: replaced by CONTAINER_CACHE
        "SATK8S_STORE_CACHE",
    }
)


def step_names() -> list[str]:
    from satk8s.steps import STEPS  # lazy registry: no step module is imported

    return list(STEPS)


def check_step(step: str) -> None:
    names = step_names()
    if step not in names:
        raise ConfigError("step", f"unknown step '{step}'; known: {', '.join(names)}")


def uses_gpu(step: str) -> bool:
    return step not in CPU_STEPS


def default_image(step: str, digests: str | Path | None = None) -> str:
    """The step's image pinned by digest: the GPU image, or the CPU one for CPU-only steps."""
    check_step(step)
    refs = load_image_refs(digests)
    return refs["gpu" if uses_gpu(step) else "cpu"]


def forwarded_env_names(env: Mapping[str, str] | None = None) -> list[str]:
    """Names of the caller's environment variables the step needs, in a stable order: the S3
    settings (satk8s.store.settings), AWS_PROFILE, HF_TOKEN, OPENAI_API_KEY, then every other
    SATK8S_*. Only names that are set are returned."""
    env = os.environ if env is None else env
    candidates = [name for names in _S3_ENV.values() for name in names]
    candidates += list(_FIXED_NAMES)
    candidates += sorted(n for n in env if n.startswith("SATK8S_"))
    seen: set[str] = set()
    out = []
    for name in candidates:
        if name in env and name not in seen and name not in _NOT_FORWARDED:
            seen.add(name)
            out.append(name)
    return out


def _aws_dir(env: Mapping[str, str]) -> Path | None:
    """The caller's ~/.aws, when it exists (boto3's shared config and credentials files)."""
    home = env.get("HOME")
    path = Path(home).expanduser() / ".aws" if home else None
    return path if path is not None and path.is_dir() else None


def _hf_home(env: Mapping[str, str]) -> Path:
    return Path(env.get("HF_HOME") or Path.home() / ".cache" / "huggingface").expanduser().resolve()


def _option_values(args: Sequence[str], names: tuple[str, ...]) -> list[str]:
    """Values of `--out X`, `--out=X`, `-i X` style options in a step's argument list."""
    values = []
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                values.append(args[i + 1])
            elif arg.startswith(name + "=") and name.startswith("--"):
                values.append(arg[len(name) + 1 :])
    return values


def step_locations(args: Sequence[str]) -> list[str]:
    """The store locations a step's arguments name: `--out` and each `--input NAME=URI`."""
    inputs = _option_values(args, ("--input", "-i"))
    return _option_values(args, ("--out",)) + [v.split("=", 1)[1] for v in inputs if "=" in v]


def component_argv(
    step: str,
    args: Sequence[str],
    image: str | None,
    store_root: str,
    gpus: str | None = "all",
    env_names: Iterable[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    mounts: Sequence[str] = (),
    network: str | None = None,
    user: str | None = None,
    cwd: Path | None = None,
) -> list[str]:
    """`docker run … IMAGE satk8s step STEP ARGS…`: one step in its image on the same store.

    - `image`: None takes the step's image pinned by digest (`satk8s.images`).
    - `store_root`: `s3://…` needs no mount; a local path or `file://` URI is bind-mounted at
      its own absolute path, and the working directory is the caller's, so relative locations
      in `args` resolve the same inside. Every local `--out` / `--input` must lie under it.
    - `gpus`: `--gpus` value for GPU steps (`all`, `device=0`); None or "" for none. CPU steps
      never get a GPU.
    - `env_names`: names to forward (default `forwarded_env_names`); only names set in `env`
      are passed, as `-e NAME`, so docker copies the value from its own environment and no
      credential ever appears in the command line (or in `ps`). The caller's ~/.aws, when there
      is one, is mounted read-only where HOME puts it in the container (AWS_PROFILE needs it).
    - `mounts`: extra local paths (a model directory) bind-mounted read-only at their path.
    - `network`: `--network` value, e.g. `host` to reach a MinIO/KFP port on 127.0.0.1.
    - `user`: `uid:gid` to run as; default the caller's.
    """
    check_step(step)
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    image = image or default_image(step)
    argv = ["docker", "run", "--rm"]
    if uses_gpu(step):
        if gpus:
            argv += ["--gpus", gpus]
        # vLLM and torch share tensors between processes through /dev/shm, which docker caps
        # at 64 MiB; the host's IPC namespace lifts the cap (what NVIDIA's containers advise).
        argv.append("--ipc=host")
    # Run as the caller, not the image's uid 10001: what the step writes into a bind-mounted
    # store or HF cache then belongs to the caller (removable without sudo), and the step can
    # write into the caller's directories at all. HOME moves to /tmp to stay writable.
    if user is None and hasattr(os, "getuid"):
        user = f"{os.getuid()}:{os.getgid()}"
    if user:
        # The image has no passwd entry for that uid; getpass.getuser() (torch inductor's and
        # triton's cache dirs, under vLLM) falls back to $USER instead of failing.
        argv += ["--user", user, "-e", "USER=satk8s"]
    argv += ["-e", f"HOME={CONTAINER_HOME}", "-e", f"SATK8S_CACHE={CONTAINER_CACHE}"]
    hf_home = _hf_home(env)
    if hf_home.is_dir():
        # Models the caller already downloaded are reused, and new downloads are kept.
        argv += ["-v", f"{hf_home}:{hf_home}", "-e", f"HF_HOME={hf_home}"]
    else:
        argv += ["-e", f"HF_HOME={CONTAINER_HF_HOME}"]
    root = _resolve(store_root, cwd) if scheme_of(store_root) == "file" else None
    outside = [
        loc
        for loc in step_locations(args)
        if scheme_of(loc) == "file" and (root is None or not _under(_resolve(loc, cwd), root))
    ]
    if outside:
        # Written there, an output would vanish with the container; read there, it is absent.
        locations = ", ".join(outside)
        if root is not None:
            problem = f"outside the store root {root}, the only local directory mounted"
        else:
            problem = f"local, but the store {store_root} is remote and nothing local is mounted"
        raise ConfigError(
            "store",
            f"{locations} is {problem} into the container; pass --store with a local "
            "directory that holds every local location, or use store locations",
        )
    if root is not None:
        argv += ["-v", f"{root}:{root}", "-w", str(cwd)]
    if (aws := _aws_dir(env)) is not None:
        # The caller's profiles (AWS_PROFILE, SSO, assume-role) work in the container too.
        argv += ["-v", f"{aws}:{CONTAINER_AWS_DIR}:ro"]
    for extra in mounts:
        path = _resolve(extra, cwd)
        if not path.exists():
            raise ConfigError("mount", f"{extra}: no such file or directory to mount")
        argv += ["-v", f"{path}:{path}:ro"]
    if network:
        argv += ["--network", network]
    names = forwarded_env_names(env) if env_names is None else list(env_names)
    for name in dict.fromkeys(names):
        if "=" in name:
            raise ConfigError(
                "env", f"'{name.split('=', 1)[0]}=…': pass environment variables by name only"
            )
        if name in env:
            argv += ["-e", name]
    return [*argv, image, "satk8s", "step", step, *args]


def _resolve(location: str, cwd: Path) -> Path:
    path = Path(location.removeprefix("file://")).expanduser()
    return (path if path.is_absolute() else cwd / path).resolve()


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def shell_line(argv: Sequence[str]) -> str:
    """The command line as a shell would take it (for printing and copy-paste)."""
    return shlex.join(argv)
