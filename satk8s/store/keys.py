"""Content-addressed keys of step outputs.

A step's output location is `<root>/steps/<step>/<key>` where the key hashes everything that
decides the output: the step name, its resolved config, the digests of its inputs, the
identity of the models it loads (`satk8s.store.model_identity`: a local model's content digest,
a hub model's commit) and the code version. The same work always lands at the same location, so a finished output there is a
cache hit whoever computes it: another grid cell, a re-submission, a laptop or the cluster.

Input digests chain: an upstream step output's digest is its key (known before it runs, so a
whole DAG's locations can be computed up front); an external input (a data file, a model
directory) is digested by content (`input_digest`).

The code version is `<installed version>+src.<hash>`, the hash covering every `*.py` file of
`satk8s`, `satk8s.components` and `satk8s.pipelines` (the `components/` and `pipelines/`
folders) and the installed versions of the distribution's pinned dependencies (torch,
transformers, trl, ...): any source change or dependency upgrade gives new keys
(conservative: a stale result is worse than a recompute). `SATK8S_CODE_VERSION` overrides it,
e.g. to pin the version a step image was built from.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from satk8s.store.uri import join

KEY_LENGTH = 32  # hex characters: 128 bits
log = logging.getLogger(__name__)


def canonical_json(value: Any) -> str:
    """Stable text for hashing: dataclasses as dicts, sorted keys, tuples as lists."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return plain(dataclasses.asdict(v))
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        if isinstance(v, Path):
            return str(v)
        return v

    return json.dumps(plain(value), sort_keys=True, separators=(",", ":"), default=str)


def step_key(
    step: str,
    config: Any,
    input_digests: dict[str, str | None],
    code_version: str | None = None,
    model_digests: dict[str, str] | None = None,
) -> str:
    """The content address of a step's output (hex, `KEY_LENGTH` characters)."""
    payload = {
        "step": step,
        "config": config,
        "inputs": dict(sorted(input_digests.items())),
        "code": code_version if code_version is not None else current_code_version(),
    }
    if model_digests:
        payload["models"] = dict(sorted(model_digests.items()))
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:KEY_LENGTH]


def output_uri(root: str, step: str, key: str) -> str:
    """Where the output of `step` with `key` lives under the store root."""
    return join(root, "steps", step, key)


CODE_PACKAGES = ("satk8s", "satk8s.components", "satk8s.pipelines")


@functools.lru_cache(maxsize=1)
def current_code_version() -> str:
    if override := os.environ.get("SATK8S_CODE_VERSION"):
        return override
    folders = {package: _package_dir(package) for package in CODE_PACKAGES}
    return code_version(_installed_version("satk8s"), folders, dependency_versions())


def code_version(installed: str, folders: dict[str, Path], dependencies: dict[str, str]) -> str:
    """`<installed>+src.<hash>` of the packages' sources and the dependency versions."""
    digest = hashlib.sha256()
    for package, folder in sorted(folders.items()):
        digest.update(f"{package}={source_hash(folder)}\n".encode())
    for name, version in sorted(dependencies.items()):
        digest.update(f"{name}=={version}\n".encode())
    return f"{installed}+src.{digest.hexdigest()[:12]}"


def _package_dir(package: str) -> Path:
    """A package's folder, found without running its __init__ (components import kfp)."""
    from importlib.util import find_spec

    spec = find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {package} is not installed")
    return Path(list(spec.submodule_search_locations)[0])


def _installed_version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "absent"


def dependency_versions() -> dict[str, str]:
    """{distribution: installed version} of every dependency satk8s declares (extras left
    out): what the pinned stack actually is in this environment."""
    import re
    from importlib.metadata import PackageNotFoundError, requires

    try:
        declared = requires("satk8s") or []
    except PackageNotFoundError:
        return {}
    names = {
        match.group(0).lower()
        for requirement in declared
        if "extra ==" not in requirement and (match := re.match(r"[A-Za-z0-9_.-]+", requirement))
    }
    return {name: _installed_version(name) for name in names}


def source_hash(package_dir: Path) -> str:
    """A hash of every .py file below `package_dir` (paths and bytes), 12 hex characters."""
    digest = hashlib.sha256()
    for path in sorted(package_dir.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(package_dir).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def input_digest(uri: str) -> str:
    """The digest of an input: a step output's key (else its content digest) from its
    manifest; any other file or prefix by the (path, sha256) of its objects."""
    from satk8s.store.base import get_store
    from satk8s.store.layout import is_hidden, manifest_uri
    from satk8s.store.manifest import content_digest, parse_manifest

    store = get_store(uri)
    manifest = parse_manifest(store.read_bytes(manifest_uri(uri)), manifest_uri(uri))
    if manifest is not None:
        return manifest.get("key") or manifest.get("digest") or content_digest(manifest["files"])
    if store.exists(uri):
        return hashlib.sha256((store.sha256(uri) or "").encode()).hexdigest()
    prefix = uri.rstrip("/") + "/"
    files = [
        {"path": o.uri[len(prefix) :], "sha256": store.sha256(o.uri) or f"size:{o.size}"}
        for o in store.list(uri)
        if not is_hidden(o.uri[len(prefix) :])
    ]
    return content_digest(files)


def input_digests(inputs: dict[str, str | None]) -> dict[str, str | None]:
    """`input_digest` of each named input. An absent optional input (empty) digests to None; a
    comma-separated list of locations (how a pipeline passes several) to one combined digest."""
    from satk8s.errors import Satk8sError

    digests: dict[str, str | None] = {}
    for name, value in inputs.items():
        locations = [v.strip() for v in str(value or "").split(",") if v.strip()]
        try:
            parts = [input_digest(location) for location in locations]
        except Satk8sError as err:  # recorded, not fatal: the step's work is done by now
            log.warning("input '%s' could not be digested: %s", name, err)
            parts = []
        if not parts:
            digests[name] = None
        elif len(parts) == 1:
            digests[name] = parts[0]
        else:
            digests[name] = hashlib.sha256("\n".join(parts).encode()).hexdigest()
    return digests
