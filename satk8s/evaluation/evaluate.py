"""Step 8's logic: greedy accuracy (and optional pass@k / maj@k) of one model on its eval sets.

`evaluate_model` returns two things:

- a per-question table (`PER_QUESTION_SCHEMA`, one row per eval set x question), kept so any
  number can be re-derived and two runs compared question by question;
- a summary dict, every number with its 95% percentile-bootstrap CI over questions:

      {"model": str,
       "bootstrap": {"n_boot": int, "seed": int, "alpha": 0.05},
       "config": EvalConfig as a dict,
       "eval_sets": {name: {
           "n_questions": int,
           "accuracy":         {"mean", "lo", "hi"},   # greedy, `is_correct`
           "strict_match":     {"mean", "lo", "hi"},   # lm-eval gsm8k strict-match
           "flexible_extract": {"mean", "lo", "hi"},   # lm-eval gsm8k flexible-extract
           "pass_at_k": {"<k>": {"mean", "lo", "hi"}, ...},   # only with pass_k
           "maj_at_k":  {"<k>": {"mean", "lo", "hi"}, ...}}}} # only with pass_k

`compare_runs` turns two per-question tables into paired-bootstrap differences per eval set
(a fine-tuned model vs the base model, or vs the SFT baseline of the same seed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa

from satk8s.errors import ConfigError, DataError
from satk8s.evaluation.metrics import (
    bootstrap_ci,
    maj_at_k,
    paired_bootstrap_diff,
    pass_at_k,
)
from satk8s.generation import GenerationBackend, Sample, SamplingConfig, load_backend
from satk8s.generation.base import stable_seed
from satk8s.tasks.answers import (
    answers_match,
    extract_answer,
    flexible_extract,
    lm_eval_exact_match,
    strict_match,
)
from satk8s.tasks.base import STOP_STRINGS, Question

BACKENDS = ("hf", "vllm")
ALPHA = 0.05  # every interval in the summary is a 95% CI

# One row per (eval_set, question). The sampling columns are null unless pass_k is set.
PER_QUESTION_SCHEMA = pa.schema(
    [
        ("eval_set", pa.string()),
        ("question_id", pa.string()),
        ("prompt", pa.string()),
        ("completion", pa.string()),  # greedy, cut at the stop strings
        ("finish_reason", pa.string()),  # "stop" or "length"
        ("extracted_answer", pa.string()),  # `extract_answer`; null when none was found
        ("gold", pa.string()),
        ("correct", pa.bool_()),  # `answers_match(extracted_answer, gold)`
        ("strict_match", pa.bool_()),  # lm-eval exact_match after its strict-match filter
        ("flexible_extract", pa.bool_()),  # ... after its flexible-extract filter
        ("n_samples", pa.int32()),  # samples drawn at `temperature` for pass@k / maj@k
        ("n_correct", pa.int32()),
        ("sampled_answers", pa.list_(pa.string())),  # extracted answer per sample, in order
    ]
)


@dataclass(frozen=True)
class EvalConfig:
    """How a model is evaluated. Greedy accuracy always; pass@k / maj@k when `pass_k` is set."""

    backend: str = "hf"
    """Generation backend: `hf` (transformers; CPU or GPU) or `vllm` (GPU only)."""
    batch_size: int = 64
    """Sequences per forward batch (`hf`)."""
    tensor_parallel_size: int = 1
    """GPUs per model (`vllm`)."""
    max_new_tokens: int = 256
    """Most tokens generated per completion, greedy and sampled alike."""
    n_boot: int = 1000
    """Bootstrap resamples (over questions) for every CI and paired difference."""
    seed: int = 0
    """Seeds the bootstrap and the pass@k samples: the same config gives the same numbers."""
    pass_k: tuple[int, ...] = ()
    """The k of pass@k and maj@k, e.g. (1, 4, 16); empty = greedy accuracy only. A list is
    accepted (and stored as a tuple, so the config stays hashable); integral floats too, as
    kfp.local passes `List[int]` as floats."""
    samples_for_k: int = 16
    """Samples per question drawn at `temperature` for pass@k / maj@k; at least max(pass_k)."""
    temperature: float = 1.0
    """Sampling temperature of the pass@k / maj@k samples (> 0; greedy accuracy ignores it)."""
    maj_subsets: int = 200
    """maj@k is the mean over size-k subsets of the samples: all of them when there are at most
    this many, otherwise this many drawn at random (seeded per question)."""
    limit: int | None = None
    """Evaluate only the first N questions of every eval set; None = all of them."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "pass_k", tuple(_as_int("pass_k", k) for k in self.pass_k))
        if self.backend not in BACKENDS:
            raise ConfigError(
                "backend", f"unknown backend '{self.backend}'; choose one of: hf, vllm"
            )
        for name in (
            "batch_size",
            "tensor_parallel_size",
            "max_new_tokens",
            "n_boot",
            "samples_for_k",
            "maj_subsets",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(name, f"must be >= 1, got {getattr(self, name)}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError("limit", f"must be >= 1 or unset, got {self.limit}")
        if any(not 1 <= k <= self.samples_for_k for k in self.pass_k):
            raise ConfigError(
                "pass_k",
                f"every k must be in [1, samples_for_k={self.samples_for_k}], got "
                f"{list(self.pass_k)}; raise samples_for_k or drop the larger k",
            )
        if self.pass_k and self.temperature <= 0:
            raise ConfigError(
                "temperature",
                f"must be > 0 when pass_k is set (greedy samples are all the same), got "
                f"{self.temperature}",
            )


def evaluate_model(
    model: str,
    eval_sets: Mapping[str, tuple[Sequence[Question], Sequence[str]]],
    config: EvalConfig = EvalConfig(),
    backend: GenerationBackend | None = None,
) -> tuple[pa.Table, dict[str, Any]]:
    """Evaluate `model` on every eval set: name -> (questions, prompts), as `read_questions` gives.

    Returns the per-question table (`PER_QUESTION_SCHEMA`) and the summary (module docstring).
    `backend` replaces loading `model` with `config.backend` (tests pass a fake one); one
    backend serves every eval set, so the model is loaded once.
    """
    if not eval_sets:
        raise ConfigError("eval_sets", "no eval sets given")
    if backend is None:
        options = (
            {"batch_size": config.batch_size}
            if config.backend == "hf"
            else {"tensor_parallel_size": config.tensor_parallel_size}
        )
        backend = load_backend(config.backend, model, **options)

    rows: list[dict[str, Any]] = []
    summaries: dict[str, Any] = {}
    for name, (questions, prompts) in eval_sets.items():
        questions, prompts = _checked(name, questions, prompts, config.limit)
        set_rows = _evaluate_set(backend, name, questions, prompts, config)
        summaries[name] = _summarise(set_rows, config)
        rows.extend(set_rows)
    summary = {
        "model": model,
        "bootstrap": {"n_boot": config.n_boot, "seed": config.seed, "alpha": ALPHA},
        "config": {**asdict(config), "pass_k": list(config.pass_k)},
        "eval_sets": summaries,
    }
    return pa.Table.from_pylist(rows, schema=PER_QUESTION_SCHEMA), summary


def compare_runs(
    per_question_a: pa.Table, per_question_b: pa.Table, n_boot: int = 1000, seed: int = 0
) -> dict[str, dict[str, float]]:
    """Paired bootstrap of accuracy(a) - accuracy(b) per eval set, over the same questions.

    Returns {eval_set: {"diff", "lo", "hi", "p_le_zero", "p_two_sided", "n_questions"}}
    (differences as
    fractions, not percent; `p_le_zero` as in `paired_bootstrap_diff`). Both tables must
    cover the same eval sets and, within each, the same question ids.
    """
    a, b = _correct_by_set(per_question_a), _correct_by_set(per_question_b)
    if set(a) != set(b):
        raise DataError(
            "per-question outputs",
            f"the two runs cover different eval sets: {sorted(a)} vs {sorted(b)}; compare runs "
            "evaluated on the same eval sets",
        )
    result = {}
    for name in a:
        d = paired_bootstrap_diff(a[name], b[name], n_boot, seed, ALPHA, what=f"eval set '{name}'")
        result[name] = {**d._asdict(), "n_questions": len(a[name])}
    return result


def _evaluate_set(
    backend: GenerationBackend,
    name: str,
    questions: Sequence[Question],
    prompts: Sequence[str],
    config: EvalConfig,
) -> list[dict[str, Any]]:
    pairs = [(q.id, p) for q, p in zip(questions, prompts, strict=True)]
    greedy = SamplingConfig(
        n=1, temperature=0.0, max_new_tokens=config.max_new_tokens, seed=config.seed
    )
    by_id = _by_question(name, backend.generate(pairs, greedy, config.seed), questions, 1)
    sampled: dict[str, list[Sample]] = {}
    if config.pass_k:
        sampling = SamplingConfig(
            n=config.samples_for_k,
            temperature=config.temperature,
            max_new_tokens=config.max_new_tokens,
            seed=config.seed,
        )
        samples = backend.generate(pairs, sampling, config.seed)
        sampled = _by_question(name, samples, questions, config.samples_for_k)

    rows = []
    for q, prompt in zip(questions, prompts, strict=True):
        sample = by_id[q.id][0]
        extracted = extract_answer(sample.completion, STOP_STRINGS)
        row = {
            "eval_set": name,
            "question_id": q.id,
            "prompt": prompt,
            "completion": sample.completion,
            "finish_reason": sample.finish_reason,
            "extracted_answer": extracted,
            "gold": q.answer,
            "correct": answers_match(extracted, q.answer),
            "strict_match": lm_eval_exact_match(strict_match(sample.completion), q.answer),
            "flexible_extract": lm_eval_exact_match(flexible_extract(sample.completion), q.answer),
            "n_samples": None,
            "n_correct": None,
            "sampled_answers": None,
        }
        if config.pass_k:
            answers = [extract_answer(s.completion, STOP_STRINGS) for s in sampled[q.id]]
            row["n_samples"] = len(answers)
            row["n_correct"] = sum(answers_match(a, q.answer) for a in answers)
            row["sampled_answers"] = answers
        rows.append(row)
    return rows


def summarise_rows(rows: list[dict[str, Any]], config: EvalConfig) -> dict[str, Any]:
    """One eval set's summary from its per-question rows (`PER_QUESTION_SCHEMA` dicts): what
    the merge of an evaluation split over tasks recomputes over the whole set."""
    return _summarise(rows, config)


def _summarise(rows: list[dict[str, Any]], config: EvalConfig) -> dict[str, Any]:
    def ci(values: list[float]) -> dict[str, float]:
        return bootstrap_ci(values, config.n_boot, config.seed, ALPHA)._asdict()

    summary: dict[str, Any] = {"n_questions": len(rows)}
    for metric in ("correct", "strict_match", "flexible_extract"):
        summary["accuracy" if metric == "correct" else metric] = ci(
            [float(r[metric]) for r in rows]
        )
    if config.pass_k:
        summary["pass_at_k"] = {
            str(k): ci([pass_at_k(r["n_samples"], r["n_correct"], k) for r in rows])
            for k in config.pass_k
        }
        # Size-k subsets of all n samples, seeded per question (the same in every process).
        summary["maj_at_k"] = {
            str(k): ci(
                [
                    maj_at_k(
                        r["sampled_answers"],
                        r["gold"],
                        k,
                        seed=stable_seed(config.seed, r["question_id"], k),
                        max_subsets=config.maj_subsets,
                    )
                    for r in rows
                ]
            )
            for k in config.pass_k
        }
    return summary


def _checked(
    name: str, questions: Sequence[Question], prompts: Sequence[str], limit: int | None
) -> tuple[Sequence[Question], Sequence[str]]:
    if len(questions) != len(prompts):
        raise DataError(
            f"eval set '{name}'", f"{len(questions)} questions but {len(prompts)} prompts"
        )
    questions, prompts = questions[:limit], prompts[:limit]
    if not questions:
        raise DataError(f"eval set '{name}'", "has no questions")
    ids = [q.id for q in questions]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise DataError(f"eval set '{name}'", f"duplicate question ids {dupes[:5]}")
    return questions, prompts


def _by_question(
    name: str, samples: Sequence[Sample], questions: Sequence[Question], n: int
) -> dict[str, list[Sample]]:
    """Samples grouped by question id and ordered by sample index, checked to be complete."""
    grouped: dict[str, list[Sample]] = {q.id: [] for q in questions}
    for s in samples:
        if s.question_id not in grouped:
            raise DataError(
                f"eval set '{name}'",
                f"the backend returned a sample for unknown question '{s.question_id}'",
            )
        grouped[s.question_id].append(s)
    for qid, group in grouped.items():
        if len(group) != n:
            raise DataError(
                f"eval set '{name}'",
                f"question '{qid}' got {len(group)} samples from the backend, expected {n}",
            )
        group.sort(key=lambda s: s.sample_index)
    return grouped


def _correct_by_set(table: pa.Table) -> dict[str, dict[str, float]]:
    """{eval_set: {question_id: 1.0 or 0.0}} from a per-question table."""
    missing = {"eval_set", "question_id", "correct"} - set(table.column_names)
    if missing:
        raise DataError("per-question outputs", f"missing columns {sorted(missing)}")
    out: dict[str, dict[str, float]] = {}
    for name, qid, ok in zip(
        table.column("eval_set").to_pylist(),
        table.column("question_id").to_pylist(),
        table.column("correct").to_pylist(),
        strict=True,
    ):
        per_set = out.setdefault(name, {})
        if qid in per_set:
            raise DataError("per-question outputs", f"question '{qid}' appears twice in '{name}'")
        per_set[qid] = float(bool(ok))
    return out


def _as_int(field: str, value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(field, f"must hold integers, got {value!r}")
    return value
