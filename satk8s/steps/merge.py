"""Step `merge`: K part outputs of `generate`, `signals` or `evaluate` as one output, the same
as one task over the whole pool would have written (`satk8s.steps.parts`). A CPU step: it
copies files, concatenates tables and recomputes what spans the pool."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from satk8s.errors import ConfigError, DataError
from satk8s.steps.outputs import input_path, split_locations, step_output
from satk8s.store.fetch import finished_manifest

MERGED_STEPS = ("generate", "signals", "evaluate")


@dataclass(frozen=True)
class MergeConfig:
    step: str = "generate"
    """The step whose part outputs are merged: generate, signals or evaluate."""

    def __post_init__(self) -> None:
        if self.step not in MERGED_STEPS:
            raise ConfigError("step", f"must be one of {', '.join(MERGED_STEPS)}")


def merge(parts: str, out: str, config: MergeConfig, force: bool = False) -> dict[str, Any]:
    """`parts`: the part outputs, comma-separated, in part order (index 0 first)."""
    with step_output(out, "merge", config, {"parts": parts}, force) as output:
        if output.cached is not None:
            return output.cached
        started = time.time()
        locations = split_locations(parts)
        roots = [input_path(loc, "parts", "step") for loc in locations]
        configs = [_part_config(loc, config.step) for loc in locations]
        _check_parts(locations, configs)
        root = output.open()
        summary = MERGERS[config.step](roots, configs, root)
        return output.commit(root, {**summary, "parts": len(roots)}, started)


def _part_config(location: str, step: str) -> dict[str, Any]:
    manifest = finished_manifest(location)
    if manifest is None or manifest.get("step") != step:
        raise DataError(location, f"is not a finished {step} output")
    return manifest["config"]


def _check_parts(locations: list[str], configs: list[dict[str, Any]]) -> None:
    """Parts 0..K-1 of one config, in order."""
    count = len(configs)

    def without_part(c: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in c.items() if k != "part"}

    for i, (location, part_config) in enumerate(zip(locations, configs, strict=True)):
        if part_config.get("part") != {"index": i, "count": count}:
            raise DataError(
                location,
                f"is part {part_config.get('part')} where part {i} of {count} belongs",
            )
        if without_part(part_config) != without_part(configs[0]):
            raise DataError(location, "was computed with another config than part 0")


def _merge_generate(roots: list[Path], configs: list[dict], out: Path) -> dict[str, Any]:
    import pyarrow.compute as pc

    from satk8s.generation.shards import SHARD_GLOB, read_samples

    for root in roots:
        for shard in sorted(root.glob(SHARD_GLOB)):
            shutil.copyfile(shard, out / shard.name)
    samples = read_samples(out)
    lengths = pc.list_value_length(samples.column("token_ids"))
    return {
        "questions": len(set(samples.column("question_id").to_pylist())),
        "samples": samples.num_rows,
        "tokens": int(pc.sum(lengths).as_py() or 0),
        "shards": len(list(out.glob(SHARD_GLOB))),
    }


def _merge_signals(roots: list[Path], configs: list[dict], out: Path) -> dict[str, Any]:
    from satk8s.signals.pairwise import pair_diagnostics
    from satk8s.steps.signals import JUDGE_HEALTH

    scores = pa.concat_tables(pq.read_table(r / "scores.parquet") for r in roots)
    pq.write_table(scores, out / "scores.parquet")
    parts = [json.loads((r / "diagnostics.json").read_text()) for r in roots]
    diagnostics: dict[str, Any] = {}
    if all((r / "pairs.parquet").is_file() for r in roots):
        pairs = pa.concat_tables(pq.read_table(r / "pairs.parquet") for r in roots)
        pq.write_table(pairs, out / "pairs.parquet")
        judged = [d for d in parts if "judge" in d]
        diagnostics = {
            **(
                {"judge": judged[0]["judge"], "aggregate": judged[0]["aggregate"]} if judged else {}
            ),
            "questions": sum(int(d.get("questions", 0)) for d in parts),
            "single_solution_questions": sum(
                int(d.get("single_solution_questions", 0)) for d in parts
            ),
            **(pair_diagnostics(pairs) if pairs.num_rows else {}),
        }
        if not pairs.num_rows:
            diagnostics["note"] = "empty saturated set"
    (out / "diagnostics.json").write_text(json.dumps(diagnostics, indent=2, default=str))
    questions = len(set(scores.column("question_id").to_pylist()))
    return {
        "signal": configs[0]["signal"],
        "solutions": scores.num_rows,
        "scored": scores.num_rows,
        "questions": questions,
        **({"note": "empty saturated set"} if scores.num_rows == 0 else {}),
        **{k: v for k, v in diagnostics.items() if k in JUDGE_HEALTH},
    }


def _merge_evaluate(roots: list[Path], configs: list[dict], out: Path) -> dict[str, Any]:
    from satk8s.config import build_config
    from satk8s.evaluation.evaluate import PER_QUESTION_SCHEMA, summarise_rows
    from satk8s.signals.gate import GATED_FILE
    from satk8s.steps.evaluate import EvaluateStepConfig

    if (roots[0] / GATED_FILE).is_file():  # a gated cell: every part passed it on
        for name in (GATED_FILE, "per_question.parquet", "summary.json"):
            shutil.copyfile(roots[0] / name, out / name)
        labels = {k: configs[0][k] for k in ("algorithm", "signal", "seed")}
        return {**labels, "gated": True}
    config = build_config(EvaluateStepConfig, base=configs[0])
    tables = [pq.read_table(r / "per_question.parquet") for r in roots]
    summaries = [json.loads((r / "summary.json").read_text()) for r in roots]
    rows: list[dict[str, Any]] = []
    for split in config.splits:  # set by set, each in question order: one task's layout
        for table in tables:
            rows += [r for r in table.to_pylist() if r["eval_set"] == split]
    per_question = pa.Table.from_pylist(rows, schema=PER_QUESTION_SCHEMA)
    pq.write_table(per_question, out / "per_question.parquet")
    first = summaries[0]
    summary = {
        **{k: v for k, v in first.items() if k != "eval_sets"},
        "eval_sets": {
            split: summarise_rows([r for r in rows if r["eval_set"] == split], config.eval)
            for split in config.splits
        },
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


MERGERS: dict[str, Callable[[list[Path], list[dict], Path], dict[str, Any]]] = {
    "generate": _merge_generate,
    "signals": _merge_signals,
    "evaluate": _merge_evaluate,
}
