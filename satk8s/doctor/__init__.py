"""`satk8s doctor`: checks that a cluster and one namespace are ready for satk8s runs.

GPU nodes per pool, the Kubeflow Pipelines API and its version, the chart's satk8s-settings and
the Secrets it names, the run ServiceAccount, probes of the store bucket and of the pipeline
root's bucket with the credentials the pods get, KFP's kfp-launcher, and whether the Kubeflow UI
can show reports. Each check returns a CheckResult with a status, what it saw, and the fix.
"""

from satk8s.doctor.context import DoctorContext, DoctorOptions
from satk8s.doctor.result import CheckResult, Status
from satk8s.doctor.runner import CHECK_NAMES, CHECKS, failed, format_report, run_doctor

__all__ = [
    "CHECKS",
    "CHECK_NAMES",
    "CheckResult",
    "DoctorContext",
    "DoctorOptions",
    "Status",
    "failed",
    "format_report",
    "run_doctor",
]
