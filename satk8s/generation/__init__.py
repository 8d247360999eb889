"""Step 2, generate: n sampled completions per question, with token ids and logprobs.

Backends are loaded by name (`load_backend`). `HFBackend` and `VLLMBackend` are importable
from here too, but lazily: importing this package loads neither transformers nor vLLM.
"""

from typing import Any

from satk8s.generation.base import (
    GenerationBackend,
    Sample,
    SamplingConfig,
    load_backend,
)
from satk8s.generation.shards import (
    SAMPLES_SCHEMA,
    generate_sharded,
    read_samples,
    samples_to_table,
)

__all__ = [
    "SAMPLES_SCHEMA",
    "GenerationBackend",
    "HFBackend",
    "Sample",
    "SamplingConfig",
    "VLLMBackend",
    "generate_sharded",
    "load_backend",
    "read_samples",
    "samples_to_table",
]


def __getattr__(name: str) -> Any:
    if name == "HFBackend":
        from satk8s.generation.hf import HFBackend

        return HFBackend
    if name == "VLLMBackend":
        from satk8s.generation.vllm import VLLMBackend

        return VLLMBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
