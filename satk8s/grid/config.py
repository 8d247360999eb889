"""Grid configs: the typed schema, Hydra composition and the checks that run before expansion.

A grid is composed by Hydra from `pipelines/conf` (shipped as `satk8s.pipelines/conf`):
`grid/<name>.yaml` picks one option per config group (model, task, generate, signal,
signal/external_judge, algorithm, train, evaluate, compute, store) and names the cells
(`signals` x `algorithms` x `seeds`). The composed config is merged into `GridConfig`, so
OmegaConf checks every type, then `check_grid` checks what types cannot say (known signals and
algorithms, a model, consistent compute profiles). Step settings stay plain dicts here: each is
checked field by field when the grid is expanded (`satk8s.grid.expand`, through
`resolve_config`), where a bad value is reported with its dotted grid path.

Overrides are Hydra's (`seeds=[0]`, `model=tiny`, `train.max_steps=10`, `store.root=s3://b/p`)
with two differences that keep them predictable:
- a key that a step config knows but the grid's YAML does not set can be given without `+`
  (`generate.limit=10`): the schema and the step configs reject unknown keys anyway;
- a dict value replaces the whole entry instead of merging into it
  (`task.prepare.arith.train={easy:4}` leaves no other level).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from satk8s.errors import ConfigError

GROUPS = (
    "model",
    "task",
    "generate",
    "signal",
    "signal/external_judge",
    "algorithm",
    "train",
    "evaluate",
    "compute",
    "store",
)
"""Hydra config groups under conf/ (one option each; `signal` and `algorithm` take lists)."""

NO_SIGNAL = "none"
"""The signal of the signal-free `sft` cells."""
EXTERNAL_JUDGE = "external_judge"
"""The reference signal calibration compares against; never a cell signal."""
RANDOM = "random"
"""The random control signal."""
CONTROLS = ("random", "length", "logprob")
"""Control signals: always scored and calibrated, whether or not they are cell signals."""


# ----------------------------------------------------------------------------- schema


@dataclass
class ModelConfig:
    """The policy: the base model every cell starts from."""

    name: str = MISSING
    """Short label (the config group option), e.g. `tiny`, `qwen3-1.7b-base`."""
    tiny: bool = False
    """Built by the `tiny` step (the embedded model); every model-taking step reads its output."""
    path: str = ""
    """Hub id (`Qwen/Qwen3-1.7B-Base`), checkpoint directory or `s3://` prefix; empty for the
    tiny model. A hub id is staged into the store by one task of the pipeline."""
    revision: str = "main"
    """Hub branch, tag or commit of a hub model; the staging task resolves it to a commit."""
    build: dict[str, Any] = field(default_factory=dict)
    """TinyBuildConfig settings of the `tiny` step (tiny models only)."""


@dataclass
class TaskConfig:
    """The question sets: the `prepare` step's config and which splits are evaluated."""

    name: str = MISSING
    """Short label (the config group option), e.g. `arith`, `gsm8k`."""
    prepare: dict[str, Any] = field(default_factory=dict)
    """PrepareConfig settings (task, fewshot, arith sizes, gsm8k_path, limits)."""
    eval_splits: list[str] = field(default_factory=list)
    """Eval sets by split name (EvaluateStepConfig.splits), e.g. [eval_id, eval_hard], [test]."""


@dataclass
class SignalSettings:
    """Per-signal settings; a signal's node reads only its own entry."""

    entropy: dict[str, Any] = field(default_factory=dict)
    """EntropyConfig settings."""
    self_judge: dict[str, Any] = field(default_factory=dict)
    """SelfJudgeConfig settings."""
    random: dict[str, Any] = field(default_factory=dict)
    """SignalConfig fields of the random control (`random_seed`)."""
    length: dict[str, Any] = field(default_factory=dict)
    """LengthConfig settings of the length control (`direction`)."""
    logprob: dict[str, Any] = field(default_factory=dict)
    """LogprobConfig settings of the logprob control (`direction`)."""
    external_judge: dict[str, Any] = field(default_factory=dict)
    """ExternalJudgeConfig settings (kind oracle / hf / vllm / openai, model, ...)."""


@dataclass
class AlgorithmSettings:
    """Settings of one training algorithm."""

    build: dict[str, Any] = field(default_factory=dict)
    """BuildConfig settings of its training sets (k, temperature, dpo_pairs, ...)."""
    train: dict[str, Any] = field(default_factory=dict)
    """TrainConfig settings merged over the grid's `train` (e.g. a DPO learning rate)."""


@dataclass
class Toleration:
    key: str = ""
    operator: str = "Exists"
    """`Exists` or `Equal`."""
    value: str = ""
    effect: str = ""
    """`NoSchedule`, `PreferNoSchedule`, `NoExecute`, or empty for every effect."""


@dataclass
class NodeAffinityTerm:
    """One required node-affinity match expression (Kubernetes NodeSelectorRequirement)."""

    key: str = MISSING
    operator: str = "In"
    """`In`, `NotIn`, `Exists`, `DoesNotExist`, `Gt` or `Lt`."""
    values: list[str] = field(default_factory=list)


@dataclass
class SecretEnv:
    """Keys of one Kubernetes Secret exposed to the step as environment variables. The chart's
    Secrets (S3 keys, hub token, judge API key) are added from the cluster settings when a grid
    is compiled for a cluster (`satk8s.grid.cluster`); list only Secrets of your own here."""

    secret: str = MISSING
    """Secret name."""
    env: dict[str, str] = field(default_factory=dict)
    """Secret key -> environment variable name."""
    optional: bool = False
    """The pod starts even when the Secret does not exist (honoured by KFP >= 2.15)."""


@dataclass
class ConfigMapEnv:
    """Keys of one ConfigMap exposed to the step as environment variables."""

    config_map: str = MISSING
    env: dict[str, str] = field(default_factory=dict)
    """ConfigMap key -> environment variable name."""
    optional: bool = False


@dataclass
class ComputeProfile:
    """Where and with what one role's steps run (see `profile_dict` for the pipeline's view)."""

    accelerator_type: str = ""
    """Extended resource of the accelerator, e.g. `nvidia.com/gpu`; empty for none."""
    accelerator_count: int = 0
    """Accelerators per step pod (0: a CPU step)."""
    nodes: int = 1
    """Pods training one cell together (`train` only). More than one runs the train step as a
    Kubeflow Trainer TrainJob of this many nodes, each with this profile; the pipeline's own
    task then only submits and follows it, on the `cpu` role."""
    processes: int = 0
    """Training processes per pod (`train` only); 0: one per accelerator, or one on CPU."""
    cpu: str = "1"
    """CPU request and limit (Kubernetes quantity); "auto" derives it from the GPU type
    (`satk8s.grid.compute`)."""
    memory: str = "2Gi"
    """Memory request and limit (Kubernetes quantity), /dev/shm included; "auto" derives it
    from the model and the role."""
    node_selector: dict[str, str] = field(default_factory=dict)
    """Node labels the pod must match, e.g. {cloud.google.com/gke-accelerator: nvidia-l4}.
    Empty on a GPU role: the preset's cloud label for `compute.gpu`, or the cluster's pool."""
    node_affinity: list[NodeAffinityTerm] = field(default_factory=list)
    """Required node-affinity match expressions (all must hold), e.g. {key:
    node.kubernetes.io/instance-type, operator: In, values: [g5.2xlarge, g5.12xlarge]}."""
    tolerations: list[Toleration] = field(default_factory=list)
    """Taints the pod tolerates, e.g. nvidia.com/gpu:NoSchedule on GPU pools."""
    shm_size: str = ""
    """Size of a memory-backed /dev/shm (Kubernetes quantity), counted in `memory`; empty keeps
    the runtime's; "auto" sizes it by the GPU count."""
    scratch_size: str = ""
    """Size of the scratch volume at /scratch (an emptyDir with that size limit, or a generic
    ephemeral volume with `compute.scratch_storage_class`) where the step stages its output,
    fetches its inputs and keeps checkpoints; empty: none (the container's own disk); "auto":
    from the model and the role."""
    secrets: list[SecretEnv] = field(default_factory=list)
    """Secrets for this role only (added to the compute config's `shared_secrets`)."""
    pod_labels: dict[str, str] = field(default_factory=dict)
    """Extra pod labels, e.g. {kueue.x-k8s.io/queue-name: <the chart's local queue>}."""
    retries: int = 0
    """Times a failed step is retried."""
    backoff_duration: str = "0s"
    """Wait before the first retry (KFP duration, e.g. `60s`)."""
    backoff_factor: float = 2.0
    """Each further retry waits this many times longer."""
    backoff_max_duration: str = "3600s"
    """Longest wait between retries."""


@dataclass
class ComputeConfig:
    """One compute profile per step role (`satk8s.grid.plan.ROLES`)."""

    name: str = "local_cpu"
    cloud: str = ""
    """gke, eks, aks or generic: whose node label places the GPU roles on `gpu` nodes
    (satk8s/cluster/gpus.yaml); empty: no placement of the preset's own."""
    gpu: str = ""
    """The GPU type by name (satk8s/cluster/gpus.yaml), e.g. h100-80gb, a100-40gb, l4, a10g:
    places and sizes the GPU roles."""
    shape: str = ""
    """A node shape (satk8s/cluster/gpus.yaml `shapes`, e.g. g5.2xlarge) every GPU role of the
    grid must fit; a role that does not fails the compile, naming it. Empty: not checked."""
    max_gpu_tasks: int = 0
    """At most this many GPU tasks of one run at a time (its GPU tasks run in this many chains);
    0: no cap. Not applied where the cluster's Kueue queues admit the GPU pods."""
    scratch_storage_class: str = ""
    """Empty: /scratch is an emptyDir on the node's disk. A StorageClass name: a generic
    ephemeral volume of that class, provisioned per pod."""
    shared_secrets: list[SecretEnv] = field(default_factory=list)
    """Secrets every role gets, besides the chart's (added from the cluster settings)."""
    config_maps: list[ConfigMapEnv] = field(default_factory=list)
    """ConfigMaps every role gets as env."""
    env: dict[str, str] = field(default_factory=dict)
    """Environment variables every role gets; a cluster compile adds the store endpoint,
    region and addressing style of the cluster settings (SATK8S_S3_*)."""
    generate: ComputeProfile = field(default_factory=ComputeProfile)
    judge: ComputeProfile = field(default_factory=ComputeProfile)
    external_judge: ComputeProfile = field(default_factory=ComputeProfile)
    train: ComputeProfile = field(default_factory=ComputeProfile)
    evaluate: ComputeProfile = field(default_factory=ComputeProfile)
    cpu: ComputeProfile = field(default_factory=ComputeProfile)


@dataclass
class ParallelConfig:
    """Data-parallel sampling and scoring: a step over a large pool runs as K part tasks, each
    on its own GPUs, merged by a CPU task (`satk8s.steps.parts`). 1: one task; 0: K from the
    pool's size, one part per `questions_per_part` questions, at most `max_parts`."""

    generate: int = 1
    """Part tasks of `generate` (cut at whole generation shards)."""
    signals: int = 1
    """Part tasks of each GPU signal (entropy, self_judge, an external judge model)."""
    evaluate: int = 1
    """Part tasks of each evaluation."""
    questions_per_part: int = 2000
    """With K = 0: the pool's questions per part task."""
    max_parts: int = 16
    """With K = 0: the most part tasks a step gets."""


@dataclass
class StoreConfig:
    root: str = MISSING
    """Store root: a local path or file:// URI (made absolute), or s3://bucket/prefix. Empty:
    the cluster's store, `storeRoot` of its satk8s-settings (`satk8s.cluster.settings`)."""


@dataclass
class GridConfig:
    """One experiment grid: what to run (cells) and every step's settings."""

    name: str = MISSING
    """The grid's name (its file under conf/grid/)."""
    description: str = ""
    model: ModelConfig = MISSING
    task: TaskConfig = MISSING
    signals: list[str] = field(default_factory=list)
    """Cell signals (not the external judge). The controls (random, length, logprob) are
    scored and calibrated either way."""
    algorithms: list[str] = field(default_factory=list)
    """Cell algorithms: `sft` gets one signal-free cell per seed, the others one per signal."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Training seeds: every cell is trained and evaluated once per seed."""
    generate: dict[str, Any] = field(default_factory=dict)
    """GenerateConfig settings (the model comes from `model`)."""
    saturate: dict[str, Any] = field(default_factory=dict)
    """SaturateConfig settings (`split` is always the generated split)."""
    signal: SignalSettings = field(default_factory=SignalSettings)
    calibrate: dict[str, Any] = field(default_factory=dict)
    """CalibrateConfig settings."""
    judge_gate: dict[str, Any] = field(default_factory=dict)
    """JudgeGate settings (satk8s/signals/gate.py) for every cell trained on a signal: a cell
    whose judge fails them (defaults: label mass >= 0.5, position bias within [0.35, 0.65])
    is not trained and is reported as gated. `judge_gate.enabled=false` turns it off."""
    algorithm: dict[str, AlgorithmSettings] = field(default_factory=dict)
    """Per-algorithm dataset and trainer settings, by algorithm name."""
    train: dict[str, Any] = field(default_factory=dict)
    """TrainConfig settings of every cell (algorithm and seed come from the cell)."""
    evaluate: dict[str, Any] = field(default_factory=dict)
    """EvalConfig settings of every evaluation, the base model's included."""
    report: dict[str, Any] = field(default_factory=dict)
    """ReportConfig settings."""
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    """Part tasks of generate, signals and evaluate over a large pool."""
    store: StoreConfig = field(default_factory=StoreConfig)


# ----------------------------------------------------------------------------- composition


@contextmanager
def conf_dir() -> Iterator[Path]:
    """The config folder shipped as package data of `satk8s.pipelines`, as a real directory."""
    with resources.as_file(resources.files("satk8s.pipelines") / "conf") as path:
        yield Path(path)


def _options(root: Path, group: str) -> list[str]:
    return sorted(p.stem for p in (root / group).glob("*.yaml"))


def known_grids() -> list[str]:
    """Names of the grids in conf/grid/."""
    with conf_dir() as root:
        return _options(root, "grid")


def _parse_overrides(overrides: Sequence[str]) -> tuple[list[str], list[tuple[str, dict]]]:
    """Split overrides into those Hydra applies and dict values applied afterwards (replace).

    A plain `key=value` on a config key (not a group) becomes `++key=value`, so a step setting
    the YAML does not mention needs no `+`."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    hydra_overrides: list[str] = []
    replacements: list[tuple[str, dict]] = []
    for item in overrides:
        try:
            override = parser.parse_override(item)
        except HydraException as err:
            key = item.split("=", 1)[0].lstrip("+~") or "overrides"
            message = str(err).splitlines()[0]
            raise ConfigError(key, f"cannot parse override {item!r}: {message}") from None
        key = override.key_or_group
        if override.is_sweep_override():
            raise ConfigError(
                key, f"{item!r} is a sweep; a grid takes lists instead (e.g. seeds=[0,1,2])"
            )
        plain_change = not (override.is_add() or override.is_delete() or override.is_force_add())
        if not plain_change or key in GROUPS or override.package is not None:
            hydra_overrides.append(item)
        elif isinstance(override.value(), dict):
            replacements.append((key, override.value()))
        else:
            hydra_overrides.append(f"++{item}")
    return hydra_overrides, replacements


def _composition_error(err: Exception, root: Path) -> ConfigError:
    """A Hydra composition error as a ConfigError naming the group or key."""
    text = str(err)
    missing = re.search(r"Could not (?:find|load) '([^']+)'", text)
    if missing:
        group, _, option = missing.group(1).rpartition("/")
        if group in GROUPS:
            known = ", ".join(_options(root, group))
            return ConfigError(group, f"unknown option '{option}'; known: {known}")
    named = re.search(r"'([^']+)'", text)
    lines = [line for line in text.splitlines() if line.strip()]
    return ConfigError(named.group(1) if named else "overrides", " ".join(lines[:2]))


def _compose(name: str, overrides: Sequence[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    with conf_dir() as root:
        grids = _options(root, "grid")
        if name not in grids:
            raise ConfigError("grid", f"unknown grid '{name}'; known: {', '.join(grids)}")
        hydra_overrides, replacements = _parse_overrides(overrides)
        # The context manager clears Hydra's global state on the way out, errors included.
        with initialize_config_dir(config_dir=str(root), version_base="1.3", job_name="satk8s"):
            try:
                config = compose(config_name=f"grid/{name}", overrides=hydra_overrides)
            except HydraException as err:
                raise _composition_error(err, root) from None
    for key, value in replacements:
        try:
            OmegaConf.update(config, key, value, merge=False, force_add=True)
        except OmegaConfBaseException as err:
            raise ConfigError(key, str(err).splitlines()[0]) from None
    return config


def _typed(composed: DictConfig) -> GridConfig:
    """The composed config checked against `GridConfig` (types, unknown keys, missing parts)."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(GridConfig), composed)
        OmegaConf.resolve(merged)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        raise ConfigError(str(key), str(err).splitlines()[0]) from None
    if OmegaConf.is_missing(merged, "model"):
        raise ConfigError("model", "the grid chooses no model; add model=<option>")
    if OmegaConf.is_missing(merged, "task"):
        raise ConfigError("task", "the grid chooses no task; add task=<option>")
    try:
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        raise ConfigError(str(key), str(err).splitlines()[0]) from None


def load_grid(name: str, overrides: Sequence[str] = ()) -> GridConfig:
    """Compose grid `name` from conf/ with Hydra overrides, type-check it and `check_grid` it.

    Step settings are checked when the grid is expanded (`expand`, `load_plan`)."""
    grid = _typed(_compose(name, overrides))
    check_grid(grid)
    return grid


# ----------------------------------------------------------------------------- checks


def cell_signals() -> tuple[str, ...]:
    """Signals a cell can be built with: every registered signal but the external judge."""
    from satk8s.steps.signals import SIGNALS

    return tuple(s for s in SIGNALS if s != EXTERNAL_JUDGE)


def known_algorithms() -> tuple[str, ...]:
    from satk8s.training.datasets import ALGORITHMS

    return tuple(ALGORITHMS)


def _no_repeats(field_name: str, values: Sequence[Any]) -> None:
    repeated = sorted({str(v) for v in values if list(values).count(v) > 1})
    if repeated:
        raise ConfigError(field_name, f"listed more than once: {', '.join(repeated)}")


AUTO_FIELDS = ("cpu", "memory", "shm_size", "scratch_size")
"""Profile fields a preset may leave at "auto" (`satk8s.grid.compute`)."""
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|K|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$")


def _check_profile(path: str, profile: ComputeProfile) -> None:
    for name in AUTO_FIELDS:
        value = getattr(profile, name)
        if value and value != "auto" and not _QUANTITY.match(value):
            raise ConfigError(
                f"{path}.{name}", f"'{value}' is not a Kubernetes quantity (e.g. 8, 500m, 16Gi)"
            )
    for i, term in enumerate(profile.node_affinity):
        if term.operator not in ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"):
            raise ConfigError(
                f"{path}.node_affinity[{i}].operator", f"unknown operator '{term.operator}'"
            )
    if profile.accelerator_count < 0:
        raise ConfigError(f"{path}.accelerator_count", "must be >= 0")
    if profile.accelerator_count and not profile.accelerator_type:
        raise ConfigError(
            f"{path}.accelerator_type", "accelerators need a resource type, e.g. nvidia.com/gpu"
        )
    if profile.nodes < 1 or profile.processes < 0:
        raise ConfigError(f"{path}.nodes", "needs nodes >= 1 and processes >= 0")
    if (profile.nodes > 1 or profile.processes) and not path.endswith(".train"):
        raise ConfigError(
            f"{path}.nodes", "only the train role trains in several pods or processes"
        )
    if profile.accelerator_count and profile.processes not in (0, profile.accelerator_count):
        raise ConfigError(
            f"{path}.processes",
            f"one process per accelerator: {profile.accelerator_count} (or 0), got "
            f"{profile.processes}",
        )
    if profile.retries < 0:
        raise ConfigError(f"{path}.retries", f"must be >= 0, got {profile.retries}")
    if profile.backoff_factor < 1:
        raise ConfigError(f"{path}.backoff_factor", f"must be >= 1, got {profile.backoff_factor}")
    for i, toleration in enumerate(profile.tolerations):
        if toleration.operator not in ("Exists", "Equal"):
            raise ConfigError(
                f"{path}.tolerations[{i}].operator",
                f"must be Exists or Equal, got '{toleration.operator}'",
            )
        if toleration.effect not in ("", "NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise ConfigError(
                f"{path}.tolerations[{i}].effect",
                f"must be NoSchedule, PreferNoSchedule, NoExecute or empty, "
                f"got '{toleration.effect}'",
            )


def _check_compute(compute: ComputeConfig) -> None:
    from satk8s.cluster.gpus import CLOUDS, catalogue

    if compute.cloud and compute.cloud not in CLOUDS:
        raise ConfigError(
            "compute.cloud", f"unknown cloud '{compute.cloud}'; known: {', '.join(CLOUDS)}"
        )
    if compute.gpu:
        catalogue().gpu(compute.gpu)
    if compute.shape:
        shape = catalogue().shape(compute.shape)
        if compute.gpu and shape.gpu != compute.gpu:
            raise ConfigError(
                "compute.shape",
                f"{shape.name} carries {shape.gpu} GPUs, not compute.gpu={compute.gpu}",
            )
    if compute.max_gpu_tasks < 0:
        raise ConfigError("compute.max_gpu_tasks", f"must be >= 0, got {compute.max_gpu_tasks}")


def check_grid(grid: GridConfig) -> None:
    """What the types cannot say: names, cells, compute profiles. Raises ConfigError."""
    from satk8s.grid.plan import ROLES
    from satk8s.store.uri import scheme_of

    if not grid.model.tiny and not grid.model.path:
        raise ConfigError("model.path", f"model '{grid.model.name}' names no hub id or directory")
    if grid.model.tiny and grid.model.path:
        raise ConfigError("model.path", "a tiny model is built by the tiny step; leave path empty")

    if not grid.seeds:
        raise ConfigError("seeds", "name at least one training seed")
    _no_repeats("seeds", grid.seeds)

    algorithms = known_algorithms()
    if not grid.algorithms:
        raise ConfigError("algorithms", f"name at least one of: {', '.join(algorithms)}")
    _no_repeats("algorithms", grid.algorithms)
    for name in grid.algorithms:
        if name not in algorithms:
            raise ConfigError(
                "algorithms", f"unknown algorithm '{name}'; known: {', '.join(algorithms)}"
            )
    for name in grid.algorithm:
        if name not in algorithms:
            raise ConfigError(
                f"algorithm.{name}", f"unknown algorithm '{name}'; known: {', '.join(algorithms)}"
            )

    signals = cell_signals()
    _no_repeats("signals", grid.signals)
    for name in grid.signals:
        if name == EXTERNAL_JUDGE:
            raise ConfigError(
                "signals",
                "'external_judge' is the reference that calibration measures the signals "
                "against, not a cell signal; configure it under signal.external_judge",
            )
        if name not in (*signals, NO_SIGNAL):
            raise ConfigError("signals", f"unknown signal '{name}'; known: {', '.join(signals)}")
    scored = [s for s in grid.signals if s != NO_SIGNAL]
    needs_signal = [a for a in grid.algorithms if a != "sft"]
    if needs_signal and (NO_SIGNAL in grid.signals or not scored):
        raise ConfigError(
            "signals",
            f"algorithm '{needs_signal[0]}' needs a signal to rank solutions; signal "
            f"'{NO_SIGNAL}' is only for sft (known signals: {', '.join(signals)})",
        )

    for role in ROLES:
        _check_profile(f"compute.{role}", getattr(grid.compute, role))
    _check_compute(grid.compute)
    for name in ("generate", "signals", "evaluate", "questions_per_part", "max_parts"):
        value = getattr(grid.parallel, name)
        if value < (1 if name in ("questions_per_part", "max_parts") else 0):
            raise ConfigError(f"parallel.{name}", f"must be at least 0 (1 for sizes), got {value}")

    try:
        scheme_of(grid.store.root)
    except ConfigError as err:
        raise ConfigError("store.root", str(err).split(": ", 1)[1]) from None
