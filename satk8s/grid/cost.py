"""GPU-hours a grid will take, estimated before it is submitted (`satk8s grid show`).

Every figure here is an ESTIMATE, not a measurement: no GPU run of satk8s is recorded yet.

Work: token counts from the grid's own limits, as upper bounds. Every sample runs to
`max_new_tokens`; a prompt takes the training `max_length` less the generation budget (the
grids size max_length to hold a few-shot prompt and a solution); every question of the pool
is taken as saturated; every training example fills `max_length`.

Speed: a roofline per GPU type from NVIDIA's datasheet figures (`GPUS`, from the GPU catalogue
`satk8s/cluster/gpus.yaml`: dense bf16 Tensor Core FLOP/s and HBM bandwidth) and the model's
shape (`MODELS`), at stated utilisations:
- training: (6 + 2 with gradient checkpointing) x the matmul parameters per token, at
  `TRAIN_MFU` of peak (DPO adds a 2 x parameters reference forward per token);
- scoring (entropy, judges; teacher-forced, no sampling): 2 x parameters per token at
  `FORWARD_MFU`;
- sampling (generate, evaluate): vLLM-style batched decoding of `DECODE_BATCH` sequences per
  step, each step the slower of its FLOPs at `FORWARD_MFU` and its memory traffic (weights
  once, every sequence's KV cache) at `BANDWIDTH_EFFICIENCY` of HBM bandwidth.
Attention FLOPs are left out (short sequences). Each GPU task also holds its GPUs for
`TASK_OVERHEAD_S` (pod start, image pull, model load). `benchmarks/gpu.py` measures the real
figures on a GPU; `--throughput` reads its JSON in place of the roofline.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from satk8s.errors import ConfigError

if TYPE_CHECKING:
    from satk8s.cluster.gpus import GpuType
    from satk8s.grid.plan import Node, Plan


@dataclass(frozen=True)
class GPU:
    name: str
    bf16_tflops: float
    """Dense bf16 Tensor Core peak (the datasheets quote 2x with 2:4 sparsity)."""
    hbm_tb_s: float
    """Memory bandwidth, TB/s."""
    memory_gb: float
    """Memory per GPU, GB."""
    source: str


def _datasheet_gpus() -> dict[str, GPU]:
    from satk8s.cluster.gpus import catalogue

    return {
        g.name: GPU(g.name, g.bf16_tflops, g.hbm_tb_s, g.memory_gb, g.datasheet)
        for g in catalogue().gpus.values()
        if g.bf16_tflops and g.hbm_tb_s
    }


GPUS: dict[str, GPU] = _datasheet_gpus()
"""The catalogue's GPU types with datasheet figures, for the roofline (a10g, t4 and v100 have
none here: NVIDIA publishes no bf16 figure for them). The memory plan reads every type
(`satk8s.cluster.gpus.catalogue`)."""
DEFAULT_GPU = "h100-80gb"

# Stated assumptions, not measurements (see the module docstring).
TRAIN_MFU = 0.35
FORWARD_MFU = 0.45
BANDWIDTH_EFFICIENCY = 0.7
DECODE_BATCH = 256
"""vLLM's default `max_num_seqs`: sequences decoded together per step."""
TASK_OVERHEAD_S = 180.0
TRAIN_BYTES_PER_PARAM = 16
"""Full fine-tuning in mixed precision with AdamW: float32 weights, gradients and two moments
(4 + 4 + 8 bytes). The rule of thumb of the ZeRO paper (Rajbhandari et al. 2020, "ZeRO: Memory
Optimizations Toward Training Trillion Parameter Models", section 3.1: 16 bytes per parameter
for mixed-precision Adam)."""
STATE_BYTES = {
    ("float32", "adamw"): TRAIN_BYTES_PER_PARAM,
    ("float32", "adamw_8bit"): 10,  # 8-bit moments: 2 bytes (Dettmers et al. 2022, 8-bit Adam)
    ("float32", "paged_adamw_8bit"): 10,
    ("bfloat16", "adamw"): 8,  # bf16 weights and gradients; AdamW keeps moments in their dtype
    ("bfloat16", "adamw_8bit"): 6,
    ("bfloat16", "paged_adamw_8bit"): 6,
}
"""Bytes per trained parameter: weights, gradients and optimizer states."""
ACTIVATION_BYTES_PER_TOKEN_HIDDEN = 34
"""Activation bytes per token x hidden size in one transformer layer in 16-bit, with flash
attention (no stored attention scores): Korthikanti et al. 2022, "Reducing Activation
Recomputation in Large Transformer Models", section 4.1 (34 s b h per layer). With gradient
checkpointing only each layer's input stays (2 bytes), plus one layer recomputed."""
CUDA_OVERHEAD_GB = 2.0
"""CUDA context, cuBLAS/NCCL workspaces and allocator slack per GPU."""
FSDP_STEPS = (2, 4, 8)
"""GPU counts the fit table tries for FSDP full fine-tuning (one node)."""

GSM8K_SPLITS = {"train": 7473, "test": 1319}
"""Question counts of the openai/gsm8k dataset card (main config)."""


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a decoder-only transformer that set its FLOPs and memory traffic."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool

    @property
    def matmul_params(self) -> int:
        """Parameters in matrix products per token: every layer's attention and MLP
        projections, and the LM head (an embedding lookup costs no FLOPs)."""
        attention = self.hidden * self.head_dim * (2 * self.heads + 2 * self.kv_heads)
        mlp = 3 * self.hidden * self.intermediate
        return self.layers * (attention + mlp) + self.vocab * self.hidden

    @property
    def params(self) -> int:
        """Every parameter (norms left out)."""
        return self.matmul_params + (0 if self.tied else self.vocab * self.hidden)

    @property
    def weight_bytes(self) -> int:
        """bf16 weights read once per decoding step (norms left out)."""
        return 2 * self.params

    @property
    def kv_bytes_per_token(self) -> int:
        """bf16 keys and values one token of context holds in every layer."""
        return 2 * 2 * self.layers * self.kv_heads * self.head_dim

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ModelShape:
        """From a Hugging Face `config.json` of a Llama/Qwen-style model."""
        heads = config["num_attention_heads"]
        return cls(
            layers=config["num_hidden_layers"],
            hidden=config["hidden_size"],
            heads=heads,
            kv_heads=config.get("num_key_value_heads") or heads,
            head_dim=config.get("head_dim") or config["hidden_size"] // heads,
            intermediate=config["intermediate_size"],
            vocab=config["vocab_size"],
            tied=bool(config.get("tie_word_embeddings", False)),
        )


_QWEN3_1_7B = ModelShape(28, 2048, 16, 8, 128, 6144, 151936, True)
MODELS: dict[str, ModelShape] = {
    # config.json of each model on the Hugging Face hub (Qwen organisation).
    "Qwen/Qwen3-1.7B-Base": _QWEN3_1_7B,
    "Qwen/Qwen3-1.7B": _QWEN3_1_7B,
    "Qwen/Qwen3-8B": ModelShape(36, 4096, 32, 8, 128, 12288, 151936, False),
    "Qwen/Qwen3-32B": ModelShape(64, 5120, 64, 8, 128, 25600, 151936, False),
}


def model_shape(model: str) -> ModelShape | None:
    """A known hub model's shape, or a local checkpoint's from its config.json; else None."""
    if model in MODELS:
        return MODELS[model]
    config = Path(model).expanduser() / "config.json"
    if model and config.is_file():
        return ModelShape.from_config(json.loads(config.read_text()))
    return None


@dataclass(frozen=True)
class TrainingMemory:
    """What one training process holds on its GPU, in bytes (an estimate: see `train_memory`)."""

    weights_and_states: float
    activations: float
    overhead: float

    @property
    def total(self) -> float:
        return self.weights_and_states + self.activations + self.overhead


def lora_params(shape: ModelShape, rank: int = 16) -> int:
    """Parameters of LoRA adapters of rank `rank` on every linear layer but the LM head."""
    h, q, kv, i = (
        shape.hidden,
        shape.heads * shape.head_dim,
        shape.kv_heads * shape.head_dim,
        shape.intermediate,
    )
    per_layer = (h + q) + 2 * (h + kv) + (q + h) + 2 * (h + i) + (i + h)
    return rank * per_layer * shape.layers


def train_memory(
    shape: ModelShape,
    *,
    lora: bool = False,
    weights_dtype: str = "float32",
    optimizer: str = "adamw",
    micro_batch: int = 8,
    max_length: int = 1024,
    gradient_checkpointing: bool = True,
    shards: int = 1,
    lora_rank: int = 16,
) -> TrainingMemory:
    """Memory of one training process: trained parameters x `STATE_BYTES` (split `shards` ways
    by FSDP), the frozen base's weights for LoRA (2 bytes in bf16), activations of one
    micro-batch (`ACTIVATION_BYTES_PER_TOKEN_HIDDEN`, and the fp32 logits), `CUDA_OVERHEAD_GB`."""
    if lora:
        states = shape.params * 2 + lora_params(shape, lora_rank) * TRAIN_BYTES_PER_PARAM
    else:
        states = shape.params * STATE_BYTES[(weights_dtype, optimizer)]
    tokens = micro_batch * max_length
    per_layer = ACTIVATION_BYTES_PER_TOKEN_HIDDEN * tokens * shape.hidden
    if gradient_checkpointing:
        layers = 2 * tokens * shape.hidden * shape.layers + per_layer
    else:
        layers = per_layer * shape.layers
    logits = 4 * tokens * shape.vocab
    return TrainingMemory(states / shards, layers + logits, CUDA_OVERHEAD_GB * 1e9)


def fit_options(
    shape: ModelShape, gpu: GpuType, micro_batch: int = 1, max_length: int = 1024
) -> list[str]:
    """What fits one training process per GPU of type `gpu` (gradient checkpointing on):
    `full` (fp32 master weights, AdamW), `full bf16` (bf16 weights; bf16 GPUs only),
    `full 8-bit Adam`, `LoRA` (bf16 base, or fp16 on a pre-bf16 GPU), then the fewest GPUs
    (`FSDP_STEPS`) that shard a `full` run: `FSDP xN`."""
    limit = gpu.memory_gb * 1e9
    common = dict(micro_batch=micro_batch, max_length=max_length)
    candidates = [
        ("full", train_memory(shape, **common)),
        (
            "full bf16",
            train_memory(shape, weights_dtype="bfloat16", **common) if gpu.bf16 else None,
        ),
        ("full 8-bit Adam", train_memory(shape, optimizer="adamw_8bit", **common)),
        ("LoRA", train_memory(shape, lora=True, **common)),
    ]
    found = [name for name, memory in candidates if memory and memory.total <= limit]
    if "full" not in found:
        shards = next(
            (n for n in FSDP_STEPS if train_memory(shape, shards=n, **common).total <= limit), None
        )
        if shards:
            found.append(f"FSDP x{shards}")
    return found


def fit_table(
    models: Mapping[str, ModelShape], gpus: list[str], micro_batch: int = 1, max_length: int = 1024
) -> str:
    """A Markdown table: rows the models, columns the GPU types, cells what fits
    (`fit_options`), `-` when nothing does on up to 8 GPUs."""
    from satk8s.cluster.gpus import catalogue

    head = "| model | " + " | ".join(gpus) + " |"
    rule = "| --- |" + " --- |" * len(gpus)
    rows = [head, rule]
    for name, shape in models.items():
        cells = [
            ", ".join(fit_options(shape, catalogue().gpu(g), micro_batch, max_length)) or "-"
            for g in gpus
        ]
        rows.append(f"| {name} ({shape.params / 1e9:.1f}B) | " + " | ".join(cells) + " |")
    return "\n".join(rows)


@dataclass(frozen=True)
class Throughput:
    """Tokens/s per GPU for each kind of work on one GPU type: the roofline, or measured
    figures (`measured`: kind -> (tokens/s, FLOPs per token of the measured run))."""

    gpu: GPU
    measured: Mapping[str, tuple[float, float]] | None = None

    @property
    def source(self) -> str:
        if self.measured:
            return (
                f"measured on {self.gpu.name} by benchmarks/gpu.py ({', '.join(self.measured)}), "
                "scaled by FLOPs per token; roofline for the rest"
            )
        return (
            f"roofline estimate: {self.gpu.bf16_tflops:g} bf16 TFLOP/s dense and "
            f"{self.gpu.hbm_tb_s:g} TB/s ({self.gpu.source}); MFU {TRAIN_MFU} training, "
            f"{FORWARD_MFU} scoring and decoding, {BANDWIDTH_EFFICIENCY:.0%} of bandwidth, "
            f"{DECODE_BATCH} sequences per decoding step, {TASK_OVERHEAD_S:g} s per GPU task"
        )

    def rate(self, work: Work, shape: ModelShape) -> float:
        """Tokens/s of `work` through a model of `shape` on one GPU."""
        flops = work.flops_per_param * shape.matmul_params
        if self.measured and work.kind in self.measured:
            tokens_s, measured_flops = self.measured[work.kind]
            return tokens_s * measured_flops / flops
        peak = self.gpu.bf16_tflops * 1e12
        if work.kind == "train":
            return TRAIN_MFU * peak / flops
        if work.kind == "forward":
            return FORWARD_MFU * peak / flops
        if work.kind != "decode":
            raise ValueError(f"unknown kind of work {work.kind!r}")
        compute = flops * DECODE_BATCH / (FORWARD_MFU * peak)
        traffic = shape.weight_bytes + DECODE_BATCH * work.context * shape.kv_bytes_per_token
        memory = traffic / (BANDWIDTH_EFFICIENCY * self.gpu.hbm_tb_s * 1e12)
        return DECODE_BATCH / max(compute, memory)


def load_throughput(gpu: str, measured_file: Path | None = None) -> Throughput:
    """The roofline for `gpu` (a key of GPUS), with the figures `benchmarks/gpu.py` wrote to
    `measured_file` (its "throughput" block: kind -> tokens/s and FLOPs per token) in place
    of the roofline's where given."""
    if gpu not in GPUS:
        raise ConfigError("gpu", f"unknown GPU type '{gpu}'; known: {', '.join(GPUS)}")
    if measured_file is None:
        return Throughput(GPUS[gpu])
    try:
        block = json.loads(Path(measured_file).read_text())["throughput"]
        measured = {
            kind: (float(v["tokens_per_s"]), float(v["flops_per_token"]))
            for kind, v in block.items()
            if v and v.get("tokens_per_s")
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ConfigError(
            "throughput", f"{measured_file}: not a benchmarks/gpu.py result ({err!r})"
        ) from None
    return Throughput(GPUS[gpu], measured)


@dataclass(frozen=True)
class Work:
    """What one GPU task of the plan does: tokens of one kind through one model."""

    tokens: float
    kind: str
    """"train" (forward and backward), "forward" (teacher-forced scoring) or "decode"."""
    model: str
    flops_per_param: float = 2.0
    """FLOPs per token per matmul parameter: 2 forward; training 6, 8 with gradient
    checkpointing (one more forward), +2 for DPO's reference forward."""
    context: float = 0.0
    """Decoding: mean tokens of context each new token attends to (KV cache read)."""


@dataclass(frozen=True)
class _Budget:
    """The grid-wide sizes every node's work is counted from."""

    questions: dict[str, int]
    prompt_tokens: int
    n: int
    new_tokens: int


def _budget(plan: Plan) -> _Budget:
    prepare = next((n.config for n in plan.nodes if n.step == "prepare"), {})
    generate = next((n.config for n in plan.nodes if n.step == "generate"), {})
    train = next((n.config["train"] for n in plan.nodes if n.step == "train"), {})
    sampling = generate.get("sampling", {})
    new_tokens = int(sampling.get("max_new_tokens", 0))
    if prepare.get("task") == "gsm8k":
        limits = {"train": prepare.get("train_limit"), "test": prepare.get("test_limit")}
        fewshot = {"train": int(prepare.get("fewshot", 0)), "test": 0}
        questions = {
            split: min(size - fewshot[split], limits[split] or size)
            for split, size in GSM8K_SPLITS.items()
        }
    else:
        questions = {
            split: sum(prepare.get("arith", {}).get(split, {}).values())
            for split in ("train", "eval_id", "eval_hard")
        }
    max_length = int(train.get("max_length", 0))
    return _Budget(
        questions=questions,
        prompt_tokens=max(max_length - new_tokens, 0),
        n=int(sampling.get("n", 1)),
        new_tokens=new_tokens,
    )


def node_work(node: Node, budget: _Budget) -> Work | None:
    """The work of one node, or None for a step that uses no model; a part task
    (`satk8s.steps.parts`) does its share of the pool."""
    work = _whole_node_work(node, budget)
    count = int((node.config.get("part") or {}).get("count", 1))
    if work is None or count == 1:
        return work
    return Work(work.tokens / count, work.kind, work.model, work.flops_per_param, work.context)


def _whole_node_work(node: Node, budget: _Budget) -> Work | None:
    c = node.config
    model = c.get("model", "")
    questions = budget.questions
    if node.step == "generate":
        sampling = c["sampling"]
        count = questions.get(c["split"], 0)
        count = min(count, c["limit"]) if c.get("limit") else count
        new = sampling["max_new_tokens"]
        tokens = count * sampling["n"] * new
        return Work(tokens, "decode", model, context=budget.prompt_tokens + new / 2)
    if node.step == "evaluate":
        e = c["eval"]
        count = sum(questions.get(s, 0) for s in c["splits"])
        count = min(count, e["limit"] * len(c["splits"])) if e.get("limit") else count
        samples = 1 + (e["samples_for_k"] if e.get("pass_k") else 0)
        new = e["max_new_tokens"]
        return Work(count * samples * new, "decode", model, context=budget.prompt_tokens + new / 2)
    solutions = questions.get("train", 0) * budget.n  # every question saturated: an upper bound
    if node.step == "signals":
        sequence = budget.prompt_tokens + budget.new_tokens
        if c["signal"] == "entropy":
            return Work(solutions * sequence, "forward", model)
        judge = c["self_judge"] if c["signal"] == "self_judge" else c["external_judge"]
        if c["signal"] == "external_judge":
            if judge["kind"] not in ("hf", "vllm"):
                return None
            model = judge["model"]
        if c["signal"] not in ("self_judge", "external_judge"):
            return None
        n = budget.n
        every = n * (n - 1) // 2
        pairs = every if n <= judge["max_all_pairs_n"] else min(judge["pair_budget"], every)
        judged = questions.get("train", 0) * pairs * 2  # both orders
        return Work(judged * (sequence + budget.new_tokens), "forward", model)
    if node.step == "train":
        t = c["train"]
        algorithm = t["algorithm"]
        sequences_per_example = 2 if algorithm == "dpo" else 1
        if t["max_steps"] > 0:
            examples = (
                t["max_steps"] * t["per_device_batch_size"] * t["gradient_accumulation_steps"]
            )
        else:
            pool = questions.get("train", 0)
            examples = math.ceil(
                (pool if algorithm in ("best_of_n", "dpo") else solutions) * t["num_train_epochs"]
            )
        tokens = examples * sequences_per_example * t["max_length"]
        factor = 6 + 2 * (t["gradient_checkpointing"] is True) + 2 * (algorithm == "dpo")
        return Work(tokens, "train", model, flops_per_param=factor)
    return None


def node_train_memory(config: Mapping[str, Any], shape: ModelShape, gpus: int) -> TrainingMemory:
    """Per-GPU memory of a train node's config: FSDP shards over every process of the run."""
    t = config["train"]
    spread = config.get("distributed") or {}
    world = int(spread.get("processes", 1)) * int(spread.get("nodes", 1))
    # LoRA and DDP keep the whole model on every GPU (`satk8s.training.distributed`).
    shards = world if spread.get("strategy", "fsdp") == "fsdp" and not t["lora"] else 1
    return train_memory(
        shape,
        lora=bool(t["lora"]),
        weights_dtype=_weights_dtype(t),
        optimizer=str(t.get("optimizer", "adamw")),
        micro_batch=int(t["per_device_batch_size"]),
        max_length=int(t["max_length"]),
        gradient_checkpointing=t["gradient_checkpointing"] is not False,
        shards=max(shards, 1),
        lora_rank=int(t.get("lora_r", 16)),
    )


def _weights_dtype(train: Mapping[str, Any]) -> str:
    dtype = str(train.get("weights_dtype", "auto"))
    return "bfloat16" if dtype == "bfloat16" else "float32"


@dataclass(frozen=True)
class RoleCost:
    role: str
    tasks: int
    gpus_per_task: int
    tokens: float
    gpu_hours: float
    naive_gpu_hours: float
    unknown_models: tuple[str, ...] = ()
    too_big: tuple[str, ...] = ()
    """Models whose weights (training: and optimizer state) exceed the task's GPU memory."""


def gpu_hours(plan: Plan, throughput: Throughput) -> list[RoleCost]:
    """Estimated GPU-hours per GPU role: this plan (deduplicated) and one pipeline per cell
    (naive: each step's naive run count times the mean of its runs here)."""
    budget = _budget(plan)
    # Steps on a trained checkpoint (evaluate) name no model: it has the policy's shape. A hub
    # model reaches its steps through the stage-model task, whose config names it.
    staged = {n.id: n.config["model"] for n in plan.nodes if n.step == "stage_model"}
    policy = next((n.config.get("model", "") for n in plan.nodes if n.step == "generate"), "")
    policy = staged.get(
        next((n.model_from for n in plan.nodes if n.step == "generate"), ""), policy
    )
    per_node: dict[str, tuple[Node, float, float]] = {}  # id -> (node, tokens, GPU-hours)
    unknown: dict[str, set[str]] = {}
    too_big: dict[str, set[str]] = {}
    # GPUs a task holds: a train task on several nodes holds every node's.
    gpus = {
        role: int(p.get("accelerator_count", 0)) * int(p.get("nodes") or 1)
        for role, p in plan.profiles.items()
    }
    for node in plan.nodes:
        if gpus.get(node.role, 0) <= 0:
            continue
        work = node_work(node, budget)
        hours = TASK_OVERHEAD_S * gpus[node.role] / 3600
        tokens = 0.0
        if work is not None:
            # A model made by an upstream step (the tiny model) has no size before it exists.
            upstream = staged.get(node.model_from or "", "")
            if node.model_from and not upstream:
                model = f"(output of {node.model_from})"  # built by the run: no size yet
            else:
                model = upstream or work.model or policy
            shape = model_shape(model) if not node.model_from or upstream else None
            if shape is None:
                unknown.setdefault(node.role, set()).add(model)
            else:
                tokens = work.tokens
                hours += tokens / throughput.rate(work, shape) / 3600
                if work.kind == "train":
                    needed = node_train_memory(node.config, shape, gpus[node.role]).total
                    limit = throughput.gpu.memory_gb * 1e9
                else:
                    needed = shape.params * 2.0
                    limit = gpus[node.role] * throughput.gpu.memory_gb * 1e9
                if needed > limit:
                    too_big.setdefault(node.role, set()).add(f"{model} ({needed / 1e9:.0f} GB)")
        per_node[node.id] = (node, tokens, hours)
    costs = []
    for role in (r for r in plan.profiles if gpus.get(r, 0) > 0):
        nodes = [(n, t, h) for n, t, h in per_node.values() if n.role == role]
        naive = 0.0
        for step in {n.step for n, _, _ in nodes}:
            runs = [h for n, _, h in nodes if n.step == step]
            naive += plan.naive_counts.get(step, {}).get(role, 0) * sum(runs) / len(runs)
        costs.append(
            RoleCost(
                role=role,
                tasks=len(nodes),
                gpus_per_task=gpus[role],
                tokens=sum(t for _, t, _ in nodes),
                gpu_hours=sum(h for _, _, h in nodes),
                naive_gpu_hours=naive,
                unknown_models=tuple(sorted(unknown.get(role, ()))),
                too_big=tuple(sorted(too_big.get(role, ()))),
            )
        )
    return costs


__all__ = [
    "GPUS",
    "TrainingMemory",
    "fit_options",
    "fit_table",
    "node_train_memory",
    "train_memory",
    "MODELS",
    "GPU",
    "ModelShape",
    "RoleCost",
    "Throughput",
    "Work",
    "gpu_hours",
    "load_throughput",
    "model_shape",
    "node_work",
]
