"""Prompt length + max_new_tokens against the model's context window, before any generation.

A prompt that leaves no room for `max_new_tokens` is silently truncated or errors deep inside a
backend, after the model is loaded and GPU time is spent. This reads only the model's config
and tokenizer (no weights) and names the longest prompt that does not fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from satk8s.errors import ConfigError

# Where transformers configs keep the longest sequence a model was built for.
_WINDOW_FIELDS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def context_window(config: Any) -> int | None:
    """The model's context window from its config, or None when the config does not say."""
    for name in _WINDOW_FIELDS:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    text = getattr(config, "text_config", None)  # multimodal configs nest it
    return context_window(text) if text is not None else None


def check_context_window(
    model: str,
    prompts: Sequence[tuple[str, str]],
    max_new_tokens: int,
    field: str = "max_new_tokens",
) -> int | None:
    """Raise ConfigError(`field`, ...) when the longest of `prompts` ((id, prompt) pairs) plus
    `max_new_tokens` exceeds the context window of `model` (a directory or hub id). Returns the
    window (None when the model's config names none; nothing is checked then)."""
    from transformers import AutoConfig, AutoTokenizer

    window = context_window(AutoConfig.from_pretrained(model))
    if window is None or not prompts:
        return window
    tokenizer = AutoTokenizer.from_pretrained(model)
    distinct = list(dict.fromkeys(p for _, p in prompts))
    lengths = dict(zip(distinct, map(len, tokenizer(distinct)["input_ids"]), strict=True))
    over = [(qid, lengths[p]) for qid, p in prompts if lengths[p] + max_new_tokens > window]
    if over:
        qid, longest = max(over, key=lambda item: item[1])
        raise ConfigError(
            field,
            f"{len(over)} of {len(prompts)} prompts do not fit: the longest (question {qid}) is "
            f"{longest} tokens, + max_new_tokens {max_new_tokens} = {longest + max_new_tokens} "
            f"> the model's context window of {window} tokens; lower max_new_tokens, use fewer "
            "few-shot examples, or a model with a longer context",
        )
    return window
