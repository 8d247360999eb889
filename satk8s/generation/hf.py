"""The transformers backend: batched sampling on CPU or GPU, for tests, demos and small runs.

Randomness is per row, not per batch: every (seed, question_id, sample_index) row draws its
own counter-based uniform numbers, so a sample does not depend on which other rows share its
batch, on batch_size, or on the order of the prompts (up to float noise from padding).

Sampled-token log-probabilities are read step by step from the raw logits by a logits
processor that holds one step's [batch, vocab] log-softmax at a time, so memory does not grow
with max_new_tokens x vocab (as `output_logits=True` would).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from satk8s.errors import ConfigError
from satk8s.generation.base import Sample, SamplingConfig, cut_at_stop, stable_seed

# A checkpoint's generation_config.json (e.g. an instruct model's repetition_penalty, top_k)
# would otherwise reshape the distribution; SamplingConfig alone decides it, as in vLLM when
# SamplingParams are given. Keyword arguments take precedence over the model's config.
_NEUTRAL_GENERATION = {
    "temperature": None,
    "top_k": None,
    "top_p": None,
    "min_p": None,
    "typical_p": None,
    "repetition_penalty": None,
    "no_repeat_ngram_size": None,
    "min_length": None,
    "min_new_tokens": None,
    "bad_words_ids": None,
    "sequence_bias": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
}


@dataclass(frozen=True)
class _Row:
    """One sample to generate: a prompt and which of its n samples this is."""

    question_id: str
    prompt: str
    sample_index: int


class HFBackend:
    """Samples with `transformers` generate; left padding, batches of prompt x sample rows."""

    def __init__(
        self, model: str, device: str = "auto", dtype: str = "auto", batch_size: int = 64
    ) -> None:
        if batch_size < 1:
            raise ConfigError("batch_size", f"must be at least 1, got {batch_size}")
        self.model_id = model
        self.batch_size = batch_size
        self.device = _resolve_device(device)
        # Left padding: generation appends at the right end of every row.
        self.tokenizer = AutoTokenizer.from_pretrained(model, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=_resolve_dtype(dtype))
        self.model.to(self.device).eval()
        self.eos_ids = _eos_ids(self.model, self.tokenizer)

    @torch.inference_mode()
    def generate(
        self, prompts: Sequence[tuple[str, str]], sampling: SamplingConfig, seed: int
    ) -> list[Sample]:
        rows = [_Row(qid, p, j) for qid, p in prompts for j in range(sampling.n)]
        if not rows:
            return []
        # Longest prompts first so rows of similar length share a batch (less padding);
        # per-row randomness makes the order irrelevant to the result.
        lengths = [len(ids) for ids in self.tokenizer([r.prompt for r in rows]).input_ids]
        order = sorted(range(len(rows)), key=lambda i: -lengths[i])
        samples: list[Sample | None] = [None] * len(rows)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            outputs = self._generate_batch([rows[i] for i in batch], sampling, seed)
            for i, sample in zip(batch, outputs, strict=True):
                samples[i] = sample
        return samples  # type: ignore[return-value]

    def _generate_batch(
        self, rows: list[_Row], sampling: SamplingConfig, seed: int
    ) -> list[Sample]:
        enc = self.tokenizer([r.prompt for r in rows], return_tensors="pt", padding=True)
        enc = enc.to(self.device)
        prompt_len = enc["input_ids"].shape[1]
        recorder = _RawLogprobRecorder(prompt_len)
        processors = LogitsProcessorList([recorder])  # first: it must see the raw logits
        kwargs = {}
        if sampling.stop:
            # Ends a row early at a stop string; the text is cut again below. Not transformers'
            # own `stop_strings`: that matches across the prompt boundary (see _StopOnText).
            criteria = _StopOnText(sampling.stop, prompt_len, self._decode)
            kwargs["stopping_criteria"] = StoppingCriteriaList([criteria])
        if sampling.temperature > 0:
            keys = [stable_seed(seed, r.question_id, r.sample_index, bits=64) for r in rows]
            processors.append(_RowSampler(keys, sampling))
        out = self.model.generate(
            **enc,
            **_NEUTRAL_GENERATION,
            # Greedy argmax: the row sampler leaves one finite logit per row when sampling.
            do_sample=False,
            max_new_tokens=sampling.max_new_tokens,
            pad_token_id=self.tokenizer.pad_token_id,
            logits_processor=processors,
            **kwargs,
        )
        generated = out[:, prompt_len:]
        logprobs = recorder.finish(generated)
        return [
            self._to_sample(row, ids, lps, sampling.stop)
            for row, ids, lps in zip(rows, generated.tolist(), logprobs.tolist(), strict=True)
        ]

    def _to_sample(
        self, row: _Row, ids: list[int], logprobs: list[float], stop: Sequence[str]
    ) -> Sample:
        """Cut one generated row at eos (kept) or at its first stop string."""
        end = next((i + 1 for i, t in enumerate(ids) if t in self.eos_ids), None)
        finish_reason = "length" if end is None else "stop"
        # Everything after eos is padding from rows that finished earlier in the batch.
        ids = ids[:end]
        text, found = cut_at_stop(self._decode(ids), stop)
        if found:
            ids = ids[: _tokens_through_stop(ids, stop, self._decode)]
            finish_reason = "stop"
        return Sample(
            question_id=row.question_id,
            sample_index=row.sample_index,
            prompt=row.prompt,
            completion=text,
            token_ids=ids,
            token_logprobs=logprobs[: len(ids)],
            finish_reason=finish_reason,
        )

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


class _RowSampler(LogitsProcessor):
    """Samples each row from its own random stream and leaves only that token's logit finite.

    transformers' sampling draws from one global generator for the whole batch, so a sample
    would depend on its batch mates. Here row r at step t uses uniform u(key_r, t) and inverse
    CDF sampling over the processed distribution (temperature, top-k, top-p: transformers' own
    warpers, in its order). Greedy argmax then picks the sampled token.
    """

    def __init__(self, keys: Sequence[int], sampling: SamplingConfig) -> None:
        self.keys = np.array(keys, dtype=np.uint64)
        self.step = 0
        self.warpers = LogitsProcessorList()
        if sampling.temperature != 1.0:
            self.warpers.append(TemperatureLogitsWarper(sampling.temperature))
        if sampling.top_k > 0:
            self.warpers.append(TopKLogitsWarper(sampling.top_k))
        if sampling.top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(sampling.top_p))

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = self.warpers(input_ids, scores)
        u = torch.from_numpy(_uniforms(self.keys, self.step)).to(scores.device)
        self.step += 1
        probs = torch.softmax(scores.double(), dim=-1)
        cdf = probs.cumsum(dim=-1)
        choice = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(1), right=True)
        choice = choice.clamp_(max=scores.shape[-1] - 1)
        # Rounding can land u * total on the total itself; fall back to the likeliest token.
        choice = torch.where(probs.gather(1, choice) > 0, choice, probs.argmax(1, keepdim=True))
        return torch.full_like(scores, -torch.inf).scatter_(1, choice, 0.0)


class _StopOnText(StoppingCriteria):
    """Ends a row once its generated text (never the prompt) contains a stop string.

    transformers' `stop_strings` checks the end of the whole sequence, so a prompt ending in
    "Answer:" with stop ":::" stops after two generated ":" and looks like a "length" finish.
    Only the last few tokens are decoded each step: a stop string just completed lies within
    len(stop) tokens of the end, as every non-special token decodes to at least one character.
    """

    def __init__(self, stop: Sequence[str], prompt_len: int, decode) -> None:
        self.stop = stop
        self.prompt_len = prompt_len
        self.decode = decode
        self.window = max(len(s) for s in stop) + 1

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        tails = input_ids[:, max(self.prompt_len, input_ids.shape[1] - self.window) :].tolist()
        done = [cut_at_stop(self.decode(tail), self.stop)[1] for tail in tails]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


_GOLDEN = 0x9E3779B97F4A7C15


def _uniforms(keys: np.ndarray, step: int) -> np.ndarray:
    """Uniform [0, 1) numbers, one per key, from splitmix64 of (key, step): counter-based, so
    any row's stream can be recomputed alone. uint64 array arithmetic wraps, as intended."""
    z = keys + np.uint64((step + 1) * _GOLDEN % 2**64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


class _RawLogprobRecorder(LogitsProcessor):
    """Records each generated token's log-probability under the raw (unprocessed) logits.

    At step t the processor sees the token chosen at step t-1 as the last input id, so it only
    keeps the previous step's log-softmax; the last token is read in `finish`.
    """

    def __init__(self, prompt_len: int) -> None:
        self.prompt_len = prompt_len
        self.previous: torch.Tensor | None = None
        self.columns: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[1] > self.prompt_len:
            self._record(input_ids[:, -1])
        self.previous = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def _record(self, tokens: torch.Tensor) -> None:
        assert self.previous is not None
        self.columns.append(self.previous.gather(1, tokens.unsqueeze(1)).squeeze(1))

    def finish(self, generated: torch.Tensor) -> torch.Tensor:
        """[batch, steps] log-probabilities of `generated` (the new tokens of every row)."""
        if generated.shape[1] > len(self.columns):
            self._record(generated[:, -1])
        return torch.stack(self.columns, dim=1).cpu()


def _tokens_through_stop(ids: list[int], stop: Sequence[str], decode) -> int:
    """The fewest leading tokens whose text contains a stop string (binary search: once a
    prefix contains one, every longer prefix does)."""
    lo, hi = 1, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if cut_at_stop(decode(ids[:mid]), stop)[1]:
            hi = mid
        else:
            lo = mid + 1
    return hi


def _eos_ids(model, tokenizer) -> frozenset[int]:
    """Token ids that end a sample: the generation config's eos (int or list) and the tokenizer's."""
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos]) | {tokenizer.eos_token_id}
    return frozenset(i for i in ids if i is not None)


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _resolve_dtype(dtype: str) -> str | torch.dtype:
    if dtype == "auto":
        return "auto"  # the checkpoint's own dtype
    value = getattr(torch, dtype, None)
    if not isinstance(value, torch.dtype):
        raise ConfigError("dtype", f"unknown dtype '{dtype}'; use auto, float32, bfloat16, float16")
    return value
