"""`satk8s submit` and `satk8s runs …`: a compiled pipeline on a Kubeflow Pipelines server.

Settings come from the environment (KFP_HOST, KFP_TOKEN, KFP_NAMESPACE, KFP_EXPERIMENT,
KFP_PIPELINE_ROOT, KFP_UI_URL; see satk8s.orchestration.kfp_client). The account runs execute
as comes from the namespace's cluster settings (satk8s.cluster.settings) unless given.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypeVar

import typer

from satk8s.errors import Satk8sError

if TYPE_CHECKING:
    from satk8s.orchestration.kfp_client import RunInfo

runs_app = typer.Typer(
    help="Watch pipeline runs on the Kubeflow Pipelines server at $KFP_HOST.",
    no_args_is_help=True,
)
T = TypeVar("T")


def _fail(err: Exception) -> NoReturn:
    typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _run(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except Satk8sError as err:
        _fail(err)


def _parse_args(items: list[str]) -> dict[str, str]:
    bad = [item for item in items if "=" not in item or not item.split("=", 1)[0]]
    if bad:
        raise typer.BadParameter(f"expected NAME=VALUE, got {bad[0]!r}", param_hint="--arg")
    return dict(item.split("=", 1) for item in items)


def submit(
    package: Path = typer.Argument(..., help="Compiled pipeline YAML (`satk8s grid compile`)."),
    run_name: str | None = typer.Option(
        None, "--run-name", help="Run name in the UI (default: pipeline name and UTC time)."
    ),
    arg: list[str] = typer.Option(
        [], "--arg", help="Pipeline parameter, NAME=VALUE (converted to its declared type)."
    ),
    service_account: str | None = typer.Option(
        None,
        "--service-account",
        help="ServiceAccount the run executes as. Default: serviceAccount of the namespace's "
        "satk8s-settings (the chart's satk8s-runner).",
    ),
    settings_file: Path | None = typer.Option(
        None,
        "--settings",
        help="Cluster settings file (`satk8s settings export`) instead of reading "
        "satk8s-settings from $KFP_NAMESPACE with your kubeconfig.",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the exact request (secrets masked); send nothing."
    ),
) -> None:
    """Submit a compiled pipeline to the KFP server at $KFP_HOST; print its run id and link.

    The run executes as the namespace's run ServiceAccount (satk8s-settings' serviceAccount,
    or --service-account). A KFP backend older than 2.15 is refused. A split grid's parts list
    (`satk8s grid compile` of a grid too large for one run) submits every part, part 1 (the
    shared work and the report) first."""
    import dataclasses

    from satk8s.orchestration.grid_parts import read_parts
    from satk8s.orchestration.kfp_client import KfpSettings, prepare_submit, send

    arguments = _parse_args(arg)
    settings = _run(KfpSettings.from_env)
    packages = _run(lambda: read_parts(package))
    count = len(packages)
    # Every package, its arguments and the host are checked before the cluster is asked.
    requests = []
    for index, part in enumerate(packages, start=1):
        name = f"{run_name} (part {index} of {count})" if run_name and count > 1 else run_name
        requests.append(
            _run(lambda p=part, n=name: prepare_submit(p, settings, n, arguments, service_account))
        )
    if not service_account:
        account = _run(lambda: _runner_account(settings_file, settings.namespace))
        requests = [dataclasses.replace(r, service_account=account) for r in requests]
    if dry_run:
        typer.echo(f"dry run: nothing sent to {requests[0].host}")
        for index, request in enumerate(requests, start=1):
            if count > 1:
                typer.echo(f"part {index} of {count}:")
            typer.echo(request.describe(settings))
        return
    for index, request in enumerate(requests, start=1):
        run = _run(lambda r=request: send(r, settings))
        for note in run.notes:
            typer.secho(f"warning: {note}", fg=typer.colors.YELLOW, err=True)
        if index == 1:
            typer.echo(f"run id:     {run.run_id}")
            typer.echo(f"run name:   {run.run_name}")
            typer.echo(f"experiment: {run.experiment}")
            typer.echo(f"runs as:    {run.service_account}")
            typer.echo(f"url:        {run.url}")
            if count > 1:
                typer.echo(f"part 1 of {count}: the shared work and the report (the run above)")
        else:
            typer.echo(f"part {index} of {count}: {run.run_id}  {run.url}")


def _runner_account(settings_file: Path | None, namespace: str) -> str:
    from satk8s.cluster.settings import ClusterSettingsError, load_settings

    try:
        return load_settings(settings_file, namespace).service_account
    except ClusterSettingsError as err:
        raise ClusterSettingsError(
            f"{err}; or name the run account with --service-account (without one, KFP runs "
            "the pipeline as its default runner, which has none of the chart's identity, "
            "pull secrets or RBAC)"
        ) from None


@runs_app.command("list")
def list_cmd(
    limit: int = typer.Option(20, "--limit", min=1, help="How many runs, newest first."),
) -> None:
    """The newest runs in $KFP_EXPERIMENT (default satk8s): id, state, created, name."""
    from satk8s.orchestration.kfp_client import KfpSettings, list_runs

    settings = _run(KfpSettings.from_env)
    runs = _run(lambda: list_runs(settings, limit=limit))
    if not runs:
        typer.echo(f"no runs in experiment '{settings.experiment}' at {settings.host}")
        return
    for run in runs:
        typer.echo(f"{run.run_id}  {run.state:<10}  {run.created_at:<25}  {run.name}")


@runs_app.command("status")
def status_cmd(
    run_id: str = typer.Argument(..., help="The run id `satk8s submit` printed."),
) -> None:
    """One run's state, times, error message and UI link."""
    from satk8s.orchestration.kfp_client import KfpSettings, run_status

    run = _run(lambda: run_status(run_id, KfpSettings.from_env()))
    _print_run(run)
    _print_report(run)


def _print_run(run: RunInfo) -> None:
    for label in ("run_id", "name", "state", "created_at", "finished_at", "error", "url"):
        value = getattr(run, label)
        if value:
            typer.echo(f"{label + ':':<13}{value}")
    if run.service_account:
        typer.echo(f"{'runs as:':<13}{run.service_account}")


def _print_report(run: RunInfo) -> None:
    """The report's store paths, whether or not the Kubeflow UI can show it (on multi-user
    KFP the UI reads artifacts with its own credentials)."""
    from satk8s.orchestration.run_report import find_report

    if not run.store_root:
        return
    typer.echo(f"{'store:':<13}{run.store_root}")
    if not run.report_config:
        return
    report = find_report(run.store_root, run.report_config)
    if report.output:
        for label, path in zip(("report:", "report HTML:"), report.files(), strict=True):
            typer.echo(f"{label:<13}{path}")
    else:
        typer.echo(f"{'report:':<13}under {report.prefix} ({report.note})")


@runs_app.command("wait")
def wait_cmd(
    run_id: str = typer.Argument(..., help="The run id `satk8s submit` printed."),
    timeout: float | None = typer.Option(
        None, "--timeout", min=0, help="Give up after this many seconds (default: never)."
    ),
    poll: float = typer.Option(10.0, "--poll", min=0, help="Seconds between state checks."),
) -> None:
    """Wait until a run finishes; exit 0 if it succeeded, 1 if it did not.

    Each state change goes to stderr. Exit 1 covers failed, skipped and cancelled runs; exit 2
    a timeout or a server that cannot be reached.
    """
    from satk8s.orchestration.kfp_client import KfpSettings, wait_for_run

    def progress(run: RunInfo) -> None:
        typer.echo(f"{run_id}: {run.state}", err=True)

    run = _run(
        lambda: wait_for_run(
            run_id, KfpSettings.from_env(), timeout=timeout, poll=poll, on_change=progress
        )
    )
    _print_run(run)
    if not run.succeeded:
        raise typer.Exit(1)


@runs_app.command("watch")
def watch_cmd(
    run_id: str = typer.Argument(..., help="The run id `satk8s submit` printed."),
    timeout: float | None = typer.Option(
        None, "--timeout", min=0, help="Give up after this many seconds (default: never)."
    ),
    poll: float = typer.Option(10.0, "--poll", min=0, help="Seconds between state checks."),
) -> None:
    """Follow a run task by task until it finishes; exit 0 if it succeeded, 1 if it did not.

    Prints each task's state as it changes (pending, running, succeeded, cached, failed), then
    every failed task's pod and the commands that show its log, and the run's UI link. Exit 2
    on a timeout or a server that cannot be reached.
    """
    import sys

    from rich.console import Console

    from satk8s.cli.watch_view import watch
    from satk8s.orchestration.kfp_client import KfpSettings

    settings = _run(KfpSettings.from_env)
    console = Console(file=sys.stdout, highlight=False, emoji=False)
    last = _run(lambda: watch(run_id, settings, timeout, poll, console))
    if not last.run.succeeded:
        raise typer.Exit(1)
