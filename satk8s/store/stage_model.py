"""Model references and the `stage-model` step.

A model reference is one of:
- a local checkpoint directory: an absolute path, one starting with `.` or `~`, a `file://`
  URI, or any relative path that exists here (`runs/tiny` is local when it exists); a
  reference that is not shaped like a hub id (`a/b/c`, `runs/tiny/`) is a local path too;
- an `s3://` prefix holding a Hugging Face checkpoint;
- a hub id (`Qwen/Qwen3-1.7B-Base`, `gpt2`) that names no local path.

A local reference is checked before any store write: the directory must exist and hold a
`config.json`. `stage-model` mirrors a hub model into the store once (at
`<root>/models/<org>/<name>/<revision>`, finished by a manifest like any step output), so GPU
pods load it from the store and never reach for the hub. The revision (a branch or tag) is
resolved to the commit it points at first; the files are downloaded at that commit and the
commit is recorded in the output's manifest (`summary.commit`). A grid stages its hub model in
one CPU task, the `stage_model` step (`satk8s.steps.stage_model`).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from satk8s.errors import ConfigError, DataError, Satk8sError
from satk8s.store.uri import join, scheme_of

MODEL_STORE_ENV = "SATK8S_MODEL_STORE"
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")


@dataclass(frozen=True)
class StageModelConfig:
    model: str = ""
    """A hub id, or a local checkpoint directory (e.g. a model built here) to upload."""
    revision: str = "main"
    """Hub branch, tag or commit (ignored for a local directory); resolved to a commit sha
    when the model is staged."""
    ignore_patterns: tuple[str, ...] = ()
    """Hub files not to mirror, glob patterns (e.g. `original/*` for duplicate weights)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "ignore_patterns", tuple(self.ignore_patterns))
        if not self.model:
            raise ConfigError("model", "no model given; pass a hub id or a checkpoint directory")


def is_local_reference(model: str) -> bool:
    """Whether `model` names a local directory (see the module doc), existing or not."""
    if model.startswith(("/", ".", "~", "file://")):
        return True
    if "://" in model:
        return False
    return Path(model).exists() or not _HUB_ID.fullmatch(model)


def local_model_dir(model: str) -> Path:
    """The absolute path of a local model reference, checked to be a checkpoint directory."""
    path = Path(model.removeprefix("file://")).expanduser()
    if not path.is_dir():
        raise DataError(model, "model directory does not exist")
    if not (path / "config.json").is_file():
        raise DataError(
            model,
            "no config.json in the model directory: not a Hugging Face checkpoint (an empty "
            "or unfinished model?)",
        )
    return path.resolve()


def check_model_reference(model: str) -> None:
    """Fail early, naming the path, on a local model reference that is not a checkpoint
    directory (a hub id is resolved when the step's key is made, an `s3://` one when read)."""
    if is_local_reference(model):
        local_model_dir(model)


def model_uri(store_root: str, model: str, revision: str = "main") -> str:
    """Where `stage-model` puts a hub model in the store."""
    if is_local_reference(model) or scheme_of(model) != "file" or model.count("/") > 1:
        raise ConfigError("model", f"'{model}' is not a hub id like 'org/name'")
    return join(store_root, "models", *model.split("/"), revision)


def staged_mirror(model: str) -> tuple[str, dict[str, Any]] | None:
    """(location, manifest) of the finished mirror of hub id `model` in `$SATK8S_MODEL_STORE`,
    or None."""
    from satk8s.store.fetch import finished_manifest

    root = os.environ.get(MODEL_STORE_ENV)
    if not root or is_local_reference(model) or "://" in model:
        return None
    mirror = model_uri(root, model)
    manifest = finished_manifest(mirror)
    return None if manifest is None else (mirror, manifest)


def resolve_model(model: str) -> str:
    """A reference loadable by transformers or vLLM: a local directory or a hub id.

    An `s3://` prefix is downloaded (verified) into the cache. A hub id is served from its
    staged mirror when `$SATK8S_MODEL_STORE` names a store root that holds one.
    """
    from satk8s.store.fetch import fetch

    if model.startswith("s3://"):
        return str(fetch(model, "model", "any"))
    if is_local_reference(model):
        return str(local_model_dir(model))
    if mirror := staged_mirror(model):
        return str(fetch(mirror[0], "model", "step"))
    return model


def hub_commit(model: str, revision: str = "main") -> str:
    """The commit sha that `revision` (a branch, tag or sha) of hub model `model` points at."""
    from huggingface_hub import HfApi

    try:
        return str(HfApi().model_info(model, revision=revision).sha)
    except Exception as err:  # offline, unknown repo, auth: all end in the same advice
        raise ConfigError(
            "model",
            f"'{model}' is taken for a hub id (no such local path), but its commit could not "
            f"be resolved ({type(err).__name__}: {err}). Give a local checkpoint directory, or "
            f"mirror it once with `satk8s store stage-model {model} --store ROOT` and set "
            f"{MODEL_STORE_ENV}=ROOT",
        ) from None


def stage_model(out: str, config: StageModelConfig, force: bool = False) -> dict[str, Any]:
    """Mirror a hub model (or upload a local checkpoint) to `out`; files and bytes staged."""
    from satk8s.steps.outputs import step_output

    local = is_local_reference(config.model)
    # Checked before anything is written: a bad reference leaves nothing behind.
    source = local_model_dir(config.model) if local else None
    commit_sha = None if local else hub_commit(config.model, config.revision)
    with step_output(out, "stage_model", config, {}, force) as output:
        if output.cached is not None:
            return output.cached
        started = time.time()
        root = output.open()
        if source is not None:
            shutil.copytree(source, root, dirs_exist_ok=True)
        else:
            _download(config, commit_sha, root)  # type: ignore[arg-type]
        files = [p for p in root.rglob("*") if p.is_file() and ".cache" not in p.parts]
        summary = {
            "model": config.model,
            "revision": config.revision,
            "commit": commit_sha,
            "uri": out,
            "files": len(files),
            "bytes": sum(p.stat().st_size for p in files),
        }
        return output.commit(root, summary, started)


def _download(config: StageModelConfig, commit_sha: str, root: Path) -> None:
    from huggingface_hub import snapshot_download

    try:
        # Straight into the staging dir, pinned to the commit resolved above; the hub's own
        # bookkeeping (.cache/) is hidden.
        snapshot_download(
            config.model,
            revision=commit_sha,
            local_dir=root,
            ignore_patterns=list(config.ignore_patterns) or None,
        )
    except Exception as err:
        raise Satk8sError(
            f"downloading {config.model} at {commit_sha[:12]} from the hub failed: "
            f"{type(err).__name__}: {err}"
        ) from None


def is_hub_id(model: str) -> bool:
    """Whether `model` names a hub repository (`org/name`), not a path or a store location."""
    return bool(model) and "://" not in model and not is_local_reference(model)
