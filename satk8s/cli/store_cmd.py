"""`satk8s store ...`: look into the artifact store, collect garbage, mirror hub models."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from satk8s.errors import Satk8sError

store_app = typer.Typer(
    help="Inspect and clean the artifact store (file:// or s3://).", no_args_is_help=True
)
T = TypeVar("T")


def _run(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except Satk8sError as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _row(output: Any) -> dict[str, Any]:
    return {
        "uri": output.uri,
        "status": "finished" if output.finished else "unfinished",
        "step": output.step,
        "files": output.files,
        "bytes": output.bytes,
        "modified": output.modified,
    }


@store_app.command("ls")
def ls(
    root: str = typer.Argument(..., help="Store location, e.g. s3://bucket/satk8s or ./runs."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per output."),
) -> None:
    """List the step outputs under ROOT: finished or not, step, files, size, age."""
    from satk8s.store.inventory import inventory

    outputs, loose = _run(lambda: inventory(root))
    now = time.time()
    for output in outputs:
        row = _row(output)
        if as_json:
            typer.echo(json.dumps(row))
            continue
        typer.echo(
            f"{row['status']:<10} {row['step'] or '-':<14} {row['files']:>6} files "
            f"{human(row['bytes']):>10} {_age(now - row['modified']):>5}  {row['uri']}"
        )
    if not as_json:
        typer.echo(f"{len(outputs)} outputs, {len(loose)} other objects")


@store_app.command("du")
def du(
    root: str = typer.Argument(..., help="Store location."),
    as_json: bool = typer.Option(False, "--json", help="Print the totals as JSON."),
) -> None:
    """Bytes used under ROOT, by step, with unfinished outputs and other objects apart."""
    from satk8s.store.inventory import inventory

    outputs, loose = _run(lambda: inventory(root))
    totals: dict[str, dict[str, int]] = defaultdict(lambda: {"outputs": 0, "bytes": 0})
    for output in outputs:
        group = (output.step or "?") if output.finished else "(unfinished)"
        totals[group]["outputs"] += 1
        totals[group]["bytes"] += output.bytes
    if loose:
        totals["(other objects)"] = {"outputs": 0, "bytes": sum(o.size for o in loose)}
    total = sum(t["bytes"] for t in totals.values())
    if as_json:
        typer.echo(json.dumps({"root": root, "total_bytes": total, "by_step": dict(totals)}))
        return
    for group, t in sorted(totals.items()):
        typer.echo(f"{human(t['bytes']):>10}  {t['outputs']:>5} outputs  {group}")
    typer.echo(f"{human(total):>10}  total  {root}")


@store_app.command("gc")
def gc(
    root: str = typer.Argument(..., help="Store location to collect under."),
    keep: list[str] = typer.Option(
        ...,
        "--keep",
        help="A kept run's manifest, an output to "
        "keep, or a JSON file listing locations. Repeatable.",
    ),
    yes: bool = typer.Option(False, "--yes", help="Delete. Without it, only show what would go."),
    grace_hours: float = typer.Option(24.0, help="Spare outputs modified this recently."),
) -> None:
    """Delete outputs that no kept run references (a dry run unless --yes)."""
    from satk8s.store import gc as store_gc

    result = _run(lambda: store_gc.plan(root, keep, grace_hours * 3600))
    verb = "deleting" if yes else "would delete"
    for output in result.delete:
        typer.echo(f"{verb} {human(output.bytes):>10}  {output.uri}")
    for upload in result.uploads:
        typer.echo(f"{verb} incomplete upload s3://{upload['bucket']}/{upload['Key']}")
    typer.echo(
        f"keeping {len(result.keep)} referenced outputs, sparing {len(result.young)} "
        f"modified within {grace_hours:g} h"
    )
    if yes:
        _run(lambda: store_gc.execute(result))
        typer.echo(f"deleted {len(result.delete)} outputs, {human(result.bytes_freed)}")
    else:
        typer.echo(
            f"dry run: {len(result.delete)} outputs, {human(result.bytes_freed)} "
            "would be freed; pass --yes to delete"
        )


@store_app.command("stage-model")
def stage_model_cmd(
    model: str = typer.Argument(..., help="Hub id (org/name) or a local checkpoint directory."),
    store: str = typer.Option(..., "--store", help="Store root, e.g. s3://bucket/satk8s."),
    revision: str = typer.Option("main", help="Hub branch, tag or commit."),
    force: bool = typer.Option(False, help="Mirror again even if the store has it."),
) -> None:
    """Mirror a model into the store once; prints the s3:// (or file://) location to use."""
    from satk8s.store.keys import input_digest
    from satk8s.store.stage_model import (
        StageModelConfig,
        is_local_reference,
        model_uri,
        stage_model,
    )
    from satk8s.store.uri import join

    def run() -> dict[str, Any]:
        config = StageModelConfig(model=model, revision=revision)
        if is_local_reference(model):
            # By content: two different checkpoints with one directory name never collide.
            name = model.removeprefix("file://").rstrip("/").rsplit("/", 1)[-1]
            digest = input_digest(model)[:12]
            out = join(store, "models", "local", f"{name}-{digest}")
        else:
            out = model_uri(store, model, revision)
        return stage_model(out, config, force=force)

    typer.echo(json.dumps(_run(run), indent=2, default=str))
