"""Before a local run: which tasks the store already holds, and about how long the rest take.

A task's output address follows from its step, its config and its inputs' addresses (see
`addressed`), so walking the plan in data order finds every task whose output is already
finished, the way each task will find it when it runs: upstream locations joined with commas,
an upstream model replacing the config's `model` (as `pipelines/builder.py` wires them and
`component_runner` reads them). Only tasks whose every upstream is finished can be known.
"""

from __future__ import annotations

from satk8s.grid.plan import Plan

MEASURED_SECONDS: dict[str, dict[str, float]] = {
    "smoke": {
        "tiny": 4.1,
        "prepare": 0.5,
        "generate": 5.9,
        "saturate": 0.5,
        "signals": 4.7,
        "calibrate": 2.4,
        "build_dataset": 0.7,
        "train": 13.2,
        "evaluate": 9.3,
        "report": 4.1,
    }
}
"""Mean seconds of each step's own work per grid, from a `satk8s run smoke --local` on the
2-core CI machine (shared with other work; one torch thread per task; 4m16s in all); `tiny` is
the copy of an already built model. The same run took 6m42s on that machine under heavier
load: the estimate is a typical time, not a bound."""
TINY_BUILD_SECONDS = 150.0
"""Building the tiny model on that machine (once per recipe, cached under $SATK8S_CACHE)."""
TASK_OVERHEAD_SECONDS = 1.5
"""What kfp.local adds around each computed task (subprocess, imports, placeholders)."""
CACHE_HIT_SECONDS = 0.6
"""A task whose output is already in the store, all of it (an all-cached run of 32 tasks)."""
MACHINE = "2 CPU cores"


def finished_nodes(plan: Plan) -> set[str]:
    """The plan's nodes whose outputs are already finished in the plan's store."""
    from satk8s.orchestration.addressed import addressed_output
    from satk8s.steps.outputs import finished_summary

    outs: dict[str, str] = {}
    for node in plan.nodes:  # in topological order (the Plan contract)
        upstream = [*(u for ups in node.inputs.values() for u in ups), node.model_from]
        if not all(u in outs for u in upstream if u):
            continue
        config = dict(node.config)
        if node.model_from:
            config["model"] = outs[node.model_from]
        inputs = {name: ",".join(outs[u] for u in ups) for name, ups in node.inputs.items() if ups}
        out = addressed_output(node.step, plan.store_root, config, inputs)
        if finished_summary(out) is not None:
            outs[node.id] = out
    return set(outs)


def estimate_seconds(plan: Plan, finished: set[str], tiny_built: bool) -> float | None:
    """About how long a local run of `plan` takes on the measured machine, or None when the
    grid was never measured."""
    measured = MEASURED_SECONDS.get(plan.grid)
    if measured is None or any(n.step not in measured for n in plan.nodes):
        return None
    seconds = 0.0 if tiny_built else TINY_BUILD_SECONDS
    for node in plan.nodes:
        if node.id in finished:
            seconds += CACHE_HIT_SECONDS
        else:
            seconds += measured[node.step] + TASK_OVERHEAD_SECONDS
    return seconds


def tiny_model_built(plan: Plan, finished: set[str]) -> bool:
    """Whether no tiny model needs training: the plan has none, its tiny tasks are finished in
    the store, or the build cache holds their recipe (this check imports torch)."""
    pending = [n for n in plan.nodes if n.step == "tiny" and n.id not in finished]
    if not pending:
        return True
    from satk8s.config import build_config
    from satk8s.tiny.build import config_hash, is_finished
    from satk8s.tiny.cache import default_cache_root
    from satk8s.tiny.config import TinyBuildConfig

    return all(
        is_finished(
            default_cache_root() / config_hash(build_config(TinyBuildConfig, base=n.config))
        )
        for n in pending
    )


__all__ = [
    "MACHINE",
    "TINY_BUILD_SECONDS",
    "estimate_seconds",
    "finished_nodes",
    "tiny_model_built",
]
