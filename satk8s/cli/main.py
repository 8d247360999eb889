"""The `satk8s` command line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from satk8s.cli.cluster_cmd import settings_app, setup_app
from satk8s.cli.component_cmd import COMPONENT_SETTINGS, component
from satk8s.cli.doctor_cmd import doctor
from satk8s.cli.grid_cmd import grid_app
from satk8s.cli.pipeline_cmd import compile_cmd, run, run_local_grid
from satk8s.cli.runs_cmd import runs_app, submit
from satk8s.cli.store_cmd import store_app
from satk8s.cli.summary import fail, install_redaction, print_summary
from satk8s.errors import Satk8sError
from satk8s.steps import STEPS, Step

app = typer.Typer(
    help="satk8s: learning from saturated data, from a laptop to a GPU cluster.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
tiny_app = typer.Typer(help="The tiny embedded base model.", no_args_is_help=True)
step_app = typer.Typer(help="Run one pipeline step on store locations.", no_args_is_help=True)
app.add_typer(tiny_app, name="tiny")
app.add_typer(step_app, name="step")


@app.callback()
def _setup() -> None:
    """satk8s: learning from saturated data, from a laptop to a GPU cluster."""
    install_redaction()


def _fail(err: Exception) -> None:
    fail(err)


@tiny_app.command("build")
def tiny_build(
    out: Path = typer.Option(..., "--out", help="Directory to write the checkpoint into."),
    seed: int = typer.Option(0, help="Seed for data and initialisation."),
    set_: list[str] = typer.Option([], "--set", help="TinyBuildConfig override, key=value."),
) -> None:
    """Train the tiny Qwen3 base model from scratch on CPU and save a HF checkpoint."""
    from satk8s.config import build_config
    from satk8s.tiny import TinyBuildConfig, build_tiny_model

    try:
        config = build_config(TinyBuildConfig, [*set_, f"seed={seed}"])
        summary = build_tiny_model(out, config)
    except Satk8sError as err:
        _fail(err)
    typer.echo(json.dumps(summary, indent=2, default=str))


def _parse_inputs(items: list[str], step: Step) -> dict[str, str]:
    inputs = dict(item.split("=", 1) for item in items if "=" in item)
    allowed = set(step.inputs) | set(step.optional_inputs)
    bad = [i for i in items if "=" not in i] + sorted(set(inputs) - allowed)
    missing = sorted(set(step.inputs) - set(inputs))
    if bad or missing:
        usage = " ".join(
            [f"{n}=URI" for n in step.inputs]
            + [f"{n}=URI (optional)" for n in step.optional_inputs]
        )
        raise typer.BadParameter(
            f"step '{step.name}' takes --input {usage or '(none)'}; "
            f"unexpected: {bad or 'none'}, missing: {missing or 'none'}"
        )
    return inputs


def _register_step(step: Step) -> None:
    name = step.name

    def command(
        out: str = typer.Option(..., "--out", help="Output location (path or file://, s3://)."),
        input_: list[str] = typer.Option([], "--input", "-i", help="Input location, NAME=URI."),
        set_: list[str] = typer.Option([], "--set", help="Config override, key=value (dotted)."),
        force: bool = typer.Option(
            False,
            help="Recompute even if a finished output exists, and replace an output (finished "
            "or not) of another config at --out.",
        ),
    ) -> None:
        from satk8s.config import build_config
        from satk8s.threads import limit_threads

        inputs = _parse_inputs(input_, step)

        def run() -> dict:
            limit_threads()
            config = build_config(step.config, set_)
            return step.run(out=out, config=config, force=force, **inputs)

        print_summary(run)

    optional = f" (optional: {', '.join(step.optional_inputs)})" if step.optional_inputs else ""
    inputs = ", ".join(step.inputs) or "none"
    command.__doc__ = (
        f"{step.summary} Inputs: {inputs}{optional}. Prints the step's JSON summary alone on "
        "stdout (logs go to stderr). An --out that holds, or is being written with, another "
        "config is refused unless --force."
    )
    step_app.command(name)(command)


for _step in STEPS.values():
    _register_step(_step)


app.command("doctor")(doctor)
app.add_typer(store_app, name="store")
app.add_typer(grid_app, name="grid")
app.command("submit")(submit)
app.add_typer(runs_app, name="runs")
app.add_typer(settings_app, name="settings")
app.add_typer(setup_app, name="setup")
app.command("component", context_settings=COMPONENT_SETTINGS)(component)


grid_app.command("compile")(compile_cmd)
app.command("run")(run)


@app.command()
def demo(
    workdir: Path = typer.Option(
        Path(".demo"), help="Where the store (store/) and kfp.local's files (kfp/) go."
    ),
    force: bool = typer.Option(False, help="Recompute every step."),
) -> None:
    """The whole method on CPU with the tiny model: `satk8s run smoke --local` into WORKDIR."""
    # One thread per task (the tasks inherit it; `satk8s.threads`) even where a CPU quota would
    # allow more: as fast for the tiny model, and the numbers do not depend on the core count.
    os.environ.setdefault("SATK8S_THREADS", "1")
    run_local_grid("smoke", [], workdir / "store", workdir / "kfp", force=force)


if __name__ == "__main__":
    app()
