"""`satk8s doctor`: is this cluster and namespace ready for satk8s runs?"""

from __future__ import annotations

from pathlib import Path

import typer


def doctor(
    namespace: str | None = typer.Option(
        None,
        "--namespace",
        "-n",
        help="Namespace the runs use (the chart's). Default: the kubeconfig context's.",
    ),
    kfp_host: str | None = typer.Option(
        None,
        "--kfp-host",
        envvar="KFP_HOST",
        help="KFP API URL as given to kfp.Client. Default: KFP's Service via the API server.",
    ),
    kfp_token: str | None = typer.Option(
        None,
        "--kfp-token",
        envvar="KFP_TOKEN",
        help="Bearer token for --kfp-host, where an auth proxy guards it.",
        show_default=False,
    ),
    kfp_namespace: str = typer.Option(
        "kubeflow", "--kfp-namespace", help="Namespace of KFP's ml-pipeline Service."
    ),
    bucket: str | None = typer.Option(
        None,
        "--bucket",
        help="s3://BUCKET/PREFIX to probe. Default: the namespace's pipeline root.",
    ),
    kubeconfig: Path | None = typer.Option(
        None, "--kubeconfig", help="Kubeconfig file. Default: $KUBECONFIG or ~/.kube/config."
    ),
    context: str | None = typer.Option(None, "--context", help="Kubeconfig context to use."),
    in_cluster: bool = typer.Option(
        False, "--in-cluster", help="Use the pod's ServiceAccount (as `helm test` does)."
    ),
    only: str | None = typer.Option(
        None,
        "--only",
        help="Comma-separated checks to run: api, gpu-nodes, kfp-api, secrets, runner, store, "
        "kfp-launcher, bucket, ui-reports, trainer, pipeline. Default: all.",
    ),
    pipeline: Path | None = typer.Option(
        None,
        "--pipeline",
        help="A compiled pipeline (`satk8s grid compile -o FILE`; a split grid's parts list "
        "too): check that each of its tasks fits some node (selector, affinity, tolerations, "
        "allocatable CPU, memory, GPUs, ephemeral storage) and that GPU nodes run a driver "
        "the GPU image runs on.",
    ),
) -> None:
    """Check the cluster for runs: GPU nodes, KFP, settings, run account, store; each with its fix.

    Reads the GPU nodes per pool and their allocatable nvidia.com/gpu; checks that the KFP API
    answers with a supported version (2.15 or newer); that satk8s-settings and the Secrets it
    names are there; that the run ServiceAccount exists (its cloud identity, pull secrets); that
    the store bucket takes a write, a read and a delete with the credentials the pods get; that
    kfp-launcher gives the pipeline root the settings name, with credentials, and that bucket
    takes the same probe; and whether the Kubeflow UI can show the reports. With --pipeline, also
    which tasks of a compiled pipeline would stay Pending on this cluster's nodes."""
    from kubernetes.config import ConfigException

    from satk8s.cluster.kube import connect
    from satk8s.doctor import DoctorContext, DoctorOptions, failed, format_report, run_doctor
    from satk8s.doctor.runner import select_checks

    try:
        selected = select_checks(only.split(",") if only else None, pipeline=pipeline is not None)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--only") from err
    try:
        api, default_namespace = connect(kubeconfig, context, in_cluster)
    except (ConfigException, OSError) as err:
        typer.echo(f"FAIL  {'api':<13} no usable Kubernetes configuration: {err}")
        typer.echo(
            f"{'':20}fix: pass --kubeconfig/--context (or --in-cluster inside a pod); "
            "`kubectl config get-contexts` lists what you have"
        )
        raise typer.Exit(1) from None
    options = DoctorOptions(
        namespace=namespace or default_namespace,
        kfp_host=kfp_host,
        kfp_token=kfp_token,
        kfp_namespace=kfp_namespace,
        bucket=bucket,
        pipeline=str(pipeline) if pipeline else None,
    )
    typer.echo(f"satk8s doctor: namespace {options.namespace} at {api.configuration.host}")
    results = run_doctor(DoctorContext(api=api, options=options), [c.name for c in selected])
    typer.echo(format_report(results))
    if failed(results):
        raise typer.Exit(1)
