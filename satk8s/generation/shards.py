"""Samples on disk: Parquet shards of a fixed number of questions, resumable shard by shard.

A directory holds `shard-00000.parquet`, `shard-00001.parquet`, ... Each shard is written to a
temporary file and renamed into place, so a shard that exists is complete: a killed job
reruns and generates only the missing shards, with the same samples it would have produced.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from satk8s.errors import ConfigError, DataError
from satk8s.generation.base import GenerationBackend, Sample, SamplingConfig, stable_seed
from satk8s.tasks.base import Question

# One row per sample. sampling_config is SamplingConfig.to_json() (repeated; Parquet's
# dictionary encoding stores it once per column chunk).
SAMPLES_SCHEMA = pa.schema(
    [
        ("question_id", pa.string()),
        ("sample_index", pa.int32()),
        ("prompt", pa.string()),
        ("completion", pa.string()),
        ("token_ids", pa.list_(pa.int32())),
        ("token_logprobs", pa.list_(pa.float32())),
        ("finish_reason", pa.string()),
        ("model_id", pa.string()),
        ("sampling_config", pa.string()),
    ]
)
SHARD_GLOB = "shard-*.parquet"  # temporary files start with "." and never match


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.parquet"


def samples_to_table(
    samples: Sequence[Sample], model_id: str, sampling: SamplingConfig
) -> pa.Table:
    """Samples as a table in SAMPLES_SCHEMA."""
    columns = {
        "question_id": [s.question_id for s in samples],
        "sample_index": [s.sample_index for s in samples],
        "prompt": [s.prompt for s in samples],
        "completion": [s.completion for s in samples],
        "token_ids": [s.token_ids for s in samples],
        "token_logprobs": [s.token_logprobs for s in samples],
        "finish_reason": [s.finish_reason for s in samples],
        "model_id": [model_id] * len(samples),
        "sampling_config": [sampling.to_json()] * len(samples),
    }
    return pa.table(columns, schema=SAMPLES_SCHEMA)


def read_samples(path: str | Path) -> pa.Table:
    """One shard file, or every shard of a directory in shard order, as one table."""
    path = Path(path)
    if path.is_file():
        return pq.read_table(path, schema=SAMPLES_SCHEMA)
    files = sorted(path.glob(SHARD_GLOB))
    if not files:
        raise DataError(str(path), f"no {SHARD_GLOB} files; run the generate step first")
    return pa.concat_tables(pq.read_table(f, schema=SAMPLES_SCHEMA) for f in files)


def generate_sharded(
    backend: GenerationBackend,
    questions: Sequence[Question],
    prompts: Sequence[str],
    sampling: SamplingConfig,
    out_dir: Path,
    shard_size: int = 64,
    progress: bool = True,
    on_shard: Callable[[Path], None] | None = None,
    shards: range | None = None,
) -> dict[str, int | float]:
    """Generate `sampling.n` samples for each question (prompts[i] is questions[i]'s prompt)
    into Parquet shards of `shard_size` questions, skipping shards already in `out_dir`.
    `shards` (indices) limits the work to those shards: one part of a pool split over tasks.

    Returns counts over the shards produced (questions, samples, tokens), the shards written
    and skipped by this call, and the seconds it took.
    """
    if len(prompts) != len(questions):
        raise ConfigError(
            "prompts", f"got {len(prompts)} prompts for {len(questions)} questions; need one each"
        )
    if shard_size < 1:
        raise ConfigError("shard_size", f"must be at least 1, got {shard_size}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for partial in out_dir.glob(".shard-*.tmp"):
        partial.unlink()  # left by a killed run: never a complete shard
    start = time.perf_counter()
    counts = {"questions": 0, "samples": 0, "tokens": 0}
    counts |= {"shards_written": 0, "shards_skipped": 0}
    bar = tqdm(total=len(questions), unit="question", disable=not progress)
    for index, first in enumerate(range(0, len(questions), shard_size)):
        if shards is not None and index not in shards:
            continue
        shard_questions = questions[first : first + shard_size]
        shard_prompts = prompts[first : first + shard_size]
        path = out_dir / shard_name(index)
        if path.exists():
            table = _existing_shard(path, shard_questions, backend.model_id, sampling)
            counts["shards_skipped"] += 1
        else:
            pairs = [(q.id, p) for q, p in zip(shard_questions, shard_prompts, strict=True)]
            # Seeded by shard index, not by position in this run: a resumed run equals an
            # uninterrupted one.
            samples = backend.generate(pairs, sampling, seed=stable_seed(sampling.seed, index))
            table = samples_to_table(samples, backend.model_id, sampling)
            _write_atomic(table, path)
            if on_shard is not None:  # e.g. commit the shard to the store right away
                on_shard(path)
            counts["shards_written"] += 1
        counts["questions"] += len(shard_questions)
        counts["samples"] += table.num_rows
        counts["tokens"] += _token_count(table)
        bar.update(len(shard_questions))
    bar.close()
    counts["seconds"] = round(time.perf_counter() - start, 3)
    return counts


def _write_atomic(table: pa.Table, path: Path) -> None:
    """Write next to `path` under a name the shard glob ignores, then rename into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def _existing_shard(
    path: Path, questions: Sequence[Question], model_id: str, sampling: SamplingConfig
) -> pa.Table:
    """A shard to resume from, checked to hold these questions from this model and config;
    anything else means out_dir belongs to another run."""
    table = pq.read_table(path, columns=["question_id", "token_ids", "model_id", "sampling_config"])
    found = set(table.column("question_id").to_pylist())
    if found != {q.id for q in questions}:
        raise DataError(str(path), "holds other questions than this run's; use a fresh out_dir")
    if set(table.column("model_id").to_pylist()) != {model_id}:
        raise DataError(str(path), f"was not generated by {model_id}; use a fresh out_dir")
    if set(table.column("sampling_config").to_pylist()) != {sampling.to_json()}:
        raise DataError(
            str(path), "was generated with another sampling config; use a fresh out_dir"
        )
    return table


def _token_count(table: pa.Table) -> int:
    lengths = pc.list_value_length(table.column("token_ids"))
    return int(pc.sum(lengths).as_py() or 0)
