"""The step images, pinned by digest: `images/digests.json` maps an image name to `repo@sha256:…`.

`make images REGISTRY=…` (images/build.sh) builds and pushes each image with docker buildx and
records the digest it pushed here; the pipeline compiler reads it with `load_image_refs`, so
every component runs exactly the bytes that were pushed, never whatever a tag points at now.

    python -m satk8s.images record --metadata build.json --name gpu --out images/digests.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

from satk8s.errors import ConfigError

IMAGE_NAMES = ("gpu", "cpu")
"""The images every pipeline needs: GPU steps and CPU steps."""

GPU_MIN_DRIVER = 580
"""The oldest NVIDIA driver branch the GPU image runs on: torch 2.13 and vLLM 0.31 wheels are
built for CUDA 13.0, which needs driver >= 580 (NVIDIA CUDA Toolkit 13.0 release notes, section
2.2 "CUDA Driver": https://docs.nvidia.com/cuda/archive/13.0.0/cuda-toolkit-release-notes/index.html).
The image carries it as io.satk8s.min-driver."""
GPU_CUDA = "13.0"

DIGESTS_ENV = "SATK8S_IMAGE_DIGESTS"
"""Environment variable naming a digests file, ahead of the repository's images/digests.json."""

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_PINNED_REF = re.compile(r"^(?P<repo>[^@\s]+)@(?P<digest>sha256:[0-9a-f]{64})$")
_REPO_ROOT = Path(__file__).resolve().parents[1]


def default_digests_path() -> Path:
    """Where the digests file is: $SATK8S_IMAGE_DIGESTS, else images/digests.json in the
    repository this package runs from, else images/digests.json under the working directory."""
    if os.environ.get(DIGESTS_ENV):
        return Path(os.environ[DIGESTS_ENV]).expanduser()
    for root in (_REPO_ROOT, Path.cwd()):
        candidate = root / "images" / "digests.json"
        if candidate.is_file():
            return candidate
    return _REPO_ROOT / "images" / "digests.json"


def load_image_refs(path: str | Path | None = None) -> dict[str, str]:
    """Image name -> `registry/repo@sha256:…` for every step image.

    Raises ConfigError when the file is missing or malformed, when an image is missing, or when
    an entry is not pinned by digest (a tag can move; a digest cannot).
    """
    file = Path(path) if path is not None else default_digests_path()
    if not file.is_file():
        raise ConfigError(
            "images",
            f"no image digests file at {file}; build and push the step images with "
            f"`make images REGISTRY=<registry>`, or point {DIGESTS_ENV} at a digests file",
        )
    try:
        refs = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError("images", f"{file} is not valid JSON: {err}") from err
    if not isinstance(refs, dict):
        raise ConfigError("images", f"{file} must hold a JSON object of name -> image@digest")
    missing = [name for name in IMAGE_NAMES if name not in refs]
    if missing:
        raise ConfigError(
            "images", f"{file} has no entry for {missing}; rebuild with `make images REGISTRY=…`"
        )
    for name, ref in refs.items():
        if not isinstance(ref, str) or not _PINNED_REF.match(ref):
            raise ConfigError(
                f"images.{name}",
                f"'{ref}' in {file} is not pinned by digest; expected "
                "'registry/repo@sha256:<64 hex>' as written by `make images`",
            )
    return dict(refs)


def digest_from_metadata(metadata_file: str | Path) -> str:
    """The pushed image's digest from a `docker buildx build --metadata-file` file."""
    file = Path(metadata_file)
    try:
        metadata = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError("images", f"cannot read buildx metadata {file}: {err}") from err
    digest = metadata.get("containerimage.digest") if isinstance(metadata, dict) else None
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise ConfigError(
            "images",
            f"{file} has no valid 'containerimage.digest' (got {digest!r}); was the image "
            "built with --push?",
        )
    return digest


def record_digest(
    metadata_file: str | Path, name: str, repository: str, out: str | Path | None = None
) -> str:
    """Write `repository@digest` for image `name` into the digests file; returns the ref.

    Other entries are kept, so images can be rebuilt one at a time.
    """
    if "@" in repository or ":" in repository.rsplit("/", 1)[-1]:
        raise ConfigError("images", f"repository '{repository}' must have no tag or digest")
    ref = f"{repository}@{digest_from_metadata(metadata_file)}"
    file = Path(out) if out is not None else default_digests_path()
    refs: dict[str, str] = {}
    if file.is_file():
        refs = json.loads(file.read_text())
    refs[name] = ref
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(dict(sorted(refs.items())), indent=2) + "\n")
    tmp.replace(file)  # never a half-written file for the compiler to read
    return ref


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m satk8s.images", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    record = sub.add_parser("record", help="record a pushed image's digest")
    record.add_argument("--metadata", required=True, help="buildx --metadata-file output")
    record.add_argument("--name", required=True, help="image name, e.g. gpu or cpu")
    record.add_argument("--repository", required=True, help="registry/repo, no tag")
    record.add_argument("--out", default=None, help="digests file (default images/digests.json)")
    sub.add_parser("show", help="print the pinned image refs")
    args = parser.parse_args(argv)
    try:
        if args.command == "record":
            print(record_digest(args.metadata, args.name, args.repository, args.out))
        else:
            print(json.dumps(load_image_refs(), indent=2))
    except ConfigError as err:
        parser.exit(2, f"error: {err}\n")


if __name__ == "__main__":
    _main()
