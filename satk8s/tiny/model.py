"""The tiny model's architecture: a small Qwen3 causal LM, the same class as Qwen3-1.7B-Base."""

from __future__ import annotations

import torch
from transformers import PreTrainedTokenizerBase, Qwen3Config, Qwen3ForCausalLM

from satk8s.tiny.config import TinyArchitecture


def new_model(
    tokenizer: PreTrainedTokenizerBase, arch: TinyArchitecture = TinyArchitecture(), seed: int = 0
) -> Qwen3ForCausalLM:
    """A freshly initialised tiny Qwen3 sized to the tokenizer, deterministic under `seed`."""
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=arch.hidden_size,
        intermediate_size=arch.intermediate_size,
        num_hidden_layers=arch.num_layers,
        num_attention_heads=arch.num_heads,
        num_key_value_heads=arch.num_kv_heads,
        head_dim=arch.hidden_size // arch.num_heads,
        max_position_embeddings=arch.max_positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    return Qwen3ForCausalLM(config)
