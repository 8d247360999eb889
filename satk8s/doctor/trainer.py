"""Check: Kubeflow Trainer v2 is installed for train steps on several nodes: its API group
serves TrainJobs and ClusterTrainingRuntimes (its CRDs are installed) and the runtime the
TrainJobs name, the ClusterTrainingRuntime `torch-distributed`, exists."""

from __future__ import annotations

import json

from kubernetes import client

from satk8s.doctor.context import TIMEOUT_S, DoctorContext, api_error_text
from satk8s.doctor.result import CheckResult

NAME = "trainer"
GROUP, VERSION = "trainer.kubeflow.org", "v1alpha1"
RUNTIME = "torch-distributed"
INSTALL = (
    "install Kubeflow Trainer v2 (its CRDs and runtimes: https://www.kubeflow.org/docs/"
    "components/trainer/operator-guides/installation/), or keep compute.train.nodes=1"
)


def check_trainer(ctx: DoctorContext) -> CheckResult:
    """Discovery of trainer.kubeflow.org/v1alpha1, then GET of the ClusterTrainingRuntime."""
    try:
        response = ctx.api.call_api(
            f"/apis/{GROUP}/{VERSION}",
            "GET",
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=TIMEOUT_S,
        )
        served = {r["name"] for r in json.loads(response[0].data).get("resources", [])}
    except client.ApiException as err:
        if err.status != 404:
            return CheckResult.warn(NAME, f"cannot read {GROUP}: {api_error_text(err)}", INSTALL)
        served = set()
    missing = sorted({"trainjobs", "clustertrainingruntimes"} - served)
    if missing:
        return CheckResult.warn(
            NAME,
            f"Kubeflow Trainer is not installed ({GROUP}/{VERSION} serves no "
            f"{', '.join(missing)}): a train step on several nodes cannot run here",
            INSTALL,
        )
    try:
        client.CustomObjectsApi(ctx.api).get_cluster_custom_object(
            GROUP, VERSION, "clustertrainingruntimes", RUNTIME, _request_timeout=TIMEOUT_S
        )
    except client.ApiException as err:
        if err.status == 403:
            return CheckResult.fail(
                NAME,
                f"may not read the ClusterTrainingRuntime {RUNTIME}: {api_error_text(err)}",
                "helm upgrade … --set rbac.trainJobs.enabled=true "
                "--set rbac.trainJobs.clusterRuntimes=true",
            )
        return CheckResult.fail(
            NAME,
            f"Kubeflow Trainer is installed but has no ClusterTrainingRuntime {RUNTIME}: "
            f"{api_error_text(err)}",
            "install Trainer's runtimes (kubeflow/trainer manifests/base/runtimes), or name "
            "another runtime",
        )
    return CheckResult.ok(
        NAME, f"Kubeflow Trainer {GROUP}/{VERSION} with ClusterTrainingRuntime {RUNTIME}"
    )
