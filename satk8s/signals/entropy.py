"""Signal `entropy`: mean full-vocabulary token entropy of each kept solution under the policy.

One teacher-forced pass over prompt + completion per solution. The completion is the stored
`token_ids` (exactly what was sampled, not a re-tokenisation of the text), cut to its content
tokens: the eos token and the tokens of a stop string are not part of the solution (nor of
the training target), so they do not enter the mean (`satk8s.signals.content`). The prompt is
tokenised as the generation backends do (`tokenizer(prompt)`). The entropy at completion
token t is that of the policy's raw next-token distribution at position t - 1, over the whole
vocabulary: vLLM returns no entropy, and top-k logprobs only approximate it. Solutions with
the same tokens are computed once and share the value (so identical texts tie exactly).

Precision: the LM head's product runs in float32 whatever the model's dtype (a bfloat16
product errs by up to ~3e-3 nats, enough to flip rankings of close solutions).

Memory: the model runs to its last hidden states only (no KV cache); the completion
positions' states are gathered and the rest freed; `lm_head` and log-softmax are applied to
`chunk_size` of them at a time, with at most two [chunk_size, vocab] float32 tensors alive, so
no [batch, seq, vocab] tensor is ever built (for a 152K vocabulary that tensor is 0.6 GB per
1,000 tokens). `benchmarks/entropy.py` measures it against one chunk and against TRL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from satk8s.errors import ConfigError, DataError
from satk8s.signals.content import content_lengths, load_tokenizer
from satk8s.signals.schema import ScoreRow, scores_table

# torch and transformers load when entropy is computed, not when the config is built: grid
# expansion and the compiler build every step's config and must stay fast.
if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

SIGNAL = "entropy"
DIRECTIONS = ("lower_is_better", "higher_is_better")
DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class EntropyConfig:
    batch_size: int = 8
    """Solutions (prompt + completion sequences) per forward pass."""
    chunk_size: int = 512
    """Completion positions turned into vocabulary-sized logits at once. Peak extra memory is
    two chunk_size x vocab x 4-byte tensors (512 x 152K: about 0.6 GB)."""
    direction: str = "lower_is_better"
    """"lower_is_better" (default: a confident solution is a better one, score = -mean
    entropy) or "higher_is_better" (score = +mean entropy). raw_score is always the mean."""
    tail_fraction: float = 0.1
    """details["tail"] is the mean entropy of this fraction of the solution's most uncertain
    tokens (at least one token): where the model hesitated, which the mean can hide."""
    device: str = "auto"
    """"auto" (cuda when available, else cpu), "cpu", "cuda", "cuda:1", ..."""
    dtype: str = "auto"
    """Model weights dtype: "auto" (the checkpoint's own), "float32", "bfloat16", "float16".
    The LM head's product and the softmax run in float32 either way."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError("batch_size", f"must be at least 1, got {self.batch_size}")
        if self.chunk_size < 1:
            raise ConfigError("chunk_size", f"must be at least 1, got {self.chunk_size}")
        if self.direction not in DIRECTIONS:
            raise ConfigError(
                "direction", f"must be one of {', '.join(DIRECTIONS)}, got '{self.direction}'"
            )
        if not 0.0 < self.tail_fraction <= 1.0:
            raise ConfigError("tail_fraction", f"must be in (0, 1], got {self.tail_fraction}")
        if self.dtype not in DTYPES:
            raise ConfigError("dtype", f"unknown dtype '{self.dtype}'; use {', '.join(DTYPES)}")


def token_entropies(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    completion_mask: torch.Tensor,
    chunk_size: int,
) -> list[torch.Tensor]:
    """Per row, the entropy (nats, float32) of the model's next-token distribution at each
    position where `completion_mask` is true, i.e. the distribution each completion token
    was drawn from. Works with left or right padding ([batch, seq] tensors)."""
    import torch

    with torch.inference_mode():
        if completion_mask[:, 0].any():
            raise ValueError("the first position cannot be a completion token: nothing predicts it")
        # Positions from the mask, as generate does, so padding never shifts a row's positions.
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        # No KV cache: nothing is generated after this pass, and it would hold every layer's keys.
        hidden = model.get_decoder()(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=False,
        ).last_hidden_state
        # Token t is predicted by the hidden state at t - 1.
        predicts = torch.zeros_like(completion_mask, dtype=torch.bool)
        predicts[:, :-1] = completion_mask[:, 1:].bool()
        rows, cols = predicts.nonzero(as_tuple=True)  # row-major: each row's tokens in order
        states = hidden[rows, cols]
        del hidden  # only the completion positions' states go through the head
        head = model.get_output_embeddings()
        # The product in float32: a bfloat16 matmul rounds every logit before the upcast.
        weight = head.weight.float()
        bias = head.bias.float() if getattr(head, "bias", None) is not None else None
        softcap = getattr(model.config, "final_logit_softcapping", None)  # Gemma-style models
        out = torch.empty(states.shape[0], dtype=torch.float32, device=states.device)
        for start in range(0, states.shape[0], chunk_size):
            chunk = states[start : start + chunk_size].float()
            out[start : start + chunk_size] = _entropy(
                torch.nn.functional.linear(chunk, weight, bias), softcap
            )
        return list(out.cpu().split(predicts.sum(1).tolist()))


def _entropy(logits: torch.Tensor, softcap: float | None) -> torch.Tensor:
    """Entropy of each row of `logits` ([rows, vocab]) with at most two [rows, vocab] float32
    tensors alive: the logits are freed once log p exists, and p * log p is formed in place."""
    import torch

    logits = logits.float()  # a copy only when the head is not float32
    if softcap:
        logits.div_(softcap).tanh_().mul_(softcap)
    logp = torch.log_softmax(logits, dim=-1)
    del logits
    # p * log p is 0 where p underflows to 0: log p = -inf (masked logits) gives NaN there.
    return -logp.exp().mul_(logp).nan_to_num_(nan=0.0).sum(-1)


def entropy_scores(
    kept: pa.Table, model_dir: str, config: EntropyConfig = EntropyConfig()
) -> pa.Table:
    """A SCORES_SCHEMA table (signal "entropy") with one row per kept solution."""
    missing = [
        c
        for c in ("question_id", "sample_index", "prompt", "token_ids")
        if c not in kept.column_names
    ]
    if missing:
        raise DataError(
            "kept",
            f"missing column(s) {', '.join(missing)}; is this the kept table of the saturate step?",
        )
    if kept.num_rows == 0:
        return scores_table([])
    import torch

    qids = kept.column("question_id").to_pylist()
    indices = kept.column("sample_index").to_pylist()
    prompts = kept.column("prompt").to_pylist()
    for qid, idx, ids in zip(qids, indices, kept.column("token_ids").to_pylist(), strict=True):
        if not ids:
            raise DataError("kept", f"question {qid} sample {idx} has no completion tokens")

    tokenizer = load_tokenizer(model_dir)
    lengths = content_lengths(kept, tokenizer)
    # Content tokens only; each distinct (prompt, tokens) is computed once.
    keys = [
        (p, tuple(ids[:n]))
        for p, ids, n in zip(prompts, kept.column("token_ids").to_pylist(), lengths, strict=True)
    ]
    distinct = list(dict.fromkeys(keys))
    model, device = _load(model_dir, config.device, config.dtype)
    # n samples share each prompt: tokenise every distinct prompt once.
    prompt_ids = {p: tokenizer(p)["input_ids"] for p in set(prompts)}
    sequences = [prompt_ids[p] + list(c) for p, c in distinct]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    # Longest first, so similar lengths share a batch (less padding, same results).
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    entropies: dict[int, torch.Tensor] = {}
    for start in range(0, len(order), config.batch_size):
        batch = order[start : start + config.batch_size]
        width = max(len(sequences[i]) for i in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        completion = torch.zeros((len(batch), width), dtype=torch.bool)
        for r, i in enumerate(batch):
            # Right padding: pads come after every real token, so causal attention never sees them.
            n, n_prompt = len(sequences[i]), len(prompt_ids[distinct[i][0]])
            ids[r, :n] = torch.tensor(sequences[i])
            attention[r, :n] = 1
            completion[r, n_prompt:n] = True
        found = token_entropies(
            model, ids.to(device), attention.to(device), completion.to(device), config.chunk_size
        )
        entropies.update(zip(batch, found, strict=True))

    sign = -1.0 if config.direction == "lower_is_better" else 1.0
    position = {key: i for i, key in enumerate(distinct)}
    rows = []
    for qid, idx, key in zip(qids, indices, keys, strict=True):
        details = summarize(entropies[position[key]], config.tail_fraction)
        rows.append(ScoreRow(qid, idx, SIGNAL, sign * details["mean"], details["mean"], details))
    return scores_table(rows)


def summarize(entropies: torch.Tensor, tail_fraction: float) -> dict[str, float | int]:
    """mean, min, max, tail (mean of the top `tail_fraction` highest entropies) and n_tokens."""
    values = entropies.double()
    k = max(1, math.ceil(tail_fraction * values.numel()))
    return {
        "mean": values.mean().item(),
        "min": values.min().item(),
        "max": values.max().item(),
        "tail": values.topk(k).values.mean().item(),
        "n_tokens": values.numel(),
    }


def _load(model_dir: str, device: str, dtype: str) -> tuple[PreTrainedModel, torch.device]:
    """Model (eval mode, on its device) and device."""
    import torch
    from transformers import AutoModelForCausalLM

    where = (
        torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if device == "auto"
        else torch.device(device)
    )
    # "auto" keeps the checkpoint's own dtype; EntropyConfig has checked any other name.
    torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype).to(where).eval()
    return model, where
