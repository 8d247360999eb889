"""The vLLM backend: production sampling on GPUs (tensor-parallel for large models).

vLLM is installed only in the GPU image, so it is imported when a backend is built, never at
module import. `to_sample` (the pure mapping from vLLM's output) is tested without vLLM.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from satk8s.generation.base import Sample, SamplingConfig, cut_at_stop, stable_seed


class VLLMBackend:
    """Samples with `vllm.LLM`; returns the same `Sample` records as the hf backend."""

    def __init__(
        self,
        model: str,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        dtype: str = "auto",
        max_model_len: int | None = None,
    ) -> None:
        import vllm

        self.model_id = model
        self._vllm = vllm
        self.llm = vllm.LLM(
            model=model,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            dtype=dtype,
            max_model_len=max_model_len,
            # Logprobs of the unprocessed distribution (no temperature/top-k/top-p): the
            # default, pinned here because Sample.token_logprobs promises it.
            logprobs_mode="raw_logprobs",
        )

    def generate(
        self, prompts: Sequence[tuple[str, str]], sampling: SamplingConfig, seed: int
    ) -> list[Sample]:
        # One seed per question, as in the hf backend: a question's samples do not depend on
        # which other questions are in the call.
        params = [self._params(sampling, stable_seed(seed, qid)) for qid, _ in prompts]
        outputs = self.llm.generate([p for _, p in prompts], params)
        samples = []
        for (qid, prompt), request in zip(prompts, outputs, strict=True):
            for completion in sorted(request.outputs, key=lambda c: c.index):
                samples.append(to_sample(qid, prompt, completion, sampling.stop))
        return samples

    def _params(self, sampling: SamplingConfig, seed: int) -> Any:
        return self._vllm.SamplingParams(
            n=sampling.n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            # vLLM takes 0 (preferred) or -1 as "disabled"; our 0 means the same.
            top_k=sampling.top_k,
            max_tokens=sampling.max_new_tokens,
            stop=list(sampling.stop),
            seed=seed,
            logprobs=0,  # only the sampled token's logprob
        )


def to_sample(question_id: str, prompt: str, completion: Any, stop: Sequence[str]) -> Sample:
    """Map one vLLM `CompletionOutput` to a `Sample`.

    vLLM already cuts `text` at the stop string and keeps the stop string's tokens (and eos)
    in `token_ids`, as the hf backend does; cutting again is a no-op that keeps both in step.
    `logprobs[i]` maps token id -> Logprob; with logprobs=0 it holds the sampled token.
    """
    if completion.finish_reason not in ("stop", "length"):
        raise RuntimeError(
            f"vLLM finished question {question_id} sample {completion.index} with "
            f"'{completion.finish_reason}'; expected 'stop' or 'length'"
        )
    token_ids = list(completion.token_ids)
    logprobs = [completion.logprobs[i][t].logprob for i, t in enumerate(token_ids)]
    text, _ = cut_at_stop(completion.text, stop)
    return Sample(
        question_id=question_id,
        sample_index=completion.index,
        prompt=prompt,
        completion=text,
        token_ids=token_ids,
        token_logprobs=logprobs,
        finish_reason=completion.finish_reason,
    )
