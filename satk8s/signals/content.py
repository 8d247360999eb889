"""Which generated tokens are the solution's content.

A sample's `token_ids` run up to and including the token that ended generation: the eos token,
or the tokens that completed a stop string (`satk8s.generation.Sample`). The training target is
the completion text, cut before the stop string, so per-token signals (entropy, length,
log-probability) are taken over the content tokens only: the fewest leading tokens whose text
covers the completion. A token that straddles the end of the completion and the start of a stop
string is content (it carries some of the solution).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from satk8s.errors import DataError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Decode = Callable[[Sequence[int]], str]


def content_token_count(token_ids: Sequence[int], completion: str, decode: Decode) -> int:
    """How many leading tokens of `token_ids` carry `completion` (see the module docstring).

    Binary search on "the decoded prefix starts with the completion", true from the answer on.
    When even all tokens do not decode to the completion (a backend detokenised differently),
    every token is kept but trailing ones that decode to nothing (eos and other special tokens).
    """
    n = len(token_ids)
    if not decode(token_ids).startswith(completion):
        while n and decode(token_ids[n - 1 : n]) == "":
            n -= 1
        return n
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        if decode(token_ids[:mid]).startswith(completion):
            hi = mid
        else:
            lo = mid + 1
    return hi


def content_lengths(kept: pa.Table, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The content token count of every row of a kept table, in row order; a row without any
    content token is an error naming it."""
    missing = [
        c
        for c in ("question_id", "sample_index", "completion", "token_ids")
        if c not in kept.column_names
    ]
    if missing:
        raise DataError(
            "kept",
            f"missing column(s) {', '.join(missing)}; is this the kept table of the saturate step?",
        )

    def decode(ids: Sequence[int]) -> str:
        return tokenizer.decode(list(ids), skip_special_tokens=True)

    counts = []
    for qid, idx, text, ids in zip(
        kept.column("question_id").to_pylist(),
        kept.column("sample_index").to_pylist(),
        kept.column("completion").to_pylist(),
        kept.column("token_ids").to_pylist(),
        strict=True,
    ):
        n = content_token_count(ids or [], text, decode)
        if n == 0:
            raise DataError("kept", f"question {qid} sample {idx} has no completion tokens")
        counts.append(n)
    return counts


def load_tokenizer(model_dir: str) -> PreTrainedTokenizerBase:
    """The policy's tokenizer alone (no weights are loaded)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)
