"""`satk8s component STEP [ARGS...]`: one step in its container image with the GPU."""

from __future__ import annotations

import shutil
import subprocess

import typer

from satk8s.errors import Satk8sError


def component(
    ctx: typer.Context,
    step: str = typer.Argument(..., help="The step to run: prepare, generate, saturate, …"),
    args: list[str] | None = typer.Argument(
        None, help="Arguments of `satk8s step STEP` (--out, -i NAME=URI, --set k=v, --force)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the docker command, run nothing."),
    image: str | None = typer.Option(
        None,
        "--image",
        help="Image to run (default: the step's image@digest, images/digests.json).",
    ),
    store: str = typer.Option(
        ".",
        "--store",
        help="Store root: s3://… (nothing mounted) or a local directory, bind-mounted at its own "
        "path; every local --out / -i location must lie under it. Default: the current directory.",
    ),
    gpus: str = typer.Option("all", "--gpus", help="docker --gpus value for GPU steps."),
    env: list[str] = typer.Option(
        [], "--env", help="Another environment variable to forward, by NAME only (repeatable)."
    ),
    mount: list[str] = typer.Option(
        [], "--mount", help="Another local path (a model directory) to mount read-only."
    ),
    network: str | None = typer.Option(
        None, "--network", help="docker --network, e.g. host to reach a store on 127.0.0.1."
    ),
) -> None:
    """Run one step in its image (`docker run --gpus all …`) against the same store.

    Credentials are forwarded by name (`-e AWS_SECRET_ACCESS_KEY`): docker copies the values
    from this environment, so they never appear in the printed or executed command line.
    Put the step's own options after `--` if one looks like ours: `satk8s component generate
    -- --out s3://b/x -i questions=s3://b/q`.
    """
    from satk8s.orchestration.docker import component_argv, forwarded_env_names, shell_line
    from satk8s.store.redact import refuse_credentials

    try:
        refuse_credentials("--set", _overrides([*(args or []), *ctx.args]))
        argv = component_argv(
            step,
            list(args or []) + list(ctx.args),
            image,
            store,
            gpus=gpus or None,
            env_names=[*forwarded_env_names(), *env],
            mounts=mount,
            network=network,
        )
    except Satk8sError as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    if dry_run:
        typer.echo(shell_line(argv))
        return
    # The command goes to stderr when it runs, so the step's JSON summary alone is on stdout.
    typer.echo(f"+ {shell_line(argv)}", err=True)
    if shutil.which("docker") is None:
        typer.secho(
            "error: docker is not on PATH; install Docker and the NVIDIA Container Toolkit "
            "(for --gpus), or use --dry-run to print the command",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(2)
    raise typer.Exit(subprocess.run(argv, check=False).returncode)


def _overrides(args: list[str]) -> dict[str, str]:
    """The `--set key=value` settings among a step's arguments, as {key: value}."""
    found = {}
    for i, arg in enumerate(args):
        item = arg.removeprefix("--set=") if arg.startswith("--set=") else None
        if arg == "--set" and i + 1 < len(args):
            item = args[i + 1]
        if item and "=" in item:
            key, value = item.split("=", 1)
            found[key] = value
    return found


COMPONENT_SETTINGS = {"allow_extra_args": True, "ignore_unknown_options": True}
"""Click settings the command needs: the step's own options pass through untouched. Mount with
`app.command("component", context_settings=COMPONENT_SETTINGS)(component)`."""
