"""What the tasks of a split grid do that no step does (see `satk8s.grid.split`), and the parts
list a split compile writes.

- `await_output`: the location of a node another part runs, once it is finished there. Its
  address is computed as `run_addressed` computes it (the same config, the upstream locations,
  the model from upstream); the task then polls the store for that output's manifest.
- `publish_part`: a later part's evaluation locations, written to
  `<store>/grids/<grid id>/part-<i>.json` with the code version that computed them.
- `gather_parts`: part 1's own evaluation locations and every later part's published ones, in
  the report's order; a published file of another code version (a stale compile of the same
  grid) is not taken.

A task waits `SATK8S_AWAIT_HOURS` (default 72) at most, then fails naming what it waited for.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from satk8s.errors import DataError

AWAIT_HOURS_ENV = "SATK8S_AWAIT_HOURS"
DEFAULT_AWAIT_HOURS = 72.0
POLL_S = 60.0
PARTS_KEY = "satk8s_parts"
"""The key that marks a YAML file as the parts list of a split grid."""


def await_hours() -> float:
    return float(os.environ.get(AWAIT_HOURS_ENV) or DEFAULT_AWAIT_HOURS)


def _wait(what: str, ready: Callable[[], Any], poll_s: float, timeout_s: float) -> Any:
    started = time.monotonic()
    while True:
        if (found := ready()) is not None:
            return found
        if time.monotonic() - started > timeout_s:
            raise DataError(
                what,
                f"not finished after {timeout_s / 3600:.1f} h; the part that runs it has failed "
                "or not run: see its run, resubmit the grid (finished steps are reused), and "
                f"terminate this run ({AWAIT_HOURS_ENV} sets the wait)",
            )
        print(f"satk8s: waiting for {what}", file=sys.stderr, flush=True)
        time.sleep(poll_s)


def await_output(
    node: str,
    store_root: str,
    step: str,
    config_json: str,
    inputs_json: str,
    model_location: str = "",
    poll_s: float = POLL_S,
    timeout_s: float | None = None,
) -> str:
    """The location of plan node `node` (its step, resolved config and upstream locations by
    input name) once its output is finished in the store."""
    from satk8s.orchestration.addressed import addressed_output
    from satk8s.steps.outputs import finished_summary

    config = json.loads(config_json)
    if model_location:
        config = {**config, "model": model_location}
    inputs = {k: v for k, v in json.loads(inputs_json).items() if v}
    out = addressed_output(step, store_root, config, inputs)
    timeout = await_hours() * 3600 if timeout_s is None else timeout_s
    _wait(f"{node} at {out}", lambda: finished_summary(out), poll_s, timeout)
    print(f"satk8s: {node} ({step}) finished by another part: {out}", file=sys.stderr, flush=True)
    return out


def part_uri(store_root: str, grid_id: str, index: int) -> str:
    from satk8s.store.uri import join

    return join(store_root, "grids", grid_id, f"part-{index}.json")


def publish_part(
    store_root: str, grid_id: str, index: int, nodes: list[str], locations: str
) -> str:
    """Write part `index`'s evaluation locations (comma-joined, in `nodes` order)."""
    from satk8s.store.base import get_store
    from satk8s.store.keys import current_code_version

    found = [loc.strip() for loc in locations.split(",") if loc.strip()]
    if len(found) != len(nodes):
        raise DataError("evaluations", f"{len(found)} locations for {len(nodes)} nodes")
    uri = part_uri(store_root, grid_id, index)
    record = {"code": current_code_version(), "evaluations": dict(zip(nodes, found, strict=True))}
    get_store(uri).write_bytes(uri, json.dumps(record, sort_keys=True).encode())
    return uri


def gather_parts(
    store_root: str,
    grid_id: str,
    parts: list[int],
    order: list[str],
    own_nodes: list[str],
    own: str,
    poll_s: float = POLL_S,
    timeout_s: float | None = None,
) -> str:
    """Every evaluation location in `order`, comma-joined: part 1's own (`own`, in `own_nodes`
    order) and each of `parts`' published ones of this code version."""
    from satk8s.store.base import get_store
    from satk8s.store.keys import current_code_version

    locations = dict(zip(own_nodes, [v.strip() for v in own.split(",") if v.strip()], strict=True))
    code = current_code_version()
    timeout = await_hours() * 3600 if timeout_s is None else timeout_s

    def published(index: int) -> Mapping[str, str] | None:
        uri = part_uri(store_root, grid_id, index)
        data = get_store(uri).read_bytes(uri)
        record = json.loads(data) if data else None
        return record["evaluations"] if record and record.get("code") == code else None

    for index in parts:
        locations.update(
            _wait(f"part {index} of grid {grid_id}", lambda i=index: published(i), poll_s, timeout)
        )
    if missing := [n for n in order if n not in locations]:
        raise DataError("evaluations", f"no location for {missing[:5]}")
    return ",".join(locations[n] for n in order)


# ----------------------------------------------------------------------------- parts lists


def write_parts(path: Path, grid: str, parts: list[Path], sizes: list[int], limit: int) -> Path:
    """The parts list of a split grid at `path`: what `satk8s submit` and `satk8s doctor
    --pipeline` read. Parts are named relative to it."""
    import yaml

    header = (
        f"# satk8s: grid {grid} compiled in {len(parts)} parts, each a KFP pipeline under "
        f"{limit // 1024} KiB (satk8s/grid/split.py).\n"
        "# `satk8s submit` this file to submit every part; part 1 runs the shared work and the "
        "report.\n"
    )
    body = {
        PARTS_KEY: 1,
        "grid": grid,
        "parts": [{"file": p.name, "bytes": size} for p, size in zip(parts, sizes, strict=True)],
    }
    path.write_text(header + yaml.safe_dump(body, sort_keys=False))
    return path


def read_parts(path: Path) -> list[Path]:
    """The pipeline files of `path`: the parts it lists, or `path` itself (a plain pipeline)."""
    import yaml

    path = Path(path)
    try:
        first = next(iter(yaml.safe_load_all(path.read_text())), None)
    except yaml.YAMLError:
        return [path]
    if not isinstance(first, dict) or PARTS_KEY not in first:
        return [path]
    parts = [path.parent / str(entry["file"]) for entry in first.get("parts") or []]
    if missing := [str(p) for p in parts if not p.is_file()]:
        raise DataError(str(path), f"lists parts that do not exist: {', '.join(missing)}")
    return parts


__all__ = [
    "AWAIT_HOURS_ENV",
    "PARTS_KEY",
    "await_output",
    "gather_parts",
    "part_uri",
    "publish_part",
    "read_parts",
    "write_parts",
]
