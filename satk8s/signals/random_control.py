"""The `random` control signal: scores that carry no information about quality.

Training on solutions ranked by a random score separates "more training on the model's own
samples" from "training on better samples". Each score is a hash of (seed, question_id,
sample_index), so it does not depend on row order, on which other rows are present, or on the
Python process (no global RNG state, no hash randomisation).
"""

from __future__ import annotations

import hashlib

import pyarrow as pa

from satk8s.signals.schema import ScoreRow, scores_table

SIGNAL = "random"


def uniform_score(seed: int, question_id: str, sample_index: int) -> float:
    """A uniform draw in [0, 1) fixed by (seed, question_id, sample_index)."""
    key = f"{seed}\x00{question_id}\x00{sample_index}".encode()
    bits = (
        int.from_bytes(hashlib.sha256(key).digest()[:8], "big") >> 11
    )  # 53 bits: a double's mantissa
    return bits / float(1 << 53)


def random_scores(kept: pa.Table, seed: int) -> pa.Table:
    """One `random` score per row of the kept table, as a SCORES_SCHEMA table."""
    rows = []
    ids = kept.column("question_id").to_pylist()
    indices = kept.column("sample_index").to_pylist()
    for qid, idx in zip(ids, indices, strict=True):
        value = uniform_score(seed, qid, int(idx))
        rows.append(ScoreRow(qid, int(idx), SIGNAL, value, value, {"seed": seed}))
    return scores_table(rows)
