"""Step `report`: the results table, figures and calibration, as Markdown, HTML and JSON."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from satk8s.errors import DataError
from satk8s.steps.evaluate import load_evaluation
from satk8s.steps.outputs import input_path, split_locations, step_output
from satk8s.store.uri import join


@dataclass(frozen=True)
class ReportConfig:
    title: str = "satk8s report"
    """Shown in the summary; the report's sections are fixed."""


def report(
    evaluations: str,
    out: str,
    config: ReportConfig = ReportConfig(),
    saturation: str = "",
    calibration: str = "",
    force: bool = False,
) -> dict[str, Any]:
    """`evaluations` is a comma-separated list of evaluate outputs, the base model's among them.
    Writes report.md, report.html (self-contained), report.json and PNG figures."""
    inputs = {"evaluations": evaluations, "saturation": saturation, "calibration": calibration}
    with step_output(out, "report", config, inputs, force) as output:
        if output.cached is not None:
            return output.cached
        from satk8s.report.report import build_report  # matplotlib and scipy: when writing

        started = time.time()
        runs = [load_evaluation(loc) for loc in split_locations(evaluations)]
        bases = [r for r in runs if r["algorithm"] == "base"]
        if len(bases) != 1:
            raise DataError(
                evaluations, f"need exactly one base-model evaluation, got {len(bases)}"
            )
        cells = [r for r in runs if r["algorithm"] != "base"]
        sat = None
        if saturation:
            sat = json.loads(
                (input_path(saturation, "saturation", "step") / "summary.json").read_text()
            )
        cal_summary = cal_md = None
        if calibration:
            cal_root = input_path(calibration, "calibration", "step")
            cal_summary = json.loads((cal_root / "calibration.json").read_text())
            cal_md = (cal_root / "calibration.md").read_text()
        root = output.open()
        written = build_report(cells, bases[0], sat, cal_summary, cal_md, root)
        summary = {
            "title": config.title,
            "cells": len(cells),
            # Where they live once committed (the staging directory goes away).
            "report": join(out, "report.md"),
            "html": join(out, "report.html"),
            "table_markdown": written["table_markdown"],
        }
        return output.commit(root, summary, started)
