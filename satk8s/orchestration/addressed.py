"""Run a step at its content address: the output location is derived, not chosen.

The address is `output_uri(store_root, step, step_key(step, config, input digests, code
version))`, so the same step with the same resolved config on the same inputs lands in the
same place, from a local run, a cluster run or another grid, and a finished output there is a
cache hit. KFP's own cache keys on artifact ids and function source, so it cannot be trusted
for this (see design.md).

The cache-hit path reads only the store and the manifest: it never imports the step's module
(torch, transformers, TRL), which keeps a fully cached pipeline run cheap.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from satk8s.errors import ConfigError
from satk8s.steps import STEPS, Step
from satk8s.steps.outputs import finished_summary
from satk8s.store.keys import input_digests, output_uri, step_key


def step_named(name: str) -> Step:
    if name not in STEPS:
        raise ConfigError("step", f"unknown step '{name}'; known: {', '.join(STEPS)}")
    return STEPS[name]


def resolve_config(step: str, settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The step's full config (defaults filled in, every field checked) as plain JSON data."""
    from satk8s.config import build_config

    config = build_config(step_named(step).config, base=settings or {})
    return json.loads(json.dumps(dataclasses.asdict(config)))


def addressed_output(
    step: str, store_root: str, config: Mapping[str, Any], inputs: Mapping[str, str]
) -> str:
    """Where `step` with this resolved `config` on these `inputs` lives in the store."""
    from satk8s.store.model_identity import model_digests

    step_named(step)
    models = model_digests(config)  # a local model's content, a hub model's commit
    key = step_key(step, dict(config), input_digests(dict(inputs)), None, models)
    return output_uri(store_root, step, key)


def run_addressed(
    step: str,
    store_root: str,
    config: Mapping[str, Any],
    inputs: Mapping[str, str],
    force: bool = False,
    model: str = "",
) -> dict[str, Any]:
    """Run `step` into its content address (or find it finished there). `config` is the
    resolved config from `resolve_config`; `inputs` are the step's input locations by name;
    `model`, when given, is the location of an upstream model output that replaces the
    config's `model` field (part of the address, like any config).
    Returns the step's summary with `out`, the output location, and `cached`."""
    spec = step_named(step)
    if model:
        if "model" not in config:
            raise ConfigError("model", f"step '{step}' has no model to take from upstream")
        config = {**config, "model": model}
    missing = sorted(set(spec.inputs) - set(inputs))
    unknown = sorted(set(inputs) - set(spec.inputs) - set(spec.optional_inputs))
    if missing or unknown:
        raise ConfigError("inputs", f"step '{step}': missing {missing}, unexpected {unknown}")
    out = addressed_output(step, store_root, config, inputs)
    if not force and (cached := finished_summary(out)):
        return {**cached, "out": out}
    from satk8s.config import build_config

    typed = build_config(spec.config, base=config)
    summary = spec.run(out=out, config=typed, force=force, **inputs)
    return {**summary, "out": out, "cached": bool(summary.get("cached", False))}
