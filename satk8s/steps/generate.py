"""Step `generate`: n samples per question with token ids and logprobs, in resumable shards."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from satk8s.errors import ConfigError
from satk8s.generation import SamplingConfig, generate_sharded, load_backend
from satk8s.generation.context import check_context_window
from satk8s.steps.outputs import commit_partial, input_path, step_output
from satk8s.steps.parts import PartConfig
from satk8s.store.faults import fault_point
from satk8s.store.stage_model import resolve_model
from satk8s.tasks.io import read_questions

BACKENDS = ("hf", "vllm")


@dataclass(frozen=True)
class GenerateConfig:
    model: str = ""
    """The policy: a local checkpoint directory or a hub id (`Qwen/Qwen3-1.7B-Base`)."""
    backend: str = "hf"
    """`hf` (transformers; CPU or GPU) or `vllm` (GPU only)."""
    split: str = "train"
    """Which question split to sample."""
    limit: int | None = None
    """Sample only the first N questions of the split."""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    """n, temperature, top_p, top_k, max_new_tokens, stop strings, seed."""
    shard_size: int = 64
    """Questions per committed shard: a restarted run resumes after the last finished shard."""
    batch_size: int = 64
    """Sequences per forward batch (`hf`)."""
    tensor_parallel_size: int = 1
    """GPUs per model (`vllm`)."""
    part: PartConfig = field(default_factory=PartConfig)
    """This task's share of the pool (whole shards; `satk8s.steps.parts`); a grid sets it from
    `parallel.generate`."""

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("model", "no model given; pass a checkpoint directory or a hub id")
        if self.backend not in BACKENDS:
            raise ConfigError(
                "backend", f"unknown backend '{self.backend}'; choose one of: hf, vllm"
            )
        for name in ("shard_size", "batch_size", "tensor_parallel_size"):
            if getattr(self, name) < 1:
                raise ConfigError(name, f"must be >= 1, got {getattr(self, name)}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError("limit", f"must be >= 1 or unset, got {self.limit}")


def generate(
    questions: str, out: str, config: GenerateConfig, force: bool = False
) -> dict[str, Any]:
    """Writes `shard-NNNNN.parquet` files of samples (schema: `satk8s.generation.SAMPLES_SCHEMA`)."""
    with step_output(out, "generate", config, {"questions": questions}, force) as output:
        if output.cached is not None:
            return output.cached
        started = time.time()
        qs, prompts = read_questions(input_path(questions, "questions", "step"), config.split)
        qs, prompts = qs[: config.limit], prompts[: config.limit]
        shards = range(*config.part.bounds(-(-len(qs) // config.shard_size)))
        model = resolve_model(config.model)  # a hub id, a local directory or an s3:// prefix
        # Before any output is opened or weights loaded: prompts must leave room to generate.
        first, stop = shards.start * config.shard_size, shards.stop * config.shard_size
        check_context_window(
            model,
            [(q.id, p) for q, p in zip(qs[first:stop], prompts[first:stop], strict=True)],
            config.sampling.max_new_tokens,
            "sampling.max_new_tokens",
        )
        root = output.open()  # committed shards come back: the run resumes after them
        options = (
            {"batch_size": config.batch_size}
            if config.backend == "hf"
            else {"tensor_parallel_size": config.tensor_parallel_size}
        )
        backend = load_backend(config.backend, model, **options)
        if config.model.startswith("s3://"):
            backend.model_id = config.model  # the reference, not this machine's cache path

        def shard_done(path: Path) -> None:
            commit_partial(root, path.name)
            fault_point("after-shard")

        summary = generate_sharded(
            backend,
            qs,
            prompts,
            config.sampling,
            root,
            config.shard_size,
            on_shard=shard_done,
            shards=shards,
        )
        return output.commit(root, summary, started)
