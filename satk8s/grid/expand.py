"""Expand a grid into one static DAG (`Plan`) in which shared upstream work appears once.

Nodes, in topological order:

    tiny (tiny model) or stage-model (a hub model) -> prepare -> generate -> saturate
    -> signal-<s> for every cell signal, the controls signal-random, signal-length and
       signal-logprob, signal-external_judge
    -> calibrate -> evaluate-base
    -> per cell: dataset-<algorithm>-<signal>, train-<algorithm>-<signal>-s<seed>,
       evaluate-<algorithm>-<signal>-s<seed>
    -> report

Every node's config is the step's resolved config (`resolve_config`), so a bad step setting
fails here, before anything is compiled, with its dotted path in the grid. Nodes are
deduplicated generically: two nodes with the same step, config, inputs and model_from are one
node (the later id becomes an alias of the first). That is how a training set serves every
seed: BuildConfig's seed only breaks ties between equal scores, so the dataset is a function of
the kept solutions and the scores alone, and only train/evaluate vary with the cell's seed.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import typing
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from satk8s.errors import ConfigError
from satk8s.grid.config import (
    CONTROLS,
    EXTERNAL_JUDGE,
    NO_SIGNAL,
    RANDOM,
    ComputeProfile,
    GridConfig,
    load_grid,
)
from satk8s.grid.plan import ROLES, Cell, Node, Plan
from satk8s.store.uri import absolute_uri

UPSTREAM_MODEL = "<tiny>"
"""`model` of a node whose model comes from the `tiny` node (`Node.model_from`): replaced by
that node's output location at run time, before the node's address is computed."""
STAGED_MODEL = "<staged>"
"""`model` of a node whose model comes from the `stage-model` node, replaced the same way."""

TINY = "tiny"
STAGE = "stage-model"
"""The node that mirrors a hub model into the store: the only task that names the hub id."""


def profile_dict(grid: GridConfig, role: str) -> dict[str, Any]:
    """The compute profile of `role` as the pipeline builder reads it (`Plan.profiles[role]`):

    {
      "accelerator_type": "nvidia.com/gpu",   # "" when accelerator_count is 0
      "accelerator_count": 1,                 # per pod; 0 = CPU step
      "cpu": "8", "memory": "64Gi",           # request and limit, Kubernetes quantities
      "node_selector": {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"},
      "node_affinity": [{"key": "node.kubernetes.io/instance-type", "operator": "In",
                         "values": ["g5.2xlarge", "g5.12xlarge"]}],   # all must hold
      "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "value": "",
                       "effect": "NoSchedule"}],
      "shm_size": "2Gi",                      # memory-backed /dev/shm; "" = none
      "scratch_size": "49Gi",                 # /scratch; "" = none
      "scratch_storage_class": "",            # "": an emptyDir; else a generic ephemeral volume
      "secrets": [{"secret": "team-a-s3", "optional": true,   # the settings' s3Secret
                   "env": {"AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID", ...}}],
      "config_maps": [{"config_map": "my-settings", "optional": true,
                       "env": {"someKey": "SOME_ENV_VAR"}}],
      "env": {"SATK8S_S3_REGION": "eu-west-1"},  # plain environment variables
      "pod_labels": {"kueue.x-k8s.io/queue-name": "satk8s-h100"},  # Kueue's labels
      "retries": 2, "backoff_duration": "60s", "backoff_factor": 2.0,
      "backoff_max_duration": "3600s",
    }

    `secrets` is the compute config's shared_secrets followed by the role's own; env maps a
    Secret (ConfigMap) key to the environment variable the step reads it from."""
    profile: ComputeProfile = getattr(grid.compute, role)
    data = dataclasses.asdict(profile)
    data["secrets"] = [dataclasses.asdict(s) for s in grid.compute.shared_secrets] + data["secrets"]
    data["config_maps"] = [dataclasses.asdict(c) for c in grid.compute.config_maps]
    data["env"] = dict(sorted(grid.compute.env.items()))
    data["scratch_storage_class"] = grid.compute.scratch_storage_class
    return json.loads(json.dumps(data))


# ----------------------------------------------------------------------------- step configs


@cache
def _dict_fields(config_class: type) -> tuple[tuple[tuple[str, ...], dict[str, Any]], ...]:
    """(path, default) of every plain-dict field of a step config, nested configs included."""
    found: list[tuple[tuple[str, ...], dict[str, Any]]] = []
    hints = typing.get_type_hints(config_class)
    for f in dataclasses.fields(config_class):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            found += [((f.name, *path), d) for path, d in _dict_fields(kind)]  # type: ignore[arg-type]
        elif kind is dict or typing.get_origin(kind) is dict:
            default = (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            )
            found.append(((f.name,), dict(default or {})))
    return tuple(found)


def _replace_dicts(step: str, settings: dict[str, Any]) -> dict[str, Any]:
    """A dict-valued setting (level counts, mix shares) replaces the default dict: keys it leaves
    out are set to 0, because `resolve_config` merges dicts and would keep them."""
    from satk8s.steps import STEPS

    settings = copy.deepcopy(settings)
    for path, default in _dict_fields(STEPS[step].config):
        parent: Any = settings
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        given = parent.get(path[-1]) if isinstance(parent, dict) else None
        if isinstance(given, dict):
            for key, value in default.items():
                if key not in given and isinstance(value, int | float):
                    given[key] = type(value)(0)
    return settings


@cache
def _resolve_cached(step: str, settings_json: str) -> str:
    from satk8s.orchestration.addressed import resolve_config

    return json.dumps(resolve_config(step, json.loads(settings_json)))


Part = tuple[str, str, Any]
"""(dotted path in the step config, dotted path in the grid, value): one source of settings."""


def _merge_into(target: dict[str, Any], layer: Mapping[str, Any]) -> None:
    for key, value in layer.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge_into(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _merge(parts: Sequence[Part]) -> dict[str, Any]:
    """The parts' settings merged in order (dicts merge, everything else is replaced)."""
    merged: dict[str, Any] = {}
    for step_path, _, value in parts:
        layer: Any = value
        for key in reversed(step_path.split(".") if step_path else []):
            layer = {key: layer}
        _merge_into(merged, layer)
    return merged


def _has_path(value: Any, path: list[str]) -> bool:
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return False
        value = value[key]
    return True


def _grid_field(field_name: str, parts: Sequence[Part]) -> str:
    """The grid path a step config field came from: the last part that sets it."""
    if field_name == "?":  # OmegaConf could not say which field: blame the main settings
        return parts[0][1]
    steps = field_name.split(".")
    best = None
    for step_path, grid_path, value in reversed(parts):
        prefix = step_path.split(".") if step_path else []
        if steps[: len(prefix)] != prefix:
            continue
        rest = steps[len(prefix) :]
        located = ".".join([grid_path, *rest]) if rest else grid_path
        if not rest or _has_path(value, rest):
            return located
        if best is None or len(prefix) > best[0]:
            best = (len(prefix), located)
    return best[1] if best else parts[0][1]


def resolve_node_config(step: str, node_id: str, parts: Sequence[Part]) -> dict[str, Any]:
    """The step's resolved config from these settings; a ConfigError names the grid field."""
    settings = _replace_dicts(step, _merge(parts))
    try:
        return json.loads(_resolve_cached(step, json.dumps(settings, sort_keys=True)))
    except ConfigError as err:
        message = str(err).split(": ", 1)[1]
        raise ConfigError(_grid_field(err.field, parts), f"{message} (node '{node_id}')") from None


# ----------------------------------------------------------------------------- the DAG


class _Dag:
    """Nodes in insertion (topological) order, deduplicated by content."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.alias: dict[str, str] = {}
        self._by_content: dict[str, str] = {}

    def add(
        self,
        node_id: str,
        step: str,
        role: str,
        config: dict[str, Any],
        inputs: Mapping[str, Sequence[str]] | None = None,
        model_from: str | None = None,
    ) -> str:
        """Add a node unless an identical one exists; returns the id to read it by."""
        mapped = {
            name: tuple(dict.fromkeys(self.alias.get(i, i) for i in ids))
            for name, ids in (inputs or {}).items()
        }
        model_from = self.alias.get(model_from, model_from) if model_from else None
        content = json.dumps([step, config, mapped, model_from], sort_keys=True)
        if content in self._by_content:
            self.alias[node_id] = self._by_content[content]
            return self.alias[node_id]
        if any(n.id == node_id for n in self.nodes):
            raise ConfigError("grid", f"two different steps would both be named '{node_id}'")
        self._by_content[content] = node_id
        self.nodes.append(Node(node_id, step, role, config, mapped, model_from))
        return node_id


def cell_list(grid: GridConfig) -> list[tuple[str, str, int]]:
    """(signal, algorithm, seed) of every cell: sft cells (signal "none") first, then every
    other algorithm per cell signal, seeds innermost."""
    signals = [s for s in grid.signals if s != NO_SIGNAL]
    cells = [(NO_SIGNAL, "sft", seed) for seed in grid.seeds if "sft" in grid.algorithms]
    for signal in signals:
        for algorithm in grid.algorithms:
            if algorithm != "sft":
                cells += [(signal, algorithm, seed) for seed in grid.seeds]
    return cells


def _signal_parts(grid: GridConfig, signal: str, model: str) -> list[Part]:
    # Settings first (the part an unplaceable error is blamed on), fixed fields last (they win).
    if signal in POLICY_SIGNALS:
        parts: list[Part] = [
            (signal, f"signal.{signal}", getattr(grid.signal, signal)),
            ("model", "model.path", model),
        ]
    elif signal == RANDOM:
        parts = [("", "signal.random", grid.signal.random)]
    else:
        parts = [(EXTERNAL_JUDGE, "signal.external_judge", grid.signal.external_judge)]
    return [*parts, ("signal", "signals", signal)]


POLICY_SIGNALS = ("entropy", "self_judge", "length", "logprob")
"""Signals whose node reads the policy model (length and logprob: its tokenizer only)."""


def _signal_role(signal: str, config: Mapping[str, Any]) -> str:
    if signal in ("entropy", "self_judge"):
        return "judge"
    if signal == EXTERNAL_JUDGE and config["external_judge"]["kind"] != "oracle":
        return "external_judge"
    return "cpu"  # the controls and the arith oracle are plain computation


def _build(
    grid: GridConfig, signals: Sequence[str], cells: Sequence[tuple[str, str, int]]
) -> tuple[_Dag, list[Cell]]:
    """The DAG scoring `signals` (plus the random control and the external judge) and running
    `cells`."""
    from satk8s.store.stage_model import is_hub_id

    dag = _Dag()
    model_from = None
    model = grid.model.path
    if grid.model.tiny:
        config = resolve_node_config(TINY, TINY, [("", "model.build", grid.model.build)])
        model_from = dag.add(TINY, TINY, "cpu", config)
        model = UPSTREAM_MODEL
    elif is_hub_id(grid.model.path):
        # One CPU task stages the hub model; every step that loads it reads the store's copy.
        parts: list[Part] = [
            ("model", "model.path", grid.model.path),
            ("revision", "model.revision", grid.model.revision),
        ]
        config = resolve_node_config("stage_model", STAGE, parts)
        model_from = dag.add(STAGE, "stage_model", "cpu", config)
        model = STAGED_MODEL

    prepare = dag.add(
        "prepare",
        "prepare",
        "cpu",
        resolve_node_config("prepare", "prepare", [("", "task.prepare", grid.task.prepare)]),
    )
    gen_config = resolve_node_config(
        "generate", "generate", [("", "generate", grid.generate), ("model", "model.path", model)]
    )
    prepare_config = dag.nodes[-1].config
    generate = _in_parts(
        dag,
        "generate",
        "generate",
        "generate",
        gen_config,
        {"questions": [prepare]},
        model_from,
        _part_count(grid, "generate", pool_size(prepare_config, gen_config["split"])),
    )
    # The saturate step reads the gold answers of the split that was sampled.
    saturate_parts: list[Part] = [
        ("", "saturate", grid.saturate),
        ("split", "generate.split", gen_config["split"]),
    ]
    saturate = dag.add(
        "saturate",
        "saturate",
        "cpu",
        resolve_node_config("saturate", "saturate", saturate_parts),
        {"questions": [prepare], "samples": [generate]},
    )

    # Listed signals are scored and calibrated even when no cell trains on them (sft only).
    named = [s for s in signals if s != NO_SIGNAL]
    scored = [*named, *(c for c in CONTROLS if c not in named)]
    signal_nodes: dict[str, str] = {}
    for signal in [*scored, EXTERNAL_JUDGE]:
        node_id = f"signal-{signal}"
        config = resolve_node_config("signals", node_id, _signal_parts(grid, signal, model))
        uses_model = signal in POLICY_SIGNALS
        role = _signal_role(signal, config)
        pool = pool_size(prepare_config, gen_config["split"])  # at most every question saturated
        signal_nodes[signal] = _in_parts(
            dag,
            node_id,
            "signals",
            role,
            config,
            {"kept": [saturate]},
            model_from if uses_model else None,
            _part_count(grid, "signals", pool) if role != "cpu" else 1,
        )
    calibrate = dag.add(
        "calibrate",
        "calibrate",
        "cpu",
        resolve_node_config("calibrate", "calibrate", [("", "calibrate", grid.calibrate)]),
        {"scores": [signal_nodes[s] for s in scored], "judge": [signal_nodes[EXTERNAL_JUDGE]]},
    )

    eval_parts: list[Part] = [
        ("eval", "evaluate", grid.evaluate),
        ("splits", "task.eval_splits", list(grid.task.eval_splits)),
    ]
    eval_pool = max((pool_size(prepare_config, s) for s in grid.task.eval_splits), default=0)
    eval_count = _part_count(grid, "evaluate", eval_pool)
    base = _in_parts(
        dag,
        "evaluate-base",
        "evaluate",
        "evaluate",
        resolve_node_config(
            "evaluate", "evaluate-base", [*eval_parts, ("model", "model.path", model)]
        ),
        {"questions": [prepare]},
        model_from,
        eval_count,
    )

    evaluations = [base]
    plan_cells = []
    for signal, algorithm, seed in cells:
        name = f"{algorithm}-{signal}"
        settings = grid.algorithm.get(algorithm)
        build = settings.build if settings else {}
        train = settings.train if settings else {}
        dataset_id = f"dataset-{name}"
        dataset = dag.add(
            dataset_id,
            "build_dataset",
            "cpu",
            resolve_node_config(
                "build_dataset",
                dataset_id,
                [
                    ("", f"algorithm.{algorithm}.build", build),
                    ("algorithm", "algorithms", algorithm),
                    *(
                        [("judge_gate", "judge_gate", grid.judge_gate)]
                        if signal != NO_SIGNAL
                        else []
                    ),
                ],
            ),
            {
                "kept": [saturate],
                **({"scores": [signal_nodes[signal]]} if signal != NO_SIGNAL else {}),
            },
        )
        train_id = f"train-{name}-s{seed}"
        trained = dag.add(
            train_id,
            "train",
            "train",
            resolve_node_config(
                "train",
                train_id,
                [
                    ("train", "train", grid.train),
                    ("train", f"algorithm.{algorithm}.train", train),
                    ("model", "model.path", model),
                    ("train.algorithm", "algorithms", algorithm),
                    ("train.seed", "seeds", seed),
                    *_distributed_parts(grid.compute.train),
                ],
            ),
            {"dataset": [dataset]},
            model_from,
        )
        evaluate_id = f"evaluate-{name}-s{seed}"
        labels: list[Part] = [
            ("algorithm", "algorithms", algorithm),
            ("signal", "signals", signal),
            ("seed", "seeds", seed),
        ]
        evaluated = _in_parts(
            dag,
            evaluate_id,
            "evaluate",
            "evaluate",
            resolve_node_config("evaluate", evaluate_id, [*eval_parts, *labels]),
            {"questions": [prepare], "model": [trained]},
            None,
            eval_count,
        )
        evaluations.append(evaluated)
        plan_cells.append(Cell(signal, algorithm, seed, evaluated))

    dag.add(
        "report",
        "report",
        "cpu",
        resolve_node_config("report", "report", [("", "report", grid.report)]),
        {"evaluations": evaluations, "saturation": [saturate], "calibration": [calibrate]},
    )
    return dag, plan_cells


def pool_size(prepare: Mapping[str, Any], split: str) -> int:
    """Questions of `split` the prepare step's config makes (gsm8k: the dataset card's sizes,
    less the few-shot examples and limits)."""
    from satk8s.grid.cost import GSM8K_SPLITS

    if prepare.get("task") == "gsm8k":
        size = GSM8K_SPLITS.get(split, 0)
        if split == "train":
            size -= int(prepare.get("fewshot", 0))
        limit = prepare.get(f"{split}_limit")
        return min(size, int(limit)) if limit else size
    return int(sum((prepare.get("arith", {}).get(split) or {}).values()))


def _part_count(grid: GridConfig, step: str, pool: int) -> int:
    """K for `step`: the grid's `parallel.<step>`, or (0) one per `questions_per_part`."""
    settings = grid.parallel
    count = getattr(settings, step)
    if count == 0:
        count = min(max(math.ceil(pool / settings.questions_per_part), 1), settings.max_parts)
    return count


def _in_parts(
    dag: _Dag,
    node_id: str,
    step: str,
    role: str,
    config: dict[str, Any],
    inputs: Mapping[str, Sequence[str]],
    model_from: str | None,
    count: int,
) -> str:
    """One node, or `count` part nodes (`<id>-part<k>`, same role) and a `merge` node named
    `<id>` on the CPU role, which downstream nodes read as they would the one node."""
    if count <= 1:
        return dag.add(node_id, step, role, config, inputs, model_from)
    parts = [
        dag.add(
            f"{node_id}-part{k}",
            step,
            role,
            {**config, "part": {"index": k, "count": count}},
            inputs,
            model_from,
        )
        for k in range(count)
    ]
    return dag.add(node_id, "merge", "cpu", {"step": step}, {"parts": parts})


def _distributed_parts(train: ComputeProfile) -> list[Part]:
    """The train role's processes and nodes, into every train node's config: a cell trained
    on more processes is another output (the same batch per step, other float rounding)."""
    processes = train.processes or max(train.accelerator_count, 1)
    return [
        ("distributed.processes", "compute.train.processes", processes),
        ("distributed.nodes", "compute.train.nodes", train.nodes),
    ]


def _check_gpu_backends(grid: GridConfig, nodes: Sequence[Node]) -> None:
    """vLLM runs only on GPUs: a vLLM step's role needs at least tensor_parallel_size of them."""
    for node in nodes:
        settings, path = node.config, node.step
        if node.step == "evaluate":
            settings, path = node.config["eval"], "evaluate"
        elif node.step == "signals" and node.config["signal"] == EXTERNAL_JUDGE:
            settings, path = node.config["external_judge"], "signal.external_judge"
        uses_vllm = settings.get("backend") == "vllm" or settings.get("kind") == "vllm"
        if not uses_vllm:
            continue
        have = getattr(grid.compute, node.role).accelerator_count
        need = settings["tensor_parallel_size"]
        if have < need:
            field_name = f"{path}.kind" if "kind" in settings else f"{path}.backend"
            raise ConfigError(
                field_name,
                f"vllm needs {need} GPU(s) with tensor_parallel_size={need}, but compute "
                f"profile '{grid.compute.name}' gives role '{node.role}' {have} (node "
                f"'{node.id}'); use backend hf, or a GPU compute profile",
            )


FIT_HINTS = {
    "full bf16": "train.weights_dtype=bfloat16",
    "full 8-bit Adam": "train.optimizer=adamw_8bit",
    "LoRA": "train.lora=true",
}
"""The settings that make a `satk8s.grid.cost.fit_options` option the run's."""


def _check_train_fit(grid: GridConfig, nodes: Sequence[Node]) -> None:
    """With the grid's GPU type named (`compute.gpu`, every cluster preset): no bf16 asked of a
    GPU without it, and a model that fits (`satk8s.grid.cost.node_train_memory`); a refusal
    names the settings that would fit."""
    from satk8s.cluster.gpus import catalogue
    from satk8s.grid.cost import fit_options, model_shape, node_train_memory

    if not grid.compute.gpu or grid.compute.train.accelerator_count < 1:
        return
    gpu = catalogue().gpu(grid.compute.gpu)
    for node in (n for n in nodes if n.step == "train"):
        t = node.config["train"]
        if not gpu.bf16 and t["bf16"] is True:
            raise ConfigError(
                "train.bf16",
                f"true, but {gpu.name} has no bf16; set train.bf16=auto (fp16 mixed precision "
                f"there) (node '{node.id}')",
            )
        if not gpu.bf16 and t["weights_dtype"] == "bfloat16":
            raise ConfigError("train.weights_dtype", f"bfloat16 needs bf16, which {gpu.name} lacks")
        model = _hub_model(node, nodes)
        shape = model_shape(model)
        if shape is None:
            continue
        world = node.config["distributed"]["processes"] * node.config["distributed"]["nodes"]
        needed = node_train_memory(node.config, shape, world).total
        if needed <= gpu.memory_gb * 1e9:
            continue
        options = fit_options(shape, gpu, t["per_device_batch_size"], t["max_length"])
        hints = [
            FIT_HINTS.get(o) or f"compute.train.accelerator_count={o.split('x')[1]} (FSDP)"
            for o in options
            if o != "full"
        ]
        what = "LoRA" if t["lora"] else "full fine-tuning"
        raise ConfigError(
            "compute.gpu",
            f"{model} {what} needs about {needed / 1e9:.0f} GB per GPU "
            f"(node '{node.id}'); a {gpu.name} has {gpu.memory_gb:g} GB. "
            + (
                f"What fits: {'; or '.join(hints)}"
                if hints
                else "Nothing fits one node of these GPUs; use a larger GPU type"
            ),
        )


def _hub_model(node: Node, nodes: Sequence[Node]) -> str:
    """The model a node loads as named in the grid: its own `model`, or the hub id its upstream
    `stage_model` node mirrors (a tiny model, built upstream, has no name to look up)."""
    if not node.model_from:
        return str(node.config["model"])
    upstream = next(n for n in nodes if n.id == node.model_from)
    return str(upstream.config["model"]) if upstream.step == "stage_model" else ""


def _counts(nodes: Sequence[Node]) -> dict[str, dict[str, int]]:
    counts: dict[str, Counter[str]] = {}
    for node in nodes:
        counts.setdefault(node.step, Counter())[node.role] += 1
    return {step: dict(roles) for step, roles in counts.items()}


def expand(grid: GridConfig) -> Plan:
    """The grid as one static DAG (see `_expand`), its compute profiles resolved
    (`satk8s.grid.compute`) and checked against the node shapes of its GPU type."""
    from satk8s.grid.compute import check_fit, resolve_compute

    plan = _expand(grid)
    roles = [n.role for n in plan.nodes]
    grid = resolve_compute(grid, roles)
    plan = dataclasses.replace(plan, profiles={role: profile_dict(grid, role) for role in ROLES})
    notes = tuple(check_fit(grid, roles))
    queued = any(
        QUEUE_LABEL in p.get("pod_labels", {})
        for p in plan.profiles.values()
        if p.get("accelerator_count", 0) > 0
    )
    lanes = 0 if queued else grid.compute.max_gpu_tasks
    return dataclasses.replace(plan, notes=notes, gpu_lanes=lanes)


QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
"""The pod label by which Kueue's pod integration queues a pod
(kubernetes-sigs/kueue site/content/en/docs/tasks/run/plain_pods.md, "Queue selection")."""


def _expand(grid: GridConfig) -> Plan:
    """The grid as one static DAG; every node config resolved and checked.

    `Plan.naive_step_count` is what running every cell as its own pipeline would cost: the
    sum over cells of the node count of the single-cell grid (the same grid with
    signals=[cell signal] (none for sft), algorithms=[cell algorithm], seeds=[cell seed]).
    Each such pipeline has tiny (tiny model) or stage-model (hub model), prepare, generate,
    saturate, the cell's signal (none for sft), the three controls (random, length, logprob;
    less the cell's signal when it is one of them), the external judge, calibrate,
    evaluate-base, dataset, train, evaluate and report. `Plan.naive_counts` splits that sum by
    step and role."""
    dag, cells = _build(grid, grid.signals, cell_list(grid))
    _check_gpu_backends(grid, dag.nodes)
    _check_train_fit(grid, dag.nodes)
    naive: dict[str, Counter[str]] = {}
    for cell in cell_list(grid):
        single, _ = _build(grid, [cell[0]], [cell])
        for step, roles in _counts(single.nodes).items():
            naive.setdefault(step, Counter()).update(roles)
    naive_counts = {step: dict(roles) for step, roles in naive.items()}
    return Plan(
        grid=grid.name,
        nodes=tuple(dag.nodes),
        cells=tuple(cells),
        store_root=absolute_uri(grid.store.root) if grid.store.root else "",
        profiles={role: profile_dict(grid, role) for role in ROLES},
        naive_step_count=sum(sum(r.values()) for r in naive_counts.values()),
        naive_counts=naive_counts,
    )


def load_plan(name: str, overrides: Sequence[str] = ()) -> Plan:
    """`expand(load_grid(name, overrides))`: the grid checked end to end, as a DAG."""
    return expand(load_grid(name, overrides))
