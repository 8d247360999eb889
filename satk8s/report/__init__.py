"""Step 9, report: the results table, figures, Markdown + HTML + JSON."""

from satk8s.report.plots import accuracy_plot, calibration_plot, saturation_plot
from satk8s.report.report import FIGURES, build_report

__all__ = ["FIGURES", "accuracy_plot", "build_report", "calibration_plot", "saturation_plot"]
