"""`satk8s submit` and `satk8s runs …`: a compiled pipeline on a Kubeflow Pipelines server.

Settings come from the environment (KFP_HOST, KFP_TOKEN, KFP_NAMESPACE, KFP_EXPERIMENT,
KFP_PIPELINE_ROOT, KFP_UI_URL; see satk8s.orchestration.kfp_client).
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
) -> None:
    """Submit a compiled pipeline to the KFP server at $KFP_HOST; print its run id and link."""
    from satk8s.orchestration.kfp_client import KfpSettings
    from satk8s.orchestration.kfp_client import submit as submit_run

    arguments = _parse_args(arg)
    run = _run(lambda: submit_run(package, KfpSettings.from_env(), run_name, arguments))
    typer.echo(f"run id:     {run.run_id}")
    typer.echo(f"run name:   {run.run_name}")
    typer.echo(f"experiment: {run.experiment}")
    typer.echo(f"url:        {run.url}")


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


def _print_run(run: RunInfo) -> None:
    for label in ("run_id", "name", "state", "created_at", "finished_at", "error", "url"):
        value = getattr(run, label)
        if value:
            typer.echo(f"{label + ':':<13}{value}")


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
