"""`satk8s grid compile` and `satk8s run`: a grid as one Kubeflow pipeline, compiled or run here.

Importing this module stays cheap (typer only); kfp and the grid configs load when a command
runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from satk8s.grid.plan import Plan
    from satk8s.orchestration.local_run import LocalRun

OVERRIDES_HELP = (
    "Hydra overrides, e.g. seeds=[0] signals=[entropy] train.max_steps=10 "
    "compute=local_cpu store.root=s3://bucket/prefix"
)


def _fail(err: Exception | str) -> None:
    typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def compile_cmd(
    grid: str = typer.Argument(..., help="Grid name: a file under pipelines/conf/grid/."),
    overrides: list[str] | None = typer.Argument(None, help=OVERRIDES_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Pipeline YAML to write."),
    images: Path | None = typer.Option(
        None,
        "--images",
        help="Image digests file (name -> repo@sha256:…); default images/digests.json, "
        "written by `make images`.",
    ),
    settings_file: Path | None = typer.Option(
        None,
        "--settings",
        help="Cluster settings file (`satk8s settings export`) instead of reading the "
        "namespace's satk8s-settings ConfigMap with your kubeconfig.",
    ),
    namespace: str | None = typer.Option(
        None,
        "--namespace",
        "-n",
        envvar="KFP_NAMESPACE",
        help="Namespace whose satk8s-settings to read (the one runs go to). Default: "
        "$KFP_NAMESPACE, else the kubeconfig context's.",
    ),
) -> None:
    """Compile a grid into a Kubeflow pipeline YAML for the cluster (one task per
    deduplicated step run).

    The store, the Secrets the pods get, the store endpoint and the GPU pools and Kueue queues
    come from the cluster settings (the chart's satk8s-settings ConfigMap, or --settings FILE);
    a store.root=… override wins. Fails before writing anything when there is no store. A grid
    whose pipeline would exceed the safe size of one run is written as several runs (parts)
    that share the store, and FILE lists them (`satk8s submit FILE` submits them all)."""
    from satk8s.cluster.settings import load_settings
    from satk8s.errors import Satk8sError
    from satk8s.grid.cluster import load_cluster_plan
    from satk8s.pipelines.builder import compile_grid, resolve_images

    try:
        refs = resolve_images(images)  # first: a missing digests file fails before expansion
        settings = load_settings(settings_file, namespace)
        plan = load_cluster_plan(grid, overrides or [], settings)
        compiled = compile_grid(plan, out, refs)
    except Satk8sError as err:
        _fail(err)
    for note in plan.notes:
        typer.secho(f"warning: {note}", fg=typer.colors.YELLOW, err=True)
    typer.echo(
        f"compiled grid {plan.grid} for {settings.source}: {len(plan.nodes)} tasks, "
        f"{len(plan.cells)} cells"
    )
    typer.echo(f"store: {plan.store_root}")
    typer.echo(requests_summary(plan))
    if plan.gpu_lanes:
        together = sum(compiled.gpu_lanes)
        parts = f" in all {len(compiled.parts)} runs together" if len(compiled.parts) > 1 else ""
        typer.echo(f"GPU tasks: at most {together} at a time{parts} (compute.max_gpu_tasks)")
    if len(compiled.parts) > 1:
        typer.echo(
            f"split into {len(compiled.parts)} runs that share the store (each under the safe "
            "size of one run; part 1 runs the shared work and the report):"
        )
        for file, size, tasks in zip(compiled.parts, compiled.sizes, compiled.tasks, strict=True):
            typer.echo(f"  {file} ({tasks} tasks, {size / 1024:.0f} KiB)")
    typer.echo(f"wrote {compiled.path}")


def requests_summary(plan: Plan) -> str:
    """One line per role with tasks: GPUs, CPU, memory (/dev/shm in it), scratch, placement."""
    lines = ["requests per role:"]
    for role in dict.fromkeys(n.role for n in plan.nodes):
        p = plan.profiles[role]
        gpus = f"{p['accelerator_count']} GPU, " if p.get("accelerator_count") else ""
        shm = f" (shm {p['shm_size']})" if p.get("shm_size") else ""
        scratch = f", scratch {p['scratch_size']}" if p.get("scratch_size") else ""
        where = ", ".join(f"{k}={v}" for k, v in sorted((p.get("node_selector") or {}).items()))
        for term in p.get("node_affinity") or []:
            where = ", ".join(filter(None, [where, f"{term['key']} in {'|'.join(term['values'])}"]))
        queue = (p.get("pod_labels") or {}).get("kueue.x-k8s.io/queue-name")
        where += f", queue {queue}" if queue else ""
        lines.append(
            f"  {role:<15}{gpus}{p['cpu']} CPU, {p['memory']}{shm}{scratch}"
            + (f"; on {where.lstrip(', ')}" if where else "")
        )
    return "\n".join(lines)


def run(
    grid: str = typer.Argument(..., help="Grid name: a file under pipelines/conf/grid/."),
    overrides: list[str] | None = typer.Argument(None, help=OVERRIDES_HELP),
    local: bool = typer.Option(
        False, "--local", help="Run here with kfp.local (CPU, one task at a time)."
    ),
    store: str | None = typer.Option(
        None, "--store", help="Store root (path, file:// or s3://); default the grid's."
    ),
    workdir: Path = typer.Option(
        Path(".demo/kfp"), "--workdir", help="Where the compiled YAML and kfp's outputs go."
    ),
    force: bool = typer.Option(False, help="Recompute every step."),
) -> None:
    """Run a grid's compiled pipeline here with kfp.local (--local); clusters: `make submit`."""
    if not local:
        _fail(
            "only --local runs here; to run on a Kubeflow cluster use "
            f"`make submit GRID={grid}` (or `satk8s grid compile {grid} -o FILE` and "
            "`satk8s submit FILE`)"
        )
    run_local_grid(grid, overrides or [], store, workdir, force=force)


def run_local_grid(
    grid: str,
    overrides: list[str],
    store: str | Path | None,
    workdir: Path,
    force: bool = False,
) -> None:
    """Run a grid with kfp.local and print what it does while it runs and what it did."""
    from satk8s.errors import Satk8sError
    from satk8s.grid import load_plan

    try:
        plan = load_plan(grid, overrides)
    except Satk8sError as err:
        _fail(err)
    run_plan_locally(plan, _absolute(store), workdir, force=force)


def run_plan_locally(
    plan: Plan,
    store_root: str | None,
    workdir: Path,
    force: bool = False,
    console: Console | None = None,
) -> None:
    """Run `plan` with kfp.local and print, in order: one line saying what will run and about
    how long it takes, one line per finished task (a live status on a terminal), then the
    report's summary, the run's time and cache hits and where the report and logs are. A
    failed task's log tail and log path end the output, with exit code 1."""
    import dataclasses

    from rich.console import Console

    from satk8s.cli.run_progress import RunView
    from satk8s.errors import Satk8sError
    from satk8s.orchestration.local_run import LocalRunError, run_local

    # The console holds today's stdout: while kfp.local runs, sys.stdout is the task logs.
    console = console or Console(file=sys.stdout, highlight=False, emoji=False)
    from satk8s.pipelines.builder import require_store

    if store_root:
        plan = dataclasses.replace(plan, store_root=store_root)
    try:
        require_store(plan)  # before the headline, which reads the store
        console.print(headline(plan, force), soft_wrap=True, markup=False)
        with RunView(console, plan.grid, plan.nodes) as view:
            result = run_local(plan, None, workdir, force=force, progress=view)
    except LocalRunError as err:
        console.print(f"error: {err}", style="red", soft_wrap=True, markup=False)
        raise typer.Exit(1) from None
    except Satk8sError as err:
        _fail(err)
    _print_end(console, plan, result)


def headline(plan: Plan, force: bool = False) -> str:
    """What a local run of `plan` will do, and about how long it takes on the measured
    machine: `smoke: 32 tasks on CPU through kfp.local, one at a time (1 tiny, …); 0 already
    in the store; about 4m16s on 2 CPU cores.`"""
    from collections import Counter

    from satk8s.cli.run_progress import duration
    from satk8s.orchestration.local_estimate import (
        MACHINE,
        TINY_BUILD_SECONDS,
        estimate_seconds,
        finished_nodes,
        tiny_model_built,
    )
    from satk8s.steps import STEPS

    counts = Counter(n.step for n in plan.nodes)
    steps = ", ".join(f"{counts[s]} {s}" for s in STEPS if counts[s])
    finished = set() if force else finished_nodes(plan)
    text = (
        f"{plan.grid}: {len(plan.nodes)} tasks on CPU through kfp.local, one at a time "
        f"({steps}); {len(finished)} already in the store"
    )
    tiny_built = tiny_model_built(plan, finished)
    seconds = estimate_seconds(plan, finished, tiny_built)
    if seconds is not None:
        text += f"; about {duration(seconds)} on {MACHINE}"
        if not tiny_built:
            text += f", {duration(TINY_BUILD_SECONDS)} of it building the tiny model once"
    return text + "."


def _print_end(console: Console, plan: Plan, result: LocalRun) -> None:
    from satk8s.cli.run_progress import duration
    from satk8s.orchestration.local_run import report_files

    if result.report is not None and result.report.exists():
        console.print(report_summary(result.report.read_text()), markup=False, soft_wrap=True)
    computed = len(result.nodes) - result.cached
    console.print(
        f"{plan.grid}: {len(result.nodes)} tasks in {duration(result.seconds)}: {computed} "
        f"computed, {result.cached} cache hits (kfp.local adds "
        f"{result.overhead_per_task:.1f} s per task)",
        soft_wrap=True,
    )
    lines = [("logs", f"{result.logs}/ (one <task>.log per task)"), ("pipeline", result.pipeline)]
    if result.report is not None:
        html = result.report.with_suffix(".html")
        lines += [("report", result.report), ("HTML", html), ("", html.as_uri())]
    else:
        reports = [n for n in plan.nodes if n.step == "report"]
        if reports and (out := result.nodes[reports[-1].id]["out"]) and not report_files(out):
            lines.append(("report", f"{out} (report.md, report.html)"))
    for label, value in lines:
        console.print(f"{label + ':' if label else '':<9} {value}", markup=False, soft_wrap=True)


def _absolute(store: str | Path | None) -> str | None:
    from satk8s.store.uri import absolute_uri

    return absolute_uri(str(store)) if store else None


def report_summary(markdown: str) -> str:
    """The report for a terminal: the results table, saturation and calibration, without the
    long per-metric section and the figure links (they are in the HTML)."""
    kept: list[str] = []
    skipping = False
    for line in markdown.splitlines():
        if line.startswith("## "):
            skipping = line.strip() == "## More metrics"
        if not skipping and not line.startswith("!["):
            kept.append(line)
    return "\n".join(kept).strip() + "\n"


__all__ = ["compile_cmd", "headline", "report_summary", "run", "run_local_grid", "run_plan_locally"]
