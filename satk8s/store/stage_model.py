"""Model references and the `stage-model` step.

A model reference is a hub id (`Qwen/Qwen3-1.7B-Base`), a local directory, or an `s3://`
prefix holding a Hugging Face checkpoint. `stage-model` mirrors a hub model into the store
once (at `<root>/models/<org>/<name>/<revision>`, finished by a manifest like any step
output), so GPU pods load it from the store and never reach for the hub. The revision (a branch
or tag) is resolved to the commit it points at first; the files are downloaded at that commit
and the commit is recorded in the output's manifest (`summary.commit`).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from satk8s.errors import ConfigError, DataError
from satk8s.store.uri import join, scheme_of

MODEL_STORE_ENV = "SATK8S_MODEL_STORE"


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
    return model.startswith(("/", ".", "~", "file://")) or Path(model).exists()


def model_uri(store_root: str, model: str, revision: str = "main") -> str:
    """Where `stage-model` puts a hub model in the store."""
    if is_local_reference(model) or scheme_of(model) != "file" or model.count("/") > 1:
        raise ConfigError("model", f"'{model}' is not a hub id like 'org/name'")
    return join(store_root, "models", *model.split("/"), revision)


def resolve_model(model: str) -> str:
    """A reference loadable by transformers or vLLM: a local directory or a hub id.

    An `s3://` prefix is downloaded (verified) into the cache. A hub id is served from its
    staged mirror when `$SATK8S_MODEL_STORE` names a store root that holds one.
    """
    from satk8s.store.fetch import fetch, finished_manifest

    if model.startswith("s3://"):
        return str(fetch(model, "model", "any"))
    if is_local_reference(model):
        path = model.removeprefix("file://")
        if not Path(path).expanduser().is_dir():
            raise DataError(model, "model directory does not exist")
        return path
    if root := os.environ.get(MODEL_STORE_ENV):
        mirror = model_uri(root, model)
        if finished_manifest(mirror) is not None:
            return str(fetch(mirror, "model", "step"))
    return model


def hub_commit(model: str, revision: str = "main") -> str:
    """The commit sha that `revision` (a branch, tag or sha) of hub model `model` points at."""
    from huggingface_hub import HfApi

    try:
        return str(HfApi().model_info(model, revision=revision).sha)
    except Exception as err:  # offline, unknown repository, no access: one advice for all
        raise DataError(
            model,
            f"cannot resolve revision '{revision}' on the hub ({type(err).__name__}: {err}); "
            "check the model id and revision, and that this pod reaches huggingface.co (with "
            "HF_TOKEN for a gated model)",
        ) from None


def stage_model(out: str, config: StageModelConfig, force: bool = False) -> dict[str, Any]:
    """Mirror a hub model (or upload a local checkpoint) to `out`; files, bytes and, for a hub
    model, the commit staged."""
    from satk8s.steps.outputs import commit, finished_summary, open_output

    if not force and (cached := finished_summary(out)):
        return cached
    started = time.time()
    commit_sha = None
    if is_local_reference(config.model):
        source = Path(config.model.removeprefix("file://")).expanduser()
        if not source.is_dir():
            raise DataError(config.model, "model directory does not exist")
        root = open_output(out, force)
        shutil.copytree(source, root, dirs_exist_ok=True)
    else:
        from huggingface_hub import snapshot_download

        # Resolved before anything is written: the files and the manifest name one commit.
        commit_sha = hub_commit(config.model, config.revision)
        root = open_output(out, force)
        # Straight into the staging dir; the hub's own bookkeeping (.cache/) is hidden.
        snapshot_download(
            config.model,
            revision=commit_sha,
            local_dir=root,
            ignore_patterns=list(config.ignore_patterns) or None,
        )
    files = [p for p in root.rglob("*") if p.is_file() and ".cache" not in p.parts]
    summary = {
        "model": config.model,
        "revision": config.revision,
        "commit": commit_sha,
        "uri": out,
        "files": len(files),
        "bytes": sum(p.stat().st_size for p in files),
    }
    return commit(root, "stage_model", config, {}, summary, started)


def is_hub_id(model: str) -> bool:
    """Whether `model` names a hub repository (`org/name`), not a path or a store location."""
    return bool(model) and "://" not in model and not is_local_reference(model)
