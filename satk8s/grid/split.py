"""A grid too large for one run, as several runs that share the store.

Why: KFP turns a pipeline into one Argo Workflow object, and Argo keeps it in etcd; Argo refuses a
workflow whose JSON (spec and node status, the status compressed when needed) exceeds
MAX_WORKFLOW_SIZE, 1 MiB by default (argoproj/argo-workflows v4.0.5, the version KFP 2.17 builds
with, workflow/packer/packer.go; https://argo-workflows.readthedocs.io/en/latest/offloading-large-workflows/:
"resources must be under 1MB"), and etcd takes no request over 1.5 MiB
(https://etcd.io/docs/latest/dev-guide/limit/). KFP 2.17's Argo compiler copies every task's spec
(its config, inputs and retry policy) and every executor's Kubernetes config into the Workflow
(kubeflow/pipelines@2.17.0:backend/src/v2/compiler/argocompiler/container.go,
containerDriverTask: the `task` argument; argo.go, saveProtoToArguments: one `kubernetes-<executor>`
argument each), so the Workflow grows with the compiled package. KFP's own database is no limit
(its spec columns are LONGTEXT: backend/src/apiserver/model/common.go).

How: the cells are cut into consecutive chunks, one run (part) each. Part 1 runs all the shared
work (staging, sampling, signals, calibration, training sets, the base evaluation), its chunk of
cells and the grid's report. Every other part runs its chunk only; each upstream node its tasks
read is an `await` task there, which computes that node's content address exactly as the node
would (`satk8s.orchestration.grid_parts`) and waits until part 1 has finished it, so no work is
done twice. Each later part publishes its evaluations' locations under
`<store>/grids/<grid id>/`; part 1's `gather` task waits for them and hands the report every
evaluation in the grid's order. Content addressing makes the split invisible to the results:
every output, the report included, lands at the address the single run would have used.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from satk8s.grid.plan import Node, Plan

SAFE_PACKAGE_BYTES = 512 * 1024
"""The most a compiled part may weigh (its pipeline and platform specs as compact JSON): half of
Argo's 1 MiB, the other half left for what KFP's Argo compiler adds per task (driver and executor
templates' arguments) and for the run's node status, which grows with every task that runs."""


@dataclass(frozen=True)
class Part:
    """One run of a split grid."""

    index: int
    """1-based; part 1 runs the shared work and the report."""
    count: int
    plan: Plan
    """The part's nodes in topological order: the awaited ones and those it runs."""
    awaited: frozenset[str]
    """Nodes another part runs, which this part waits for."""
    grid_id: str
    """Names the store folder where the parts publish their evaluations."""
    gather: tuple[str, ...] = ()
    """Part 1: every evaluation of the grid, in the report's order."""

    @property
    def name(self) -> str:
        return f"{self.plan.grid}-part-{self.index}-of-{self.count}"

    @property
    def evaluations(self) -> tuple[str, ...]:
        """The evaluate nodes this part runs (what a later part publishes)."""
        return tuple(
            n.id for n in self.plan.nodes if n.step == "evaluate" and n.id not in self.awaited
        )


def grid_id(plan: Plan) -> str:
    """A name for this compile of the grid: its name and a hash of every node."""
    nodes = [[n.id, n.step, n.config, n.inputs, n.model_from] for n in plan.nodes]
    digest = hashlib.sha256(json.dumps(nodes, sort_keys=True).encode()).hexdigest()
    return f"{plan.grid}-{digest[:16]}"


def _upstream(node: Node) -> list[str]:
    ups = [u for ids in node.inputs.values() for u in ids]
    return [*ups, node.model_from] if node.model_from else ups


def cell_nodes(plan: Plan) -> list[tuple[str, str]]:
    """(train, evaluate) node ids of every cell, in cell order: the work a part can take."""
    found = []
    for cell in plan.cells:
        evaluate = plan.node(cell.evaluate_node)
        (train,) = evaluate.inputs["model"]
        found.append((train, evaluate.id))
    return found


def split_plan(plan: Plan, parts: int) -> list[Part]:
    """`plan` cut into `parts` runs (see the module doc). The GPU lanes of the plan are shared
    out among the parts, so together they never run more GPU tasks than the cap (a part has at
    least one lane)."""
    cells = cell_nodes(plan)
    if not 1 <= parts <= len(cells):
        raise ValueError(f"cannot split {len(cells)} cells into {parts} parts")
    in_cells = {node_id for pair in cells for node_id in pair}
    chunks = [cells[len(cells) * i // parts : len(cells) * (i + 1) // parts] for i in range(parts)]
    gid = grid_id(plan)
    result = []
    for index, chunk in enumerate(chunks, start=1):
        runs = {node_id for pair in chunk for node_id in pair}
        if index == 1:
            runs |= {n.id for n in plan.nodes if n.id not in in_cells}
        needed = set(runs)
        for node in reversed(plan.nodes):  # upstream closure, walking against data order
            if node.id in needed:
                needed.update(u for u in _upstream(node) if not (index == 1 and u in in_cells))
        if index == 1:  # the report reads every evaluation through `gather`, not by copies
            needed = {n for n in needed if n in runs or n not in in_cells}
        nodes = tuple(n for n in plan.nodes if n.id in needed)
        owned_cells = {evaluate for _, evaluate in chunk}
        lanes = plan.gpu_lanes // parts + (index <= plan.gpu_lanes % parts)
        part_plan = dataclasses.replace(
            plan,
            nodes=nodes,
            cells=tuple(c for c in plan.cells if c.evaluate_node in owned_cells),
            gpu_lanes=max(1, lanes) if plan.gpu_lanes else 0,
        )
        report = next((n for n in plan.nodes if n.step == "report"), None)
        result.append(
            Part(
                index=index,
                count=parts,
                plan=part_plan,
                awaited=frozenset(needed - runs),
                grid_id=gid,
                gather=report.inputs["evaluations"] if index == 1 and report else (),
            )
        )
    return result


__all__ = ["SAFE_PACKAGE_BYTES", "Part", "cell_nodes", "grid_id", "split_plan"]
