"""A step output's identity: what it was computed from, compared before it is reused.

The identity is the step name, the resolved config (secrets masked, as the manifest has it),
the digests of the inputs and the identities of the models (`model_identity`). The code version
is not part of it: an explicit location keeps serving its result across code changes, while
grid outputs, whose location is a hash of the identity and the code version, never meet one.

An output location holding a manifest (or, while it is written, a `.output` marker) of another
identity is refused by `satk8s.steps.outputs` with the differences this module lists.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from satk8s.store.keys import canonical_json, input_digests
from satk8s.store.redact import redact_obj


def plain_config(config: Any) -> dict[str, Any]:
    """A config (dataclass or mapping) as plain JSON data: tuples as lists, sorted keys."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    return json.loads(canonical_json(dict(config)))


def step_identity(step: str, config: Any, inputs: Mapping[str, str]) -> dict[str, Any]:
    """The identity of `step` run with `config` on `inputs` (locations by name). Resolving the
    models checks them: a bad model reference fails here, before anything is written."""
    from satk8s.store.model_identity import describe_models

    plain = plain_config(config)
    return {
        "step": step,
        "config": redact_obj(plain),
        "input_digests": input_digests(dict(inputs)),
        "models": describe_models(plain),
    }


def differences(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """What differs between a stored identity (a manifest or a marker) and the current one,
    one line each (`field: stored -> current`). Parts the stored one lacks (written before
    they were recorded) and inputs that cannot be digested now are not compared."""
    lines = []
    if stored.get("step") not in (None, current["step"]):
        lines.append(f"step: {stored['step']} -> {current['step']}")
    if "config" in stored:
        old, new = _flat(stored["config"]), _flat(current["config"])
        for key in sorted(old.keys() | new.keys()):
            if old.get(key, "(unset)") != new.get(key, "(unset)"):
                lines.append(
                    f"{key}: {_show(old.get(key, '(unset)'))} -> {_show(new.get(key, '(unset)'))}"
                )
    old_inputs = stored.get("input_digests") or {}
    for name, digest in sorted(current["input_digests"].items()):
        if digest is not None and name in old_inputs and old_inputs[name] != digest:
            lines.append(f"input '{name}': content {_short(old_inputs[name])} -> {_short(digest)}")
    old_models = stored.get("models")
    if isinstance(old_models, Mapping):
        for field, model in sorted(current["models"].items()):
            before = (old_models.get(field) or {}).get("identity")
            if before is not None and before != model["identity"]:
                lines.append(
                    f"model '{field}' ({model['reference']}): {_short(before)} -> "
                    f"{_short(model['identity'])}"
                )
    return lines


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat |= _flat(item, f"{prefix}{key}.")
        return flat
    return {prefix.rstrip("."): value}


def _show(value: Any) -> str:
    return value if isinstance(value, str) and value == "(unset)" else json.dumps(value)


def _short(digest: str | None) -> str:
    if digest is None:
        return "none"
    return digest if digest.startswith("hub:") else digest[:12]
