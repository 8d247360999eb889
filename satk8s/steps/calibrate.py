"""Step `calibrate`: how well each signal agrees with the external judge."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import pyarrow.parquet as pq

from satk8s.errors import ConfigError, DataError
from satk8s.steps.outputs import finished_summary, input_path, split_locations, step_output


@dataclass(frozen=True)
class CalibrateConfig:
    n_boot: int = 1000
    """Bootstrap resamples (over questions) for every confidence interval."""
    seed: int = 0
    """Seed of the bootstrap."""

    def __post_init__(self) -> None:
        if self.n_boot < 10:
            raise ConfigError("n_boot", f"must be >= 10, got {self.n_boot}")


def calibrate(
    scores: str,
    judge: str,
    out: str,
    config: CalibrateConfig = CalibrateConfig(),
    force: bool = False,
) -> dict[str, Any]:
    """`scores` is a comma-separated list of signal outputs, `judge` the external judge's
    (its verdicts, `pairs.parquet`, decide the pairs when present). A signal whose
    `diagnostics.json` holds judge health (a judged signal) gets it in its row.
    Writes `calibration.json` and `calibration.md`."""
    with step_output(out, "calibrate", config, {"scores": scores, "judge": judge}, force) as output:
        if output.cached is not None:
            return output.cached
        # scipy loads here, not with the config: building configs (grids, the compiler) stays
        # fast.
        from satk8s.calibration import calibrate as calibrate_signals
        from satk8s.calibration import calibration_markdown

        started = time.time()
        signals, health = {}, {}
        for location in split_locations(scores):
            root = input_path(location, "scores", "step")
            table = pq.read_table(root / "scores.parquet")
            names = set(table.column("signal").to_pylist())
            if len(names) > 1:
                raise DataError(
                    str(root), f"scores of several signals in one table: {sorted(names)}"
                )
            name = finished_summary(location)["signal"]  # type: ignore[index]
            signals[name] = table
            diagnostics_file = root / "diagnostics.json"
            if diagnostics_file.is_file():
                diagnostics = json.loads(diagnostics_file.read_text())
                if "distinct_pairs" in diagnostics:
                    health[name] = diagnostics
        judge_root = input_path(judge, "judge", "step")
        judge_table = pq.read_table(judge_root / "scores.parquet")
        pairs_file = judge_root / "pairs.parquet"
        judge_pairs = pq.read_table(pairs_file) if pairs_file.is_file() else None
        summary = calibrate_signals(
            signals, judge_table, judge_pairs, health, config.seed, config.n_boot
        )
        root = output.open()
        (root / "calibration.json").write_text(json.dumps(summary, indent=2))
        (root / "calibration.md").write_text(calibration_markdown(summary))
        return output.commit(root, summary, started)
