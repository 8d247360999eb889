"""The generation interface: sampling settings, the sample record, and the backend protocol.

Every backend (`hf` for tests and CPU demos, `vllm` for GPU production) takes the same
`SamplingConfig` and returns the same `Sample` records, so later steps never ask which one ran.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

from satk8s.errors import ConfigError
from satk8s.tasks.base import STOP_STRINGS

BACKENDS = ("hf", "vllm")


@dataclass(frozen=True)
class SamplingConfig:
    """How completions are sampled. The same fields mean the same thing in every backend."""

    n: int = 8
    """Samples per prompt."""
    temperature: float = 1.0
    """Softmax temperature; 0 means greedy decoding (then all n samples are identical)."""
    top_p: float = 1.0
    """Nucleus sampling mass in (0, 1]; 1.0 disables it."""
    top_k: int = 0
    """Keep only the k most likely tokens; 0 disables it (true sampling). transformers would
    otherwise default to 50, so backends always pass it explicitly."""
    max_new_tokens: int = 256
    """Most tokens generated per sample; a sample that hits it ends with finish_reason "length"."""
    stop: tuple[str, ...] = STOP_STRINGS
    """Generation stops at the first of these strings; the completion text excludes it."""
    seed: int = 0
    """Run-level seed; the same (prompts, config, seed) give the same samples."""

    def __post_init__(self) -> None:
        # Hydra and JSON hand lists; keep the field a tuple so the config stays hashable.
        object.__setattr__(self, "stop", tuple(self.stop))
        if self.n < 1:
            raise ConfigError("n", f"must be at least 1, got {self.n}")
        if self.temperature < 0:
            raise ConfigError("temperature", f"must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError("top_p", f"must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ConfigError("top_k", f"must be >= 0 (0 = disabled), got {self.top_k}")
        if self.max_new_tokens < 1:
            raise ConfigError("max_new_tokens", f"must be at least 1, got {self.max_new_tokens}")
        if any(not s for s in self.stop):
            raise ConfigError("stop", "stop strings must be non-empty")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d

    def to_json(self) -> str:
        """Stable text (sorted keys): stored with every sample and usable as a cache key."""
        return json.dumps(self.to_dict(), sort_keys=True)


@dataclass
class Sample:
    """One sampled completion of one prompt.

    `completion` is the text cut at the first stop string (the stop string excluded) and
    without special tokens. `token_ids` are the generated tokens kept: every token up to and
    including the one that ended generation, i.e. the eos token, or the token that completed
    the stop string (so the ids may decode to a little more than `completion`, as in vLLM).
    `token_logprobs[i]` is the log-probability of `token_ids[i]` under the model's RAW
    distribution: log_softmax of the unprocessed logits, with no temperature, top-k or top-p
    applied. This is vLLM's default "raw_logprobs" mode, and it is what a teacher-forced pass
    of the policy gives, so training-time logprobs compare directly.
    `finish_reason` is "stop" (eos or a stop string) or "length" (max_new_tokens reached).
    """

    question_id: str
    sample_index: int
    prompt: str
    completion: str
    token_ids: list[int]
    token_logprobs: list[float]
    finish_reason: str


@runtime_checkable
class GenerationBackend(Protocol):
    """Anything that samples completions. `model_id` names the model in the output records."""

    model_id: str

    def generate(
        self, prompts: Sequence[tuple[str, str]], sampling: SamplingConfig, seed: int
    ) -> list[Sample]:
        """`sampling.n` samples per (question_id, prompt) pair, in prompt order then sample
        index. `seed` (not `sampling.seed`) seeds this call; the same call gives the same
        samples."""
        ...


def load_backend(name: str, model: str, **options: Any) -> GenerationBackend:
    """The backend `name` ("hf" or "vllm") serving `model` (a hub id or a local directory)."""
    if name == "hf":
        from satk8s.generation.hf import HFBackend

        return HFBackend(model, **options)
    if name == "vllm":
        # Imported only here: vLLM exists only in the GPU image.
        from satk8s.generation.vllm import VLLMBackend

        return VLLMBackend(model, **options)
    raise ConfigError("backend", f"unknown backend '{name}'; choose one of: {', '.join(BACKENDS)}")


def stable_seed(*parts: object, bits: int = 31) -> int:
    """A seed in [0, 2**bits) from `parts`, the same in every process (unlike `hash()`)."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") % 2**bits


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """`text` up to the earliest stop string (excluded), and whether one was found."""
    cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
    if not cuts:
        return text, False
    return text[: min(cuts)], True
