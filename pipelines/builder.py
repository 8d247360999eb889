"""A grid's Plan as one Kubeflow pipeline: one task per node, wired by output locations.

Every node of the plan (`satk8s.grid.plan`) becomes one task of its step's component
(`satk8s.components`), run at its content address. A task's output parameter is its output
location; downstream tasks take it as the step input (several upstream locations are joined
with commas, which KFP compiles into one string with a placeholder per upstream output). The
node's compute profile (`plan.profiles[node.role]`) is applied with kfp and kfp-kubernetes, so
the same YAML runs locally (kfp.local ignores the platform spec) and on a cluster.

Compilation is deterministic: configs go in as canonical JSON (sorted keys), node selectors and
secret keys are applied in sorted order, and nothing time- or host-dependent is embedded, so
the same plan and images give a byte-identical YAML.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from satk8s.errors import ConfigError
from satk8s.grid.plan import ROLES, Node, Plan
from satk8s.grid.split import SAFE_PACKAGE_BYTES, Part, split_plan
from satk8s.images import IMAGE_NAMES, load_image_refs
from satk8s.store.keys import canonical_json

PROFILE_KEYS = frozenset(
    {
        "accelerator_type",
        "accelerator_count",
        "nodes",
        "processes",
        "cpu",
        "memory",
        "node_selector",
        "node_affinity",
        "tolerations",
        "shm_size",
        "scratch_size",
        "scratch_storage_class",
        "secrets",
        "config_maps",
        "env",
        "pod_labels",
        "retries",
        "backoff_duration",
        "backoff_factor",
        "backoff_max_duration",
    }
)
"""Keys a compute profile may have; their shape is documented at
`satk8s.grid.expand.profile_dict`. `cpu` and `memory` are both request and limit."""

SHM_VOLUME = "dshm"
"""The Memory-backed emptyDir mounted at /dev/shm: the container runtime's 64 MiB default is
too small for PyTorch data loaders and NCCL."""
SCRATCH_VOLUME = "scratch"
SCRATCH = "/scratch"
"""Where a task's scratch volume is mounted (`scratch_size`)."""
SCRATCH_ENV = {
    "SATK8S_CACHE": f"{SCRATCH}/satk8s",  # staging of outputs, verified copies of inputs
    "HF_HOME": f"{SCRATCH}/huggingface",
    "XDG_CACHE_HOME": f"{SCRATCH}/cache",  # torch, triton and vLLM compile caches
    "TMPDIR": SCRATCH,
}
"""Where a task with a scratch volume writes: nothing large lands on the container's layer."""


def pipeline_name(grid: str) -> str:
    """The KFP pipeline name of a grid (lower-case letters, digits and dashes)."""
    slug = re.sub(r"[^a-z0-9]+", "-", grid.lower()).strip("-")
    return f"satk8s-{slug or 'grid'}"


def resolve_images(images: Mapping[str, str] | str | Path | None) -> dict[str, str]:
    """Image name -> pinned ref: a mapping as given, a digests file, or (None) the default
    `images/digests.json`, which fails with how to build it when it does not exist."""
    refs = dict(images) if isinstance(images, Mapping) else load_image_refs(images)
    missing = [name for name in IMAGE_NAMES if not refs.get(name)]
    if missing:
        raise ConfigError("images", f"no image given for {missing}")
    return refs


AWAIT_RESOURCES = {"cpu": "250m", "memory": "1Gi"}
"""What a split grid's coordination tasks (await, publish, gather) request: they poll the store."""


def require_store(plan: Plan) -> None:
    """Fail when the plan has no store: a cluster grid compiled without cluster settings."""
    if not plan.store_root:
        raise ConfigError(
            "store.root",
            f"grid '{plan.grid}' writes to a cluster's store (satk8s-settings storeRoot): "
            "compile it for the cluster with `satk8s grid compile`, or give it a store "
            "(`satk8s run --local --store PATH|s3://bucket/prefix`, store.root=…)",
        )


def check_plan(plan: Plan, part: Part | None = None) -> None:
    """Fail on a plan the pipeline cannot be built from, naming the node."""
    from satk8s.steps import STEPS

    gathered = set(part.gather) if part else set()
    seen: set[str] = set()
    for node in plan.nodes:
        where = f"plan node '{node.id}'"
        if node.id in seen:
            raise ConfigError(where, "node id is not unique")
        if node.step not in STEPS:
            raise ConfigError(where, f"unknown step '{node.step}'; known: {', '.join(STEPS)}")
        if node.role not in ROLES:
            raise ConfigError(where, f"unknown role '{node.role}'; known: {', '.join(ROLES)}")
        allowed = set(STEPS[node.step].inputs) | set(STEPS[node.step].optional_inputs)
        if unknown := sorted(set(node.inputs) - allowed):
            raise ConfigError(where, f"step '{node.step}' has no inputs {unknown}")
        upstream = [u for ids in node.inputs.values() for u in ids]
        if node.model_from:
            upstream.append(node.model_from)
        if late := [u for u in upstream if u not in seen and u not in gathered]:
            raise ConfigError(where, f"reads {late}, which are not earlier nodes of the plan")
        seen.add(node.id)
    for role in plan.profiles:
        if role not in ROLES:
            raise ConfigError(f"profiles.{role}", f"unknown role; known: {', '.join(ROLES)}")


def build_pipeline(
    plan: Plan, images: Mapping[str, str], part: Part | None = None
) -> Callable[..., Any]:
    """The plan as a KFP pipeline (a `@dsl.pipeline` GraphComponent) with parameters
    `store_root` (default `plan.store_root`) and `force`. With `part` (a run of a split grid,
    `satk8s.grid.split`): its awaited nodes become `await` tasks, part 1's report reads every
    evaluation through a `gather` task, and a later part publishes its evaluations."""
    from kfp import dsl

    from satk8s.components import image_for_profile, part_component, step_component
    from satk8s.training.trainjob import SPEC_ENV as TRAINJOB_ENV
    from satk8s.training.trainjob import trainjob_env

    check_plan(plan, part)
    require_store(plan)
    refs = resolve_images(images)
    gpu_roles = {r for r, p in plan.profiles.items() if int(p.get("accelerator_count") or 0) > 0}
    awaited = part.awaited if part is not None else frozenset()
    light = {k: v for k, v in plan.profiles.get("cpu", {}).items() if k != "scratch_size"}
    light.update(AWAIT_RESOURCES)

    def coordination(name: str, display: str, **arguments: Any) -> Any:
        """A split grid's await, publish or gather task: CPU image, light requests."""
        task = part_component(name, refs["cpu"])(**arguments)
        task.set_display_name(display)
        task.set_caching_options(False)
        apply_profile(task, light, "profiles.cpu")
        return task

    def satk8s_grid(store_root: str = plan.store_root, force: bool = False) -> None:
        tasks: dict[str, Any] = {}
        gpu_tasks: list[Any] = []

        def gather_evaluations(order: tuple[str, ...]) -> Any:
            assert part is not None
            own = [n for n in order if n in tasks]
            config = {
                "grid_id": part.grid_id,
                "parts": list(range(2, part.count + 1)),
                "order": list(order),
                "own": own,
            }
            return coordination(
                "gather_parts",
                "gather-evaluations",
                node="gather-evaluations",
                store_root=store_root,
                config_json=canonical_json(config),
                own=_joined([tasks[n].outputs["Output"] for n in own]),
            )

        for node in plan.nodes:
            if node.id in awaited:
                # Another part runs it: wait for its output at the address it will have.
                inputs = {
                    name: _joined([tasks[u].outputs["Output"] for u in upstream])
                    for name, upstream in node.inputs.items()
                }
                model = tasks[node.model_from].outputs["Output"] if node.model_from else ""
                tasks[node.id] = coordination(
                    "await_output",
                    f"await-{node.id}",
                    node=node.id,
                    store_root=store_root,
                    step=node.step,
                    config_json=canonical_config(node),
                    inputs_json=_json_object(inputs),
                    model_location=model,
                )
                continue
            profile = plan.profiles.get(node.role, {})
            trainjob = None
            if node.step == "train" and int(profile.get("nodes") or 1) > 1:
                # The task submits a TrainJob with the train profile on its nodes and follows
                # it from a CPU pod (satk8s.training.trainjob).
                trainjob = trainjob_env(profile, image_for_profile(profile, refs))
                profile = plan.profiles.get("cpu", {})
            component = step_component(node.step, image_for_profile(profile, refs))
            arguments: dict[str, Any] = {
                "node": node.id,
                "store_root": store_root,
                "config_json": canonical_config(node),
                "force": force,
            }
            for name, upstream in node.inputs.items():
                if part is not None and part.gather and name == "evaluations":
                    arguments[name] = gather_evaluations(upstream).outputs["Output"]
                    continue
                arguments[name] = _joined([tasks[u].outputs["Output"] for u in upstream])
            if node.model_from:
                arguments["model_location"] = tasks[node.model_from].outputs["Output"]
            task = component(**arguments)
            task.set_display_name(node.id)
            # The satk8s store is the cache: a step's output lives at its content address
            # (config, input digests, code version) and a finished one returns at once, for
            # any grid, re-submission or local run. KFP's cache keys on the task spec and its
            # input values instead, not on what the store holds: it would replay a task whose
            # output was deleted, or a `force` run, from its own metadata without running it.
            task.set_caching_options(False)
            apply_profile(task, profile, f"profiles.{node.role}")
            if trainjob is not None:
                task.set_env_variable(TRAINJOB_ENV, trainjob)
            if node.role in gpu_roles:
                if plan.gpu_lanes and len(gpu_tasks) >= plan.gpu_lanes:
                    # Lanes: each GPU task waits for the one `gpu_lanes` before it, so the
                    # GPU tasks form that many chains and at most that many run at once. KFP
                    # 2.17 has no per-pipeline cap to use instead: Argo's `parallelism` is set
                    # only on a ParallelFor loop's template (kubeflow/pipelines@2.17.0:backend/
                    # src/v2/compiler/argocompiler/dag.go, iterator parallelism_limit) or, for
                    # every pipeline of the server, by its COMPILED_PIPELINE_SPEC_PATCH
                    # (argocompiler/spec_patch.go, ApplyWorkflowSpecPatch).
                    task.after(gpu_tasks[len(gpu_tasks) - plan.gpu_lanes])
                gpu_tasks.append(task)
            tasks[node.id] = task
        if part is not None and part.index > 1:
            nodes = list(part.evaluations)
            coordination(
                "publish_part",
                "publish-evaluations",
                node="publish-evaluations",
                store_root=store_root,
                config_json=canonical_json(
                    {"grid_id": part.grid_id, "part": part.index, "nodes": nodes}
                ),
                evaluations=_joined([tasks[n].outputs["Output"] for n in nodes]),
            )

    # KFP reads the parameter types from real annotations; this module's are strings
    # (`from __future__ import annotations`).
    satk8s_grid.__annotations__ = {"store_root": str, "force": bool, "return": None}
    cells = len(plan.cells)
    description = (
        f"satk8s grid '{plan.grid}': {len(plan.nodes)} steps, {cells} cells "
        "(learning from saturated data)"
    )
    if part is not None:
        description += f"; part {part.index} of {part.count} (satk8s.grid.split)"
    name = pipeline_name(part.name if part is not None else plan.grid)
    with _cheap_caller_lookup():
        return dsl.pipeline(name=name, description=description)(satk8s_grid)


def compile_plan(
    plan: Plan, path: str | Path, images: Mapping[str, str] | str | Path | None = None
) -> Path:
    """Compile the plan's pipeline to a KFP YAML at `path`. `images` is a digests file, None
    for the default `images/digests.json` (fails, saying how to build it, when there is none),
    or a mapping taken as given (the local run's placeholders; tests). A plan whose settings
    hold a credential is refused (`check_pipeline_secrets`): nothing is written."""
    text = _checked_yaml(plan, build_pipeline(plan, resolve_images(images)))
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target


@dataclass(frozen=True)
class Compiled:
    """What `compile_grid` wrote: one pipeline, or a parts list and its parts."""

    path: Path
    """The file to submit: the pipeline, or the parts list."""
    parts: tuple[Path, ...]
    """The pipeline files (the path itself when not split)."""
    sizes: tuple[int, ...]
    """Each pipeline's size (`package_bytes`)."""
    tasks: tuple[int, ...]
    """Each pipeline's task count."""
    gpu_lanes: tuple[int, ...] = ()
    """Each pipeline's GPU lanes (`Plan.gpu_lanes`): together, how many GPU tasks run at once."""


def package_bytes(pipeline: Any) -> int:
    """What a compiled pipeline weighs as KFP stores it and turns it into an Argo Workflow:
    its pipeline spec and platform spec as compact JSON."""
    import json

    from google.protobuf import json_format

    documents = [json_format.MessageToDict(pipeline.pipeline_spec)]
    if pipeline.platform_spec.platforms:
        documents.append(json_format.MessageToDict(pipeline.platform_spec))
    return sum(len(json.dumps(d, separators=(",", ":"))) for d in documents)


def compile_grid(
    plan: Plan,
    path: str | Path,
    images: Mapping[str, str] | str | Path | None = None,
    max_bytes: int = SAFE_PACKAGE_BYTES,
) -> Compiled:
    """Compile the plan for a cluster: one pipeline at `path` when it weighs at most
    `max_bytes` (`package_bytes`), else the fewest parts (`satk8s.grid.split`) that each do, as
    `<stem>.part-<i>-of-<n>.yaml` beside a parts list at `path`."""
    from satk8s.orchestration.grid_parts import write_parts

    refs = resolve_images(images)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    whole = build_pipeline(plan, refs)
    size = package_bytes(whole)
    if size <= max_bytes:
        target.write_text(_checked_yaml(plan, whole))
        return Compiled(target, (target,), (size,), (len(plan.nodes),), (plan.gpu_lanes,))
    cells = len(plan.cells)
    count = max(2, -(-size // max_bytes))
    while count <= cells:
        parts = split_plan(plan, count)
        pipelines = [build_pipeline(p.plan, refs, p) for p in parts]
        sizes = [package_bytes(p) for p in pipelines]
        if max(sizes) <= max_bytes:
            # Every part checked before any is written: a refused grid leaves no file.
            texts = [_checked_yaml(p.plan, pipe) for p, pipe in zip(parts, pipelines, strict=True)]
            files = []
            for part, text in zip(parts, texts, strict=True):
                file = target.with_name(
                    f"{target.stem}.part-{part.index}-of-{count}{target.suffix}"
                )
                file.write_text(text)
                files.append(file)
            write_parts(target, plan.grid, files, sizes, max_bytes)
            tasks = tuple(len(p.plan.nodes) + (p.index > 1) + bool(p.gather) for p in parts)
            lanes = tuple(p.plan.gpu_lanes for p in parts)
            return Compiled(target, tuple(files), tuple(sizes), tasks, lanes)
        count += 1
    raise ConfigError(
        "grid",
        f"'{plan.grid}' does not fit runs of {max_bytes // 1024} KiB even one cell per run; "
        "compile fewer cells (seeds=…, signals=…)",
    )


def _checked_yaml(plan: Plan, pipeline: Any) -> str:
    """The pipeline's YAML, refused (`check_pipeline_secrets`) when a node's settings or the
    text hold a credential."""
    from satk8s.store.redact import check_pipeline_secrets

    text = pipeline_yaml(pipeline)
    check_pipeline_secrets({node.id: node.config for node in plan.nodes}, text)
    return text


def pipeline_yaml(pipeline: Any) -> str:
    """The YAML `kfp.compiler.Compiler().compile` writes for a pipeline: its header comment,
    the pipeline spec and (when a task has platform settings) the platform spec, keys sorted.

    Written here with libyaml's emitter when PyYAML has it: kfp's pure-Python `yaml.dump` takes
    most of a large grid's compile time (about 3 s of a 420-task pipeline). The documents are
    the same data; only line wrapping of long strings can differ from kfp's own output."""
    import yaml
    from google.protobuf import json_format
    from kfp.compiler.pipeline_spec_builder import extract_comments_from_pipeline_spec

    spec = json_format.MessageToDict(pipeline.pipeline_spec)
    documents = [spec]
    if pipeline.platform_spec.platforms:
        documents.append(json_format.MessageToDict(pipeline.platform_spec))
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    body = yaml.dump_all(documents, Dumper=dumper, sort_keys=True)
    return extract_comments_from_pipeline_spec(spec, pipeline.description) + body


def canonical_config(node: Node) -> str:
    """The node's config as JSON text with sorted keys: exact (kfp.local would turn a list of
    ints into floats) and the same bytes on every compile."""
    return canonical_json(node.config)


def apply_profile(task: Any, profile: Mapping[str, Any], where: str = "profile") -> None:
    """Set a task's accelerators, cpu/memory, node selector and affinity, tolerations, /dev/shm,
    a scratch volume at /scratch (with the variables that send caches and staging there),
    secrets and ConfigMaps as env (by name only: secret values never enter the pipeline), plain
    environment variables, pod labels and retries from a compute profile
    (`satk8s.grid.expand.profile_dict`)."""
    from kfp import kubernetes

    if unknown := sorted(set(profile) - PROFILE_KEYS):
        raise ConfigError(
            where, f"unknown keys {unknown}; known: {', '.join(sorted(PROFILE_KEYS))}"
        )
    count = int(profile.get("accelerator_count") or 0)
    if profile.get("accelerator_type") and count > 0:
        task.set_accelerator_type(str(profile["accelerator_type"]))
        task.set_accelerator_limit(count)
    if cpu := profile.get("cpu"):
        task.set_cpu_request(str(cpu)).set_cpu_limit(str(cpu))
    if memory := profile.get("memory"):
        task.set_memory_request(str(memory)).set_memory_limit(str(memory))
    for key, value in sorted((profile.get("node_selector") or {}).items()):
        kubernetes.add_node_selector(task, label_key=str(key), label_value=str(value))
    if terms := profile.get("node_affinity"):
        expressions = [
            {
                "key": str(t["key"]),
                "operator": str(t["operator"]),
                "values": list(t.get("values") or []),
            }
            for t in terms
        ]
        kubernetes.add_node_affinity(task, match_expressions=expressions)
    for i, toleration in enumerate(profile.get("tolerations") or []):
        if not isinstance(toleration, Mapping):
            raise ConfigError(f"{where}.tolerations[{i}]", "must be a mapping")
        kubernetes.add_toleration(
            task,
            key=toleration.get("key") or None,
            operator=toleration.get("operator") or None,
            value=toleration.get("value") or None,  # "" with operator Exists: no value
            effect=toleration.get("effect") or None,
            toleration_seconds=toleration.get("toleration_seconds"),
        )
    if shm := profile.get("shm_size"):
        kubernetes.empty_dir_mount(
            task,
            volume_name=SHM_VOLUME,
            mount_path="/dev/shm",
            medium="Memory",
            size_limit=str(shm),
        )
    if scratch := profile.get("scratch_size"):
        if storage_class := profile.get("scratch_storage_class"):
            kubernetes.add_ephemeral_volume(
                task,
                volume_name=SCRATCH_VOLUME,
                mount_path=SCRATCH,
                access_modes=["ReadWriteOnce"],
                size=str(scratch),
                storage_class_name=str(storage_class),
            )
        else:
            kubernetes.empty_dir_mount(
                task, volume_name=SCRATCH_VOLUME, mount_path=SCRATCH, size_limit=str(scratch)
            )
        for name, value in SCRATCH_ENV.items():
            task.set_env_variable(name, value)
    for i, secret in enumerate(profile.get("secrets") or []):
        name, env = _source(secret, "secret", f"{where}.secrets[{i}]")
        kubernetes.use_secret_as_env(
            task, secret_name=name, secret_key_to_env=env, optional=bool(secret.get("optional"))
        )
    for i, config_map in enumerate(profile.get("config_maps") or []):
        name, env = _source(config_map, "config_map", f"{where}.config_maps[{i}]")
        kubernetes.use_config_map_as_env(
            task,
            config_map_name=name,
            config_map_key_to_env=env,
            optional=bool(config_map.get("optional")),
        )
    for name, value in sorted((profile.get("env") or {}).items()):
        task.set_env_variable(str(name), str(value))
    for key, value in sorted((profile.get("pod_labels") or {}).items()):
        kubernetes.add_pod_label(task, label_key=str(key), label_value=str(value))
    if retries := int(profile.get("retries") or 0):
        factor = profile.get("backoff_factor")
        task.set_retry(
            num_retries=retries,
            backoff_duration=_duration(profile.get("backoff_duration")),
            backoff_factor=float(factor) if factor is not None else None,
            backoff_max_duration=_duration(profile.get("backoff_max_duration")),
        )


def _source(entry: Any, kind: str, where: str) -> tuple[str, dict[str, str]]:
    """(name, {key: ENV} sorted) of a secrets/config_maps entry: names only, never values."""
    env = entry.get("env") if isinstance(entry, Mapping) else None
    if not isinstance(entry, Mapping) or not entry.get(kind) or not isinstance(env, Mapping):
        raise ConfigError(where, f"must be {{{kind}: <name>, env: {{<key>: <ENV_VAR>}}}}")
    return str(entry[kind]), {str(k): str(v) for k, v in sorted(env.items())}


@contextmanager
def _cheap_caller_lookup() -> Iterator[None]:
    """While the pipeline is built, give kfp's PipelineTask an `inspect.stack` that does not
    read source files. Every resource setter (`set_cpu_request`, ...) calls `inspect.stack()`
    only to name itself in an error message, and reading the source context of every frame
    costs ~1 ms per call: about 2 s of a 420-task pipeline. Only kfp's pipeline_task module
    sees the stand-in; the frames it returns carry no source lines."""
    import inspect

    from kfp.dsl import pipeline_task

    class _Inspect:
        def __getattr__(self, name: str) -> Any:
            return getattr(inspect, name)

        @staticmethod
        def stack(context: int = 1) -> list[inspect.FrameInfo]:
            frames, frame = [], sys._getframe(1)
            while frame is not None:
                code = frame.f_code
                frames.append(
                    inspect.FrameInfo(
                        frame, code.co_filename, frame.f_lineno, code.co_name, None, None
                    )
                )
                frame = frame.f_back
            return frames

    before = pipeline_task.inspect
    pipeline_task.inspect = _Inspect()  # type: ignore[assignment]
    try:
        yield
    finally:
        pipeline_task.inspect = before


def _duration(value: Any) -> str | None:
    """A backoff duration as KFP wants it: `"30s"`; a bare number means seconds."""
    if value is None or value == "":
        return None
    return f"{value}s" if isinstance(value, int | float) else str(value)


def _json_object(values: Mapping[str, Any]) -> str:
    """A JSON object of name -> value where values may be pipeline outputs: KFP substitutes each
    output's placeholder inside the string (locations hold no quotes)."""
    return "{" + ",".join(f'"{k}": "{v}"' for k, v in sorted(values.items())) + "}"


def _joined(outputs: list[Any]) -> Any:
    """One upstream output as itself (a plain data edge); several as one comma-joined string,
    which KFP compiles into a constant with a placeholder per upstream output."""
    return outputs[0] if len(outputs) == 1 else ",".join(str(o) for o in outputs)


__all__ = [
    "PROFILE_KEYS",
    "Compiled",
    "apply_profile",
    "build_pipeline",
    "canonical_config",
    "check_plan",
    "compile_grid",
    "compile_plan",
    "package_bytes",
    "pipeline_name",
    "require_store",
    "resolve_images",
]
