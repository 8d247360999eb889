"""What a step's models are, by content, for its key and its manifest.

A config names its models in fields called `model` (`model`, `external_judge.model`, ...; a
judge of kind `openai` or `oracle` loads no model: its `model` is a served name or unused).
Each is identified by what it holds, not where it is:

- a local directory: the content digest (paths and sha256) of its files, hashed once while
  they are unchanged (`satk8s.store.digests`);
- an `s3://` prefix: the content digest in its manifest, else of its objects' sha256;
- a hub id: `hub:<id>@<commit sha>`, from the staged mirror in `$SATK8S_MODEL_STORE` when
  there is one (the commit recorded by `stage-model`), else the commit `main` points at now.

So a model replaced at the same path, or a hub `main` that moved, gives new keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

UNUSED_MODEL_KINDS = ("openai", "oracle")
UPSTREAM_PLACEHOLDER = "<tiny>"


def model_fields(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{dotted field: reference} of every model `config` (plain JSON data) loads."""
    found: dict[str, str] = {}
    if config.get("kind") in UNUSED_MODEL_KINDS:
        return found
    for key, value in config.items():
        if isinstance(value, Mapping):
            found |= model_fields(value, f"{prefix}{key}.")
        elif key == "model" and isinstance(value, str) and value not in ("", UPSTREAM_PLACEHOLDER):
            found[f"{prefix}{key}"] = value
    return found


def describe_models(config: Mapping[str, Any]) -> dict[str, dict[str, str | None]]:
    """{field: {"reference", "identity", "location"}} of the config's models. `location` is
    where the weights are read from (absolute), so gc can keep them; None for the hub."""
    return {field: describe_model(ref) for field, ref in sorted(model_fields(config).items())}


def model_digests(config: Mapping[str, Any]) -> dict[str, str]:
    """{field: identity} of the config's models (the part of a step key they make)."""
    return {field: d["identity"] for field, d in describe_models(config).items()}  # type: ignore[misc]


def describe_model(model: str) -> dict[str, str | None]:
    from satk8s.store.stage_model import (
        hub_commit,
        is_local_reference,
        local_model_dir,
        staged_mirror,
    )

    if model.startswith("s3://"):
        return {"reference": model, "identity": _store_digest(model), "location": model}
    if is_local_reference(model):
        path = local_model_dir(model)
        return {"reference": model, "identity": _local_digest(path), "location": path.as_uri()}
    if mirror := staged_mirror(model):
        location, manifest = mirror
        commit = manifest.get("summary", {}).get("commit") or f"content:{manifest['digest']}"
        return {"reference": model, "identity": f"hub:{model}@{commit}", "location": location}
    return {"reference": model, "identity": f"hub:{model}@{hub_commit(model)}", "location": None}


def _local_digest(path: Path) -> str:
    from satk8s.store.digests import file_sha256s
    from satk8s.store.layout import MANIFEST, is_hidden
    from satk8s.store.manifest import content_digest

    rels = [
        p.relative_to(path).as_posix()
        for p in sorted(path.rglob("*"))
        if p.is_file() and not is_hidden(p.relative_to(path).as_posix())
    ]
    hashed = file_sha256s(path, [r for r in rels if r != MANIFEST])
    return content_digest([{"path": rel, "sha256": sha} for rel, (_, sha) in hashed.items()])


def _store_digest(uri: str) -> str:
    from satk8s.errors import DataError
    from satk8s.store.base import get_store
    from satk8s.store.fetch import read_manifest_at
    from satk8s.store.keys import input_digest

    manifest = read_manifest_at(uri)
    if manifest is not None:
        return str(manifest["digest"])
    if not get_store(uri).list(uri):
        raise DataError(uri, "model location holds nothing")
    return input_digest(uri)
