"""The train step on several nodes: a Kubeflow Trainer v2 `TrainJob`, submitted by a small CPU
task through the Kubeflow SDK (`kubeflow.trainer.TrainerClient`).

With `distributed.nodes > 1` the pipeline's train task runs on the CPU role and does this:

1. a finished output at the step's address is returned as is, a gated training set is passed
   on, and the training set is validated: no GPU is asked for any of them;
2. it submits a TrainJob (`trainer.kubeflow.org/v1alpha1`, runtime `torch-distributed` unless
   the settings name another): `nodes` pods of the step's GPU image, each with the train
   role's GPUs, CPU and memory, node selector, tolerations, /dev/shm, service account and
   Secrets as environment variables. Every node runs torchrun (the runtime's torch plugin sets
   `PET_NNODES`, `PET_NPROC_PER_NODE`, `PET_NODE_RANK`, `PET_MASTER_ADDR`; kubeflow/trainer@v2.3.0
   pkg/runtime/framework/plugins/torch/torch.go), and every torchrun worker runs the train step
   as its rank (`satk8s_trainjob` below), so global rank 0 holds the output's lease, commits each
   checkpoint and the manifest, as in one pod (`satk8s.training.distributed`);
3. it waits for the TrainJob, streams the log of its first node (where rank 0 runs) into its
   own, and returns the summary rank 0 committed; a failed TrainJob fails the task with the
   log's last lines. The TrainJob's name is a hash of the output location: a retried task finds
   the TrainJob it submitted and follows it, or replaces a failed one (which resumes from the
   last committed checkpoint).

Where the nodes run comes from the compiled pipeline, in the `SATK8S_TRAINJOB` environment
variable of the task (`TrainJobSpec`), not from the step config: it says where the step runs,
not what it computes, so it is no part of the output's address.

`backend: local` runs the same TrainJob through the SDK's local process backend (one torchrun
process in a fresh virtual environment on this machine): the tests' path, and a way to try a
multi-node config on a workstation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from satk8s.errors import ConfigError, Satk8sError

log = logging.getLogger(__name__)

LOG_TAIL = 20
"""Lines of a failed TrainJob's log its error repeats."""
SPEC_ENV = "SATK8S_TRAINJOB"
"""The task's TrainJob settings, as JSON (`TrainJobSpec`)."""
DEFAULT_RUNTIME = "torch-distributed"
NODE_CONTAINER = "node"
"""The trainer container and replicated job of the torch runtimes (kubeflow/trainer@v2.3.0
manifests/base/runtimes/torch_distributed.yaml; `constants.Node` in pkg/constants/constants.go)."""
BACKENDS = ("kubernetes", "local")
SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
SHELL_UNSAFE = ("$", "`", "\\")
"""The SDK's Kubernetes backend writes the function and its arguments into a bash here-document
(kubeflow 0.5.0, kubeflow/trainer/constants/constants.py `EXEC_FUNC_SCRIPT`): these would be
expanded there."""


@dataclass(frozen=True)
class TrainJobSpec:
    """Where a TrainJob's nodes run (the train role's compute profile, at compile time)."""

    nodes: int = 2
    """Training nodes (pods)."""
    gpus_per_node: int = 0
    """Accelerators per node (`resourcesPerNode`)."""
    accelerator_type: str = "nvidia.com/gpu"
    """Their extended resource name."""
    cpu: str = ""
    """CPU request and limit per node."""
    memory: str = ""
    """Memory request and limit per node."""
    image: str = ""
    """The step image (GPU image, pinned by digest); empty keeps the runtime's."""
    runtime: str = DEFAULT_RUNTIME
    """A (Cluster)TrainingRuntime with the torch plugin."""
    namespace: str = ""
    """Empty: this pod's namespace (the SDK reads the service account's)."""
    service_account: str = ""
    """The nodes' service account (the chart's runner: its cloud identity reaches the store)."""
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    secrets: list[dict[str, Any]] = field(default_factory=list)
    """`{secret, env: {key: VARIABLE}, optional}`: exposed to every node by reference."""
    env: dict[str, str] = field(default_factory=dict)
    """Plain environment variables (store endpoint, region, addressing style)."""
    shm_size: str = ""
    """A memory-backed /dev/shm of this size (NCCL, data loaders); empty keeps the runtime's."""
    labels: dict[str, str] = field(default_factory=dict)
    """Labels on the TrainJob (e.g. Kueue's queue name)."""
    backend: str = "kubernetes"
    """`kubernetes`, or `local`: the SDK's local process backend on this machine."""
    packages: list[str] = field(default_factory=list)
    """`packages_to_install` in the nodes' environment (local backend: torch and satk8s)."""
    poll_s: float = 10.0
    """Seconds between status checks."""
    timeout_s: int = 7 * 24 * 3600
    """Longest wait for the TrainJob to finish."""

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"{SPEC_ENV}.backend", f"must be one of {', '.join(BACKENDS)}")
        if self.nodes < 1 or self.gpus_per_node < 0:
            raise ConfigError(f"{SPEC_ENV}.nodes", "needs nodes >= 1 and gpus_per_node >= 0")

    def to_env(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_env(cls) -> TrainJobSpec:
        text = os.environ.get(SPEC_ENV)
        if not text:
            raise ConfigError(
                "distributed.nodes",
                f"more than one node runs the train step as a Kubeflow TrainJob, whose nodes "
                f"are described by ${SPEC_ENV}: compile the grid for a cluster "
                "(`satk8s grid compile`), or set distributed.nodes=1",
            )
        try:
            return cls(**json.loads(text))
        except (ValueError, TypeError) as err:
            raise ConfigError(SPEC_ENV, f"not a TrainJob spec: {err}") from None


def trainjob_env(profile: dict[str, Any], image: str) -> str:
    """The `SATK8S_TRAINJOB` value for a train task whose compute profile has several nodes
    (`satk8s.grid.expand.profile_dict`): its nodes get that profile and the step image."""
    spec = TrainJobSpec(
        nodes=int(profile.get("nodes") or 1),
        gpus_per_node=int(profile.get("accelerator_count") or 0),
        accelerator_type=str(profile.get("accelerator_type") or "nvidia.com/gpu"),
        cpu=str(profile.get("cpu") or ""),
        memory=str(profile.get("memory") or ""),
        image=image,
        node_selector=dict(profile.get("node_selector") or {}),
        tolerations=[
            {k: v for k, v in t.items() if v not in ("", None)}
            for t in profile.get("tolerations") or []
        ],
        secrets=[dict(s) for s in profile.get("secrets") or []],
        env=dict(profile.get("env") or {}),
        shm_size=str(profile.get("shm_size") or ""),
        labels=dict(profile.get("pod_labels") or {}),
    )
    return spec.to_env()


def trainjob_name(out: str) -> str:
    """A stable TrainJob name for the output at `out` (a DNS label, short enough for the pod
    names JobSet derives from it)."""
    return "satk8s-" + hashlib.sha256(out.rstrip("/").encode()).hexdigest()[:12]


def satk8s_trainjob(params=None, **kwargs):  # noqa: ANN001, ANN003, ANN201
    """The TrainJob's training function: each torchrun worker runs the train step as its rank.

    The SDK ships this function by its source alone and calls it with the request as one dict
    (local process backend) or as keyword arguments (Kubernetes backend). No annotations: the
    file it lands in has no imports to evaluate them with."""
    from satk8s.training.trainjob import run_request

    run_request(params or kwargs)


def run_request(params: dict[str, Any]) -> None:
    """Inside a TrainJob: the train step as this worker's rank."""
    from satk8s.config import build_config
    from satk8s.steps.train import TrainStepConfig, train_model
    from satk8s.threads import limit_threads

    limit_threads()
    request = json.loads(params["request"])
    config = build_config(TrainStepConfig, base=request["config"])
    train_model(request["dataset"], request["out"], config, request["force"])


def run_trainjob(dataset: str, out: str, config: Any, force: bool) -> dict[str, Any]:
    """Run the train step as a TrainJob and return the summary its rank 0 committed."""
    from satk8s.steps.outputs import finished_summary
    from satk8s.store.identity import plain_config

    spec = TrainJobSpec.from_env()
    started = time.time()
    request = json.dumps(
        {"dataset": dataset, "out": out, "config": plain_config(config), "force": force},
        sort_keys=True,
    )
    if any(c in request for c in SHELL_UNSAFE):
        raise ConfigError(
            "train",
            f"a TrainJob's request may not hold {' '.join(SHELL_UNSAFE)} (the SDK passes it "
            "through a shell here-document); rename the locations or settings that do",
        )
    client = _client(spec)
    name = trainjob_name(out)
    _submit(client, spec, name, request)
    job, tail = _follow(client, spec, name)
    if job.status != "Complete":
        last = "\n".join(f"  {line}" for line in tail)
        raise Satk8sError(
            f"TrainJob {name} ended {job.status}; the last lines of its first node's log:\n"
            f"{last}\nRerun the step: it resumes from the last checkpoint committed to the store."
        )
    summary = finished_summary(out)
    if summary is None:
        raise Satk8sError(f"TrainJob {name} completed but {out} holds no finished output")
    return {
        **summary,
        "cached": False,
        "trainjob": name,
        "seconds": round(time.time() - started, 3),
    }


def trainer_for(spec: TrainJobSpec, request: str) -> Any:
    """The SDK's CustomTrainer for this request on these nodes."""
    from kubeflow.trainer import CustomTrainer

    resources: dict[str, Any] = {}
    if spec.gpus_per_node:
        resources[spec.accelerator_type] = str(spec.gpus_per_node)  # a quantity, as a string
    if spec.cpu:
        resources["cpu"] = spec.cpu
    if spec.memory:
        resources["memory"] = spec.memory
    env = dict(spec.env)
    if spec.backend == "local":
        # The local backend starts the job with exactly this environment: pass on what the
        # step needs from this one (PATH, HOME, the store's settings and credentials).
        env = {**_inherited_env(), **env}
    return CustomTrainer(
        func=satk8s_trainjob,
        func_args={"request": request},
        image=spec.image or None,
        packages_to_install=list(spec.packages) or None,
        num_nodes=spec.nodes if spec.backend == "kubernetes" else None,
        resources_per_node=resources or None,
        env=env or None,
    )


def options_for(spec: TrainJobSpec, name: str) -> list[Any]:
    """SDK options: the TrainJob's name and labels, and a runtime patch placing its nodes
    (node selector, tolerations, service account, /dev/shm) and exposing the Secrets."""
    from kubeflow.trainer.options import (
        ContainerPatch,
        JobSetSpecPatch,
        JobSetTemplatePatch,
        JobSpecPatch,
        JobTemplatePatch,
        Labels,
        Name,
        PodSpecPatch,
        PodTemplatePatch,
        ReplicatedJobPatch,
        RuntimePatch,
        TrainingRuntimeSpecPatch,
    )

    options: list[Any] = [Name(name)]
    if spec.backend == "local":
        return options
    options.append(Labels({"app.kubernetes.io/managed-by": "satk8s", **spec.labels}))
    env = [
        {
            "name": variable,
            "valueFrom": {
                "secretKeyRef": {
                    "name": source["secret"],
                    "key": key,
                    "optional": bool(source.get("optional")),
                }
            },
        }
        for source in spec.secrets
        for key, variable in sorted(source["env"].items())
    ]
    volumes, mounts = None, None
    if spec.shm_size:
        volumes = [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.shm_size}}]
        mounts = [{"name": "dshm", "mountPath": "/dev/shm"}]
    container = ContainerPatch(name=NODE_CONTAINER, env=env or None, volume_mounts=mounts)
    pod = PodSpecPatch(
        service_account_name=spec.service_account or own_service_account(),
        volumes=volumes,
        containers=[container] if (env or mounts) else None,
        node_selector=dict(spec.node_selector) or None,
        tolerations=[dict(t) for t in spec.tolerations] or None,
    )
    replicated = ReplicatedJobPatch(
        name=NODE_CONTAINER,
        template=JobTemplatePatch(spec=JobSpecPatch(template=PodTemplatePatch(spec=pod))),
    )
    options.append(
        RuntimePatch(
            training_runtime_spec=TrainingRuntimeSpecPatch(
                template=JobSetTemplatePatch(spec=JobSetSpecPatch(replicated_jobs=[replicated]))
            )
        )
    )
    return options


def own_service_account(token_file: str = SERVICE_ACCOUNT_TOKEN) -> str | None:
    """The service account this pod runs as (the chart's runner account for a pipeline task),
    read from its token's `sub` claim (`system:serviceaccount:<namespace>:<name>`), so the
    TrainJob's nodes get the same identity; None outside a pod."""
    import base64

    try:
        payload = open(token_file).read().split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (OSError, IndexError, ValueError):
        return None
    subject = str(claims.get("sub", ""))
    return subject.split(":")[-1] if subject.startswith("system:serviceaccount:") else None


def _client(spec: TrainJobSpec) -> Any:
    from kubeflow.trainer import KubernetesBackendConfig, LocalProcessBackendConfig, TrainerClient

    if spec.backend == "local":
        return TrainerClient(backend_config=LocalProcessBackendConfig())
    # KUBECONFIG read now: the kubernetes client reads it once, when it is imported.
    backend = KubernetesBackendConfig(
        namespace=spec.namespace or None, config_file=os.environ.get("KUBECONFIG") or None
    )
    return TrainerClient(backend_config=backend)


def _submit(client: Any, spec: TrainJobSpec, name: str, request: str) -> None:
    """Submit the TrainJob, unless a retried task finds its own still running."""
    existing = None
    if spec.backend == "kubernetes":
        existing = next((j for j in client.list_jobs() if j.name == name), None)
    if existing is not None and existing.status in ("Created", "Running"):
        log.info("following TrainJob %s, submitted by an earlier try of this task", name)
        return
    if existing is not None:  # Complete or Failed: its results are in the store
        log.info("replacing TrainJob %s (%s)", name, existing.status)
        client.delete_job(name)
        _wait_deleted(client, name, spec.poll_s)
    client.train(
        runtime=spec.runtime,
        trainer=trainer_for(spec, request),
        options=options_for(spec, name),
    )
    log.info("submitted TrainJob %s: %d node(s), runtime %s", name, spec.nodes, spec.runtime)


def _wait_deleted(client: Any, name: str, poll_s: float) -> None:
    for _ in range(60):
        if all(j.name != name for j in client.list_jobs()):
            return
        time.sleep(poll_s)
    raise Satk8sError(f"TrainJob {name} was not deleted; delete it and rerun the step")


def _follow(client: Any, spec: TrainJobSpec, name: str) -> tuple[Any, list[str]]:
    """Wait for the first node to start, stream its log, then wait for the end."""
    from satk8s.store.redact import redact_text

    deadline = time.monotonic() + spec.timeout_s
    done = {"Complete", "Failed"}
    while client.get_job(name).status not in {"Running", *done}:
        if time.monotonic() > deadline:
            raise Satk8sError(f"TrainJob {name} did not start within {spec.timeout_s} s")
        time.sleep(spec.poll_s)
    tail: list[str] = []
    for line in client.get_job_logs(name, follow=True):
        text = redact_text(str(line).rstrip("\n"))
        tail = [*tail[-(LOG_TAIL - 1) :], text]
        if spec.backend == "kubernetes":  # the local backend prints its output live itself
            log.info("[%s] %s", name, text)
    remaining = max(int(deadline - time.monotonic()), int(spec.poll_s) + 1)
    job = client.wait_for_job_status(
        name, status=done, timeout=remaining, polling_interval=max(1, int(spec.poll_s))
    )
    return job, tail


def _inherited_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "TMPDIR", "PYTHONPATH", "SATK8S_CACHE", "SATK8S_THREADS")
    prefixes = ("AWS_", "SATK8S_S3_", "SATK8S_STORE", "SATK8S_MODEL_STORE", "HF_", "PIP_")
    return {k: v for k, v in os.environ.items() if k in keep or k.startswith(prefixes)}
