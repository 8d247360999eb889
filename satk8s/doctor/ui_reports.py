"""Check: can the Kubeflow UI show the runs' Markdown and HTML reports?

The UI's server reads a run's artifacts itself. In multi-user mode it ignores the Secret that
kfp-launcher's providers name for a user namespace and uses its own environment credentials
(kubeflow/pipelines@2.17.0:frontend/server/handlers/artifacts.ts: provider info is honoured only
for the server's own namespace; frontend/server/configs.ts: AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_S3_ENDPOINT). So with an s3:// pipeline root the reports
render only if the admin gave the UI read access to that bucket. The report is in the store
either way, and `satk8s runs status RUN_ID` prints where."""

from __future__ import annotations

from satk8s.doctor.context import DoctorContext
from satk8s.doctor.kfp_api import kfp_health
from satk8s.doctor.launcher import read_launcher
from satk8s.doctor.result import CheckResult

NAME = "ui-reports"


def check_ui_reports(ctx: DoctorContext) -> CheckResult:
    health = kfp_health(ctx)
    if health is None:
        return CheckResult.skip(NAME, "skipped: the KFP API does not answer (see kfp-api)")
    try:
        root = read_launcher(ctx).pipeline_root
    except Exception:  # the kfp-launcher check reports it
        return CheckResult.skip(NAME, "skipped: no readable kfp-launcher (see kfp-launcher)")
    if not health.get("multi_user"):
        return CheckResult.ok(
            NAME, "single-user KFP: the UI reads artifacts with the credentials kfp-launcher names"
        )
    if not root.startswith("s3://"):
        return CheckResult.ok(
            NAME, f"multi-user KFP, pipeline root {root}: the UI reads KFP's own object store"
        )
    bucket = root.removeprefix("s3://").split("/", 1)[0]
    return CheckResult.warn(
        NAME,
        f"multi-user KFP reads run artifacts under {root} with the UI's own credentials, not the "
        "namespace's Secret: Markdown/HTML reports show in the UI only if an admin granted them",
        "ask the Kubeflow admin to give the UI server (Deployment ml-pipeline-ui in kubeflow) "
        f"s3:GetObject on arn:aws:s3:::{bucket}/*: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
        "AWS_REGION (and AWS_S3_ENDPOINT off AWS) in its environment, or a cloud identity on its "
        "ServiceAccount; either way `satk8s runs status RUN_ID` prints the report's store paths",
    )
