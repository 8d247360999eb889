"""`satk8s grid compile` and `satk8s run`: a grid as one Kubeflow pipeline, compiled or run here.

Importing this module stays cheap (typer only); kfp and the grid configs load when a command
runs.
"""

from __future__ import annotations

from pathlib import Path

import typer

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
    """Compile a grid into one Kubeflow pipeline YAML for the cluster (one task per
    deduplicated step run).

    The store, the Secrets the pods get and the store endpoint come from the cluster settings
    (the chart's satk8s-settings ConfigMap, or --settings FILE); a store.root=… override wins.
    Fails before writing anything when there is no store."""
    from satk8s.cluster.settings import load_settings
    from satk8s.errors import Satk8sError
    from satk8s.grid.cluster import load_cluster_plan
    from satk8s.pipelines.builder import compile_plan, resolve_images

    try:
        refs = resolve_images(images)  # first: a missing digests file fails before expansion
        settings = load_settings(settings_file, namespace)
        plan = load_cluster_plan(grid, overrides or [], settings)
        path = compile_plan(plan, out, refs)
    except Satk8sError as err:
        _fail(err)
    typer.echo(
        f"compiled grid {plan.grid} for {settings.source}: {len(plan.nodes)} tasks, "
        f"{len(plan.cells)} cells"
    )
    typer.echo(f"store: {plan.store_root}")
    typer.echo(f"wrote {path}")


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
    """Run a grid with kfp.local and print what it did, the report's summary and its path."""
    from satk8s.errors import Satk8sError
    from satk8s.grid import load_plan
    from satk8s.orchestration.local_run import report_files, run_local

    try:
        plan = load_plan(grid, overrides)
        result = run_local(plan, _absolute(store), workdir, force=force)
    except Satk8sError as err:
        _fail(err)
    cached = sum(bool(n["cached"]) for n in result.nodes.values())
    if result.report is not None and result.report.exists():
        typer.echo(report_summary(result.report.read_text()))
    typer.echo(
        f"grid {plan.grid}: {len(result.nodes)} steps ({cached} cached) in {result.seconds:.1f}s; "
        f"kfp.local overhead {result.overhead_per_task:.2f}s per task"
    )
    typer.echo(f"pipeline: {result.pipeline}")
    if result.report is not None:
        typer.echo(f"report: {result.report}")
        typer.echo(f"report (HTML): {result.report.with_suffix('.html')}")
    else:
        reports = [n for n in plan.nodes if n.step == "report"]
        if reports and (out := result.nodes[reports[-1].id]["out"]) and not report_files(out):
            typer.echo(f"report: {out} (report.md, report.html)")


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


__all__ = ["compile_cmd", "report_summary", "run", "run_local_grid"]
