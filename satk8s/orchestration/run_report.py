"""Where a cluster run's report lives in the satk8s store, found without the Kubeflow UI.

A step output's address depends on its inputs' digests, known only as the run goes, and KFP's
REST API does not return task output parameters; but every finished output records its resolved
config in its manifest. So the report of a run is the newest finished `report` output under the
run's store root whose config is the run's report task config (a grid re-run with the same
upstream results lands on the same output, a cache hit).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from satk8s.errors import Satk8sError

REPORT_FILES = ("report.md", "report.html")


@dataclass(frozen=True)
class ReportLocation:
    """What `satk8s runs status` prints about a run's report."""

    prefix: str
    """Where report outputs of this store live: `<store root>/steps/report/`."""
    output: str | None
    """The run's report output, when found."""
    note: str = ""
    """Why it was not found (not written yet, the store cannot be read from here)."""

    def files(self) -> list[str]:
        return [f"{self.output}/{name}" for name in REPORT_FILES] if self.output else []


def find_report(store_root: str, report_config: str) -> ReportLocation:
    """The report output of a run whose report task has `report_config` (JSON text)."""
    from satk8s.store.base import get_store
    from satk8s.store.keys import canonical_json
    from satk8s.store.layout import MANIFEST
    from satk8s.store.manifest import parse_manifest
    from satk8s.store.uri import join

    prefix = join(store_root, "steps", "report") + "/"
    wanted = canonical_json(json.loads(report_config))
    try:
        store = get_store(store_root)
        found: list[tuple[float, str]] = []
        for item in store.list(prefix.rstrip("/")):
            if not item.uri.endswith(f"/{MANIFEST}"):
                continue
            manifest = parse_manifest(store.read_bytes(item.uri), item.uri) or {}
            if canonical_json(manifest.get("config")) == wanted:
                finished = float((manifest.get("timings") or {}).get("finished") or 0)
                found.append((finished, item.uri.rsplit("/", 1)[0]))
    except Satk8sError as err:
        return ReportLocation(prefix, None, f"cannot read the store from here: {err}")
    except Exception as err:  # credentials, network: the location is still worth printing
        return ReportLocation(
            prefix, None, f"cannot read the store from here: {type(err).__name__}"
        )
    if not found:
        return ReportLocation(prefix, None, "not written yet (the report step writes it last)")
    return ReportLocation(prefix, max(found)[1])


__all__ = ["REPORT_FILES", "ReportLocation", "find_report"]
