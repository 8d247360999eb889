"""Run the doctor's checks in order and print what they found, each failure with its fix."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from satk8s.doctor.api import check_api
from satk8s.doctor.bucket import check_bucket
from satk8s.doctor.context import DoctorContext
from satk8s.doctor.gpu_nodes import check_gpu_nodes
from satk8s.doctor.kfp_api import check_kfp_api
from satk8s.doctor.launcher import check_launcher
from satk8s.doctor.pipeline_fit import check_pipeline
from satk8s.doctor.result import CheckResult, Status
from satk8s.doctor.run_account import check_run_account
from satk8s.doctor.secrets import check_secrets
from satk8s.doctor.store import check_store
from satk8s.doctor.trainer import check_trainer
from satk8s.doctor.ui_reports import check_ui_reports


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[DoctorContext], CheckResult]
    summary: str


CHECKS: tuple[Check, ...] = (
    Check("api", check_api, "the Kubernetes API answers"),
    Check("gpu-nodes", check_gpu_nodes, "GPU nodes per pool with allocatable nvidia.com/gpu"),
    Check("kfp-api", check_kfp_api, "the Kubeflow Pipelines API answers, KFP >= 2.15"),
    Check("secrets", check_secrets, "satk8s-settings and the Secrets it names"),
    Check("runner", check_run_account, "the run ServiceAccount, its identity and pull secrets"),
    Check("store", check_store, "the store bucket takes a write, read and delete"),
    Check("kfp-launcher", check_launcher, "kfp-launcher gives the settings' pipeline root"),
    Check("bucket", check_bucket, "the pipeline root's bucket takes a write, read and delete"),
    Check("ui-reports", check_ui_reports, "the Kubeflow UI can show the reports"),
    Check("trainer", check_trainer, "Kubeflow Trainer's TrainJobs and torch-distributed runtime"),
    Check("pipeline", check_pipeline, "every task of --pipeline FILE fits a node and its driver"),
)
CHECK_NAMES = tuple(c.name for c in CHECKS)


def select_checks(only: Iterable[str] | None = None, pipeline: bool = False) -> tuple[Check, ...]:
    """The checks to run, in order (`pipeline` only with a pipeline to check). Raises ValueError
    on an unknown name."""
    if not only:
        return tuple(c for c in CHECKS if c.name != "pipeline" or pipeline)
    wanted = {name.strip() for name in only if name.strip()}
    unknown = sorted(wanted - set(CHECK_NAMES))
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}; choose from {', '.join(CHECK_NAMES)}")
    return tuple(c for c in CHECKS if c.name in wanted)


def run_doctor(ctx: DoctorContext, only: Iterable[str] | None = None) -> list[CheckResult]:
    """Every selected check's result. The API check always runs first: when it fails, the
    checks that need the cluster are skipped rather than failing one by one."""
    checks = select_checks(only, pipeline=ctx.options.pipeline is not None)
    api = check_api(ctx)
    results = [api] if any(c.name == "api" for c in checks) or api.status is Status.FAIL else []
    for check in checks:
        if check.name == "api":
            continue
        needs_cluster = not (check.name == "kfp-api" and ctx.options.kfp_host)
        if api.status is Status.FAIL and needs_cluster:
            results.append(
                CheckResult.skip(check.name, "skipped: the Kubernetes API is unreachable")
            )
            continue
        try:
            results.append(check.run(ctx))
        except Exception as err:  # a bug in a check must not hide the other checks' results
            results.append(
                CheckResult.fail(
                    check.name,
                    f"the check itself crashed: {type(err).__name__}: {err}",
                    "report this as a satk8s bug, with the output above",
                )
            )
    return results


_MARK = {Status.OK: "ok", Status.WARN: "WARN", Status.FAIL: "FAIL", Status.SKIP: "skip"}


def format_report(results: Iterable[CheckResult]) -> str:
    """Plain text, one block per check: status, name, message, then details and the fix."""
    lines = []
    for r in results:
        lines.append(f"{_MARK[r.status]:<5} {r.name:<13} {r.message}")
        lines.extend(f"{'':20}{d}" for d in r.details)
        if r.fix and r.status in (Status.FAIL, Status.WARN):
            lines.append(f"{'':20}fix: {r.fix}")
    return "\n".join(lines)


def failed(results: Iterable[CheckResult]) -> bool:
    return any(r.status is Status.FAIL for r in results)
