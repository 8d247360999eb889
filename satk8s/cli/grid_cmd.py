"""`satk8s grid ...`: experiment grids (Hydra configs under pipelines/conf) and their DAG.

Importing this module stays cheap (typer only): composing and expanding a grid loads the step
config modules, which happens when a command runs.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from satk8s.grid.cost import RoleCost, Throughput
    from satk8s.grid.plan import Plan

grid_app = typer.Typer(
    help="Experiment grids: Hydra configs expanded into one pipeline DAG.",
    no_args_is_help=True,
)

OVERRIDES_HELP = (
    "Hydra overrides, e.g. seeds=[0] signals=[entropy] train.max_steps=10 "
    "model=tiny compute=local_cpu store.root=s3://bucket/prefix"
)


def _fail(err: Exception) -> None:
    typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def gpu_roles(plan: Plan) -> set[str]:
    """Roles whose compute profile asks for accelerators."""
    return {role for role, p in plan.profiles.items() if p.get("accelerator_count", 0) > 0}


def step_counts(plan: Plan) -> dict[str, Any]:
    """Step runs per step, deduplicated (this plan) vs naive (one pipeline per cell), in step
    order, with the totals and the GPU step runs (nodes whose role has accelerators)."""
    from satk8s.steps import STEPS

    gpu = gpu_roles(plan)
    dedup: dict[str, int] = {}
    for node in plan.nodes:
        dedup[node.step] = dedup.get(node.step, 0) + 1
    steps = {
        step: {
            "deduplicated": dedup.get(step, 0),
            "naive": sum(plan.naive_counts.get(step, {}).values()),
        }
        for step in STEPS
        if step in dedup or step in plan.naive_counts
    }
    return {
        "steps": steps,
        "total": {"deduplicated": len(plan.nodes), "naive": plan.naive_step_count},
        "gpu_steps": {
            "deduplicated": sum(node.role in gpu for node in plan.nodes),
            "naive": sum(
                n for roles in plan.naive_counts.values() for r, n in roles.items() if r in gpu
            ),
        },
    }


def _cell_groups(plan: Plan) -> list[tuple[str, str, list[int]]]:
    """(signal, algorithm, seeds) in cell order."""
    groups: dict[tuple[str, str], list[int]] = {}
    for cell in plan.cells:
        groups.setdefault((cell.signal, cell.algorithm), []).append(cell.seed)
    return [(signal, algorithm, seeds) for (signal, algorithm), seeds in groups.items()]


def _table(plan: Plan, counts: dict[str, Any]) -> str:
    lines = [
        f"grid {plan.grid}: {len(plan.cells)} cells (signal x algorithm x seed), "
        f"store {plan.store_root or '(the cluster store of satk8s-settings)'}",
        "",
        f"  {'signal':<14}{'algorithm':<16}seeds",
    ]
    for signal, algorithm, seeds in _cell_groups(plan):
        lines.append(f"  {signal:<14}{algorithm:<16}{', '.join(map(str, seeds))}")
    lines += ["", f"  {'step runs':<16}{'deduplicated':>14}{'naive':>8}"]
    rows = [
        *counts["steps"].items(),
        ("total", counts["total"]),
        ("GPU steps", counts["gpu_steps"]),
    ]
    for name, row in rows:
        if name == "total":
            lines.append(f"  {'-' * 38}")
        lines.append(f"  {name:<16}{row['deduplicated']:>14}{row['naive']:>8}")
    return "\n".join(lines)


def gpu_hours_payload(costs: list[RoleCost], throughput: Throughput) -> dict[str, Any]:
    """The GPU-hour estimate as JSON data: per GPU role and in total."""
    roles = {
        c.role: {
            "tasks": c.tasks,
            "gpus_per_task": c.gpus_per_task,
            "tokens": round(c.tokens),
            "deduplicated": round(c.gpu_hours, 3),
            "naive": round(c.naive_gpu_hours, 3),
            "unknown_models": list(c.unknown_models),
            "does_not_fit": list(c.too_big),
        }
        for c in costs
        if c.tasks
    }
    total = {
        "deduplicated": round(sum(c.gpu_hours for c in costs), 3),
        "naive": round(sum(c.naive_gpu_hours for c in costs), 3),
    }
    return {"gpu": throughput.gpu.name, "source": throughput.source, "roles": roles, "total": total}


def _hours_table(payload: dict[str, Any]) -> str:
    if not payload["roles"]:
        return "  GPU-hours: none (no role of this grid's compute profile asks for a GPU)"
    lines = [
        f"  GPU-hours on {payload['gpu']} (ESTIMATES, not measurements)",
        f"  {'role':<16}{'tasks':>6}{'GPUs':>6}{'tokens':>10}{'deduplicated':>14}{'naive':>8}",
    ]
    for role, row in payload["roles"].items():
        lines.append(
            f"  {role:<16}{row['tasks']:>6}{row['gpus_per_task']:>6}"
            f"{row['tokens'] / 1e6:>9.1f}M{row['deduplicated']:>14.1f}{row['naive']:>8.1f}"
        )
        if row["unknown_models"]:
            lines.append(
                f"    model size unknown, overhead only: {', '.join(row['unknown_models'])}"
            )
        if row["does_not_fit"]:
            fits = f"{row['gpus_per_task']} x {payload['gpu']}"
            lines.append(f"    does not fit in {fits}: {', '.join(row['does_not_fit'])}")
    total = payload["total"]
    lines += [
        f"  {'-' * 60}",
        f"  {'total':<38}{total['deduplicated']:>14.1f}{total['naive']:>8.1f}",
    ]
    notes = (
        f"speed: {payload['source']}",
        "tokens: upper bounds from the grid's limits (every sample runs to max_new_tokens, "
        "every pool question saturated, every training row fills max_length)",
    )
    lines += [
        textwrap.fill(n, 100, initial_indent="  ", subsequent_indent="    ", break_on_hyphens=False)
        for n in notes
    ]
    return "\n".join(lines)


@grid_app.command("show")
def show(
    grid: str = typer.Argument(..., help="Grid name: a file under pipelines/conf/grid/."),
    overrides: list[str] | None = typer.Argument(None, help=OVERRIDES_HELP),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    gpu: str = typer.Option(
        "h100-80gb",
        help="GPU type for the GPU-hour estimate (one with NVIDIA datasheet figures in "
        "satk8s/cluster/gpus.yaml): h100-80gb, h200-141gb, a100-80gb, a100-40gb, l40s, l4, b200.",
    ),
    throughput_file: Path | None = typer.Option(
        None, "--throughput", help="JSON written by benchmarks/gpu.py: measured tokens/s."
    ),
) -> None:
    """Show a grid's cells, its step runs and its estimated GPU-hours per role: deduplicated in
    one DAG vs one pipeline per cell."""
    from satk8s.errors import Satk8sError
    from satk8s.grid import load_plan
    from satk8s.grid.cost import gpu_hours, load_throughput

    try:
        plan = load_plan(grid, overrides or [])
        throughput = load_throughput(gpu, throughput_file)
    except Satk8sError as err:
        _fail(err)
    for note in plan.notes:
        typer.secho(f"warning: {note}", fg=typer.colors.YELLOW, err=True)
    counts = step_counts(plan)
    hours = gpu_hours_payload(gpu_hours(plan, throughput), throughput)
    if not as_json:
        typer.echo(_table(plan, counts) + "\n\n" + _hours_table(hours))
        return
    cells = [
        {
            "signal": c.signal,
            "algorithm": c.algorithm,
            "seed": c.seed,
            "evaluate_node": c.evaluate_node,
        }
        for c in plan.cells
    ]
    nodes = [{"id": n.id, "step": n.step, "role": n.role} for n in plan.nodes]
    payload = {"grid": plan.grid, "store_root": plan.store_root, "cells": cells, **counts}
    payload["gpu_hours"] = hours
    typer.echo(json.dumps({**payload, "nodes": nodes}, indent=2))
