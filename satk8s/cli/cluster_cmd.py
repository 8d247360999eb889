"""`satk8s settings export` and `satk8s setup launcher`: a namespace prepared by the chart.

Importing this module stays cheap (typer only): the Kubernetes client loads when a command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer

settings_app = typer.Typer(
    help="The cluster settings the chart writes (ConfigMap satk8s-settings).",
    no_args_is_help=True,
)
setup_app = typer.Typer(
    help="Finish a namespace's setup where KFP owns the objects (kfp-launcher).",
    no_args_is_help=True,
)

NAMESPACE_HELP = "Namespace the chart is installed in. Default: the kubeconfig context's."


def _fail(err: Exception) -> NoReturn:
    typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


@settings_app.command("export")
def export(
    namespace: str | None = typer.Option(None, "--namespace", "-n", help=NAMESPACE_HELP),
    out: Path | None = typer.Option(None, "--out", "-o", help="File to write (default stdout)."),
    kubeconfig: Path | None = typer.Option(None, "--kubeconfig", help="Kubeconfig file."),
    context: str | None = typer.Option(None, "--context", help="Kubeconfig context to use."),
) -> None:
    """Write the namespace's satk8s-settings as a settings file for --settings FILE, so
    `satk8s grid compile` and `satk8s submit` work without cluster access."""
    from satk8s.cluster.settings import read_settings_from_cluster
    from satk8s.errors import Satk8sError

    try:
        settings = read_settings_from_cluster(namespace, kubeconfig, context)
    except Satk8sError as err:
        _fail(err)
    text = settings.export_yaml()
    if out is None:
        typer.echo(text, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    typer.echo(f"wrote {out} ({settings.source})", err=True)


@setup_app.command("launcher")
def launcher(
    namespace: str | None = typer.Option(None, "--namespace", "-n", help=NAMESPACE_HELP),
    settings_file: Path | None = typer.Option(
        None, "--settings", help="Settings file instead of the namespace's satk8s-settings."
    ),
    kubeconfig: Path | None = typer.Option(None, "--kubeconfig", help="Kubeconfig file."),
    context: str | None = typer.Option(None, "--context", help="Kubeconfig context to use."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Apply without asking."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the change; apply nothing."),
) -> None:
    """Merge satk8s's S3 provider (and pipeline root) into KFP's kfp-launcher ConfigMap.

    KFP owns kfp-launcher (its profile controller or its manifests create it), so the chart does
    not; this command shows a diff of the keys it changes, then server-side applies only
    `providers` (its s3.default section; other providers are kept) and, when the settings name
    one, `defaultPipelineRoot`, as field manager `satk8s`. Every other key stays its owner's.
    Needs get and patch on configmaps in the namespace."""
    from kubernetes.config import ConfigException

    from satk8s.cluster.kube import connect
    from satk8s.cluster.launcher import (
        LAUNCHER_CONFIGMAP,
        apply_launcher,
        launcher_diff,
        merged_keys,
        read_launcher_data,
    )
    from satk8s.cluster.settings import load_settings
    from satk8s.errors import Satk8sError

    try:
        api, default_namespace = connect(kubeconfig, context, in_cluster=None)
    except (ConfigException, OSError) as err:
        _fail(RuntimeError(f"no usable Kubernetes configuration: {err}"))
    ns = namespace or default_namespace
    try:
        settings = load_settings(settings_file, ns, kubeconfig, context)
        current = read_launcher_data(api, ns)
        keys = merged_keys(current, settings)
    except Satk8sError as err:
        _fail(err)
    diff = launcher_diff(current, keys)
    where = f"ConfigMap {LAUNCHER_CONFIGMAP} in namespace {ns}"
    if not diff:
        typer.echo(f"{where} already has satk8s's settings ({settings.source}); nothing to do")
        return
    typer.echo(f"{where}: satk8s's keys, from {settings.source}")
    typer.echo(diff, nl=False)
    if dry_run:
        typer.echo("dry run: nothing applied")
        return
    if not yes and not typer.confirm("Apply these keys with a server-side apply?"):
        typer.echo("nothing applied")
        raise typer.Exit(1)
    try:
        apply_launcher(api, ns, keys)
    except Satk8sError as err:
        _fail(err)
    typer.echo(
        f"applied to {where} as field manager satk8s; check with `satk8s doctor -n {ns} "
        "--only kfp-launcher,bucket`"
    )


__all__ = ["settings_app", "setup_app"]
