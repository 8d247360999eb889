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
        "tiny": 3.8,
        "prepare": 0.5,
        "generate": 5.5,
        "saturate": 0.4,
        "signals": 3.4,
        "calibrate": 1.1,
        "build_dataset": 0.4,
        "train": 7.6,
        "evaluate": 4.5,
        "report": 1.2,
    }
}
"""Mean seconds of each step's own work per grid, from a `satk8s demo` (the `smoke` grid, 52
tasks) on the 2-core development machine (one thread per task, other work sharing the cores;
4m03s in all, 0.8 s of kfp.local per task); `tiny` is the copy of the shipped checkpoint. A
loaded machine takes longer: the estimate is a typical time, not a bound."""
TINY_BUILD_SECONDS = 180.0
"""Building a tiny model of another recipe than the shipped one on that machine (once per
recipe, cached under $SATK8S_CACHE)."""
TASK_OVERHEAD_SECONDS = 1.0
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
    the store, their recipe is the shipped checkpoint's, or the build cache holds it (this check
    imports torch)."""
    pending = [n for n in plan.nodes if n.step == "tiny" and n.id not in finished]
    if not pending:
        return True
    from satk8s.config import build_config
    from satk8s.tiny.build import config_hash, is_finished, shipped_for
    from satk8s.tiny.cache import default_cache_root
    from satk8s.tiny.config import TinyBuildConfig

    configs = [build_config(TinyBuildConfig, base=n.config) for n in pending]
    return all(
        shipped_for(c) is not None or is_finished(default_cache_root() / config_hash(c))
        for c in configs
    )


__all__ = [
    "MACHINE",
    "TINY_BUILD_SECONDS",
    "estimate_seconds",
    "finished_nodes",
    "tiny_model_built",
]
