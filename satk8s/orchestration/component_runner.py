"""The single function every KFP component body calls (see `components/`).

A component's body is serialized into the pipeline YAML by its source, so it holds no logic:
it hands its parameters and output artifacts to `run_component`, which runs the step at its
content address (`run_addressed`) and returns the output location as the task's output
parameter, the value downstream tasks are wired to.

KFP artifacts carry only small things: a Metrics artifact with the summary's numbers, and the
report (Markdown/HTML) for the Kubeflow UI. Heavy data stays in the store.

This module imports nothing heavy at load time: on a cache hit `run_addressed` reads only the
store and the manifest, so a fully finished step returns without importing torch.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from satk8s.threads import limit_threads

# What an unresolved KFP placeholder looks like when an orchestrator did not substitute an
# upstream output inside a joined string (KFP's f-string channel concatenation).
_UNRESOLVED = ("{{$.inputs", "{{channel:")

RUN_LOG_ENV = "SATK8S_RUN_LOG"
"""When set, every task appends {node, step, out, cached, seconds, summary} as a JSON line to
this file (the local run reads it back for its console view and result; kfp.local gives tasks of
one component the same output dir)."""

# Which store files become the UI documents of a step: (Markdown, HTML).
DOCUMENTS: dict[str, tuple[str | None, str | None]] = {
    "report": ("report.md", "report.html"),
    "calibrate": ("calibration.md", None),
}


class OutputArtifact(Protocol):
    """The part of a KFP output artifact (`kfp.dsl.Artifact`) the runner uses."""

    path: str
    metadata: dict[str, Any]


def run_component(
    step: str,
    node: str,
    store_root: str,
    config_json: str,
    force: bool,
    model_location: str,
    inputs: Mapping[str, str],
    metrics: OutputArtifact | None = None,
    markdown: OutputArtifact | None = None,
    html: OutputArtifact | None = None,
) -> str:
    """Run `step` (config as JSON text) on `inputs` (step input name -> location, several
    joined with commas; empty means absent) into its content address under `store_root`.
    `model_location`, when not empty, is an upstream model output (the `tiny` step) that
    replaces the config's `model` field. Fills the given artifacts and returns the output
    location. `node` is the plan node's id, for logs and the local run log."""
    limit_threads()
    started = time.perf_counter()
    from satk8s.orchestration.addressed import run_addressed

    present = {name: value.strip() for name, value in inputs.items() if value and value.strip()}
    for name, value in present.items():
        if any(mark in value for mark in _UNRESOLVED):
            raise RuntimeError(
                f"step '{step}': input '{name}' holds an unresolved pipeline placeholder "
                f"({value!r}); the orchestrator did not substitute an upstream output"
            )
    config = json.loads(config_json)
    summary = run_addressed(
        step, store_root, config, present, force=bool(force), model=model_location
    )
    out = str(summary["out"])
    if metrics is not None:
        write_metrics(metrics, summary)
    if markdown is not None or html is not None:
        write_documents(step, out, markdown, html)
    seconds = round(time.perf_counter() - started, 3)
    state = "cached" if summary.get("cached") else "computed"
    print(f"satk8s: {node} ({step}) {state} in {seconds}s: {out}", file=sys.stderr, flush=True)
    if log := os.environ.get(RUN_LOG_ENV):
        record = {"node": node, "step": step, "out": out, "cached": bool(summary.get("cached"))}
        record.update(seconds=seconds, summary=summary)
        with open(log, "a") as file:  # one line per task; tasks run one at a time
            file.write(json.dumps(record, default=str) + "\n")
    return out


def metric_values(summary: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The summary's finite numbers, nested dicts flattened with dots; booleans as 0/1."""
    values: dict[str, float] = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            values[name] = float(value)
        elif isinstance(value, int | float) and math.isfinite(value):  # JSON has no NaN
            values[name] = float(value)
        elif isinstance(value, Mapping):
            values.update(metric_values(value, prefix=f"{name}."))
    return dict(sorted(values.items()))


def write_metrics(metrics: OutputArtifact, summary: Mapping[str, Any]) -> None:
    """Log the summary's numbers on the Metrics artifact and write them to its file too:
    kfp.local never caches (and the backend does not upload) a Metrics artifact with no file,
    and the file lets a local run read back every task's summary."""
    values = metric_values(summary)
    metrics.metadata.update(values)
    record = {"out": summary.get("out"), "cached": bool(summary.get("cached")), "metrics": values}
    _write(metrics.path, json.dumps(record, indent=2, sort_keys=True))


def write_documents(
    step: str, out: str, markdown: OutputArtifact | None, html: OutputArtifact | None
) -> None:
    """Copy the step's report files from the store into the Markdown/HTML artifacts."""
    from satk8s.store.base import get_store
    from satk8s.store.uri import join

    md_name, html_name = DOCUMENTS.get(step, (None, None))
    for artifact, name in ((markdown, md_name), (html, html_name)):
        if artifact is None:
            continue
        data = get_store(out).read_bytes(join(out, name)) if name else None
        text = data.decode() if data is not None else f"(step '{step}' wrote no {name} at {out})"
        _write(artifact.path, text)


def _write(path: str, text: str) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
