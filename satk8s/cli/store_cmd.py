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
        from satk8s.cli.summary import fail

        fail(err)
        raise  # not reached: fail exits


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
        "status": output.status,
        "step": output.step,
        "files": output.files,
        "bytes": output.bytes,
        "scratch_bytes": output.scratch_bytes,
        "modified": output.modified,
        "problems": output.problems,
    }


@store_app.command("ls")
def ls(
    root: str = typer.Argument(..., help="Store location, e.g. s3://bucket/satk8s or ./runs."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per output."),
    verify: bool = typer.Option(
        False, "--verify", help="Also check every file's sha256 (reads every byte)."
    ),
) -> None:
    """List the step outputs under ROOT: status (finished, damaged, writing, unfinished),
    step, files, size, age. Finished means every file the manifest lists is there with its
    size (and, with --verify, its sha256)."""
    from satk8s.store.inventory import inventory

    outputs, loose = _run(lambda: inventory(root, verify=verify))
    now = time.time()
    for output in outputs:
        row = _row(output)
        if as_json:
            typer.echo(json.dumps(row))
            continue
        scratch = f" (+{human(row['scratch_bytes'])} scratch)" if row["scratch_bytes"] else ""
        typer.echo(
            f"{row['status']:<10} {row['step'] or '-':<14} {row['files']:>6} files "
            f"{human(row['bytes']):>10} {_age(now - row['modified']):>5}  {row['uri']}{scratch}"
        )
        for problem in row["problems"][:5]:
            typer.echo(f"{'':<11}{problem}")
    if not as_json:
        damaged = sum(o.status == "damaged" for o in outputs)
        note = f"; {damaged} damaged: rerun their steps with --force" if damaged else ""
        typer.echo(f"{len(outputs)} outputs, {len(loose)} other objects{note}")


@store_app.command("du")
def du(
    root: str = typer.Argument(..., help="Store location."),
    as_json: bool = typer.Option(False, "--json", help="Print the totals as JSON."),
) -> None:
    """Bytes used under ROOT, by step, with unfinished outputs, writers' scratch and other
    objects apart."""
    from satk8s.store.inventory import inventory

    outputs, loose = _run(lambda: inventory(root))
    totals: dict[str, dict[str, int]] = defaultdict(lambda: {"outputs": 0, "bytes": 0})
    for output in outputs:
        group = (output.step or "?") if output.finished else f"({output.status})"
        totals[group]["outputs"] += 1
        totals[group]["bytes"] += output.bytes
        if output.scratch_bytes:
            totals["(scratch)"]["bytes"] += output.scratch_bytes
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
    """Delete outputs that no kept run references (a dry run unless --yes). Outputs a live
    writer is writing are never deleted."""
    from satk8s.store import gc as store_gc

    result = _run(lambda: store_gc.plan(root, keep, grace_hours * 3600))
    verb = "deleting" if yes else "would delete"
    for output in result.delete:
        typer.echo(f"{verb} {human(output.total_bytes):>10}  {output.uri}")
    for output in result.busy:
        typer.echo(f"sparing (being written) {output.uri}")
    for upload in result.uploads:
        typer.echo(f"{verb} incomplete upload s3://{upload['bucket']}/{upload['Key']}")
    typer.echo(
        f"keeping {len(result.keep)} referenced outputs, sparing {len(result.young)} "
        f"modified within {grace_hours:g} h and {len(result.busy)} being written"
    )
    if yes:
        spared = _run(lambda: store_gc.execute(result))
        for output in spared:
            typer.echo(f"sparing (being written) {output.uri}")
        freed = sum(o.total_bytes for o in result.delete if o not in spared)
        typer.echo(f"deleted {len(result.delete) - len(spared)} outputs, {human(freed)}")
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
    """Mirror a model into the store once; prints the s3:// (or file://) location to use (in
    its JSON summary, alone on stdout). A bad reference fails before anything is written."""
    from satk8s.cli.summary import print_summary
    from satk8s.store.model_identity import describe_model
    from satk8s.store.stage_model import (
        StageModelConfig,
        is_local_reference,
        local_model_dir,
        model_uri,
        stage_model,
    )
    from satk8s.store.uri import join

    def run() -> dict[str, Any]:
        config = StageModelConfig(model=model, revision=revision)
        if is_local_reference(model):
            # By content: two different checkpoints with one directory name never collide.
            name = local_model_dir(model).name
            digest = str(describe_model(model)["identity"])[:12]
            out = join(store, "models", "local", f"{name}-{digest}")
        else:
            out = model_uri(store, model, revision)
        return stage_model(out, config, force=force)

    print_summary(run)
