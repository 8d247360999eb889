"""Signal `external_judge`: a stronger judge scores the same pairs by the same protocol.

Kinds: `hf` (another local model through HFPairJudge), `vllm` (a large model on GPU, tensor
parallel; thin, cannot run without a GPU), `openai` (any OpenAI-compatible completions endpoint
with logprobs, text verdicts as the fallback) and `oracle` (arith only: checks every step).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from satk8s.errors import ConfigError
from satk8s.signals.pairwise import (
    AGGREGATES,
    PAIRS_SCHEMA,
    JudgeTemplate,
    PairJudge,
    PairRequest,
    Verdict,
    judge_both_orders,
    pair_diagnostics,
    pairwise_scores,
    solutions_by_question,
)
from satk8s.signals.schema import scores_table

SIGNAL = "external_judge"
KINDS = ("hf", "vllm", "openai", "oracle")


@dataclass(frozen=True)
class ExternalJudgeConfig:
    kind: str = "oracle"
    """`hf`, `vllm`, `openai` or `oracle` (programmatic, arith only)."""
    model: str = ""
    """The judge model: a checkpoint directory or hub id (hf, vllm), the served name (openai)."""
    base_url: str = ""
    """The endpoint for `openai`, e.g. http://judge:8000/v1."""
    api_key_env: str = "OPENAI_API_KEY"
    """The environment variable holding the endpoint's API key (never the key itself)."""
    judge: JudgeTemplate = field(default_factory=JudgeTemplate)
    """The judge prompt and labels (same protocol as the self-judge)."""
    max_all_pairs_n: int = 8
    """Questions with at most this many solutions get all pairs judged."""
    pair_budget: int = 32
    """Pairs judged per question beyond max_all_pairs_n."""
    seed: int = 0
    """Seeds the choice of pairs; equal to the self-judge's seed, both judge the same pairs."""
    aggregate: str = "bradley_terry"
    """"bradley_terry" or "win_rate"."""
    batch_size: int = 8
    """Judge prompts per forward pass (hf)."""
    tensor_parallel_size: int = 1
    """GPUs for the judge model (vllm)."""
    timeout_s: float = 30.0
    """Total seconds for one request: connect, wait and the whole reply (openai)."""
    max_retries: int = 4
    """Retries on 429, 5xx and timeouts, with exponential backoff (openai)."""
    max_invalid_share: float = 0.05
    """The step fails when more than this share of the verdicts is invalid (openai)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError("kind", f"unknown judge kind '{self.kind}'; choose one of {KINDS}")
        if self.kind in ("hf", "vllm", "openai") and not self.model:
            raise ConfigError("model", f"judge kind '{self.kind}' needs a model")
        if self.kind == "openai" and not self.base_url:
            raise ConfigError("base_url", "judge kind 'openai' needs the endpoint's base URL")
        if self.aggregate not in AGGREGATES:
            raise ConfigError("aggregate", f"must be one of {AGGREGATES}, got '{self.aggregate}'")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.api_key_env):
            # Never echoed: a key pasted here by mistake must not reach a log or a manifest.
            raise ConfigError(
                "api_key_env",
                "must be the NAME of the environment variable holding the key (e.g. "
                "OPENAI_API_KEY), not the key itself",
            )


class VLLMPairJudge:
    """Label probabilities from vLLM: one generated token with its top logprobs.

    GPU only, so it is not exercised in the test suite; the reading of the top logprobs is the
    same function the OpenAI judge uses, which is tested.
    """

    def __init__(self, model: str, template: JudgeTemplate, tensor_parallel_size: int) -> None:
        from vllm import LLM  # GPU image only

        self.name = f"vllm:{model}"
        self.template = template
        self.llm = LLM(model=model, tensor_parallel_size=tensor_parallel_size)

    def judge(self, requests: Sequence[PairRequest]) -> list[Verdict]:
        from vllm import SamplingParams

        from satk8s.signals.openai_judge import p_first_from_top_logprobs

        params = SamplingParams(max_tokens=1, temperature=0.0, logprobs=20)
        prompts = [self.template.render(r).rstrip(" ") for r in requests]
        verdicts = []
        for output in self.llm.generate(prompts, params):
            top = output.outputs[0].logprobs[0] if output.outputs[0].logprobs else {}
            read = p_first_from_top_logprobs(
                {lp.decoded_token: lp.logprob for lp in top.values()}, self.template.labels
            )
            verdicts.append(
                Verdict(None, "invalid") if read is None else Verdict(read[0], "logprobs", read[1])
            )
        return verdicts


def make_judge(config: ExternalJudgeConfig) -> PairJudge:
    """The configured judge (loads a model for hf and vllm)."""
    if config.kind == "oracle":
        from satk8s.signals.oracle import OraclePairJudge

        return OraclePairJudge()
    if config.kind == "openai":
        from satk8s.signals.openai_judge import OpenAIPairJudge

        return OpenAIPairJudge(
            config.base_url,
            config.model,
            api_key_env=config.api_key_env,
            template=config.judge.template,
            labels=config.judge.labels,
            timeout_s=config.timeout_s,
            max_retries=config.max_retries,
            max_invalid_share=config.max_invalid_share,
        )
    if config.kind == "vllm":
        return VLLMPairJudge(config.model, config.judge, config.tensor_parallel_size)
    from satk8s.signals.hf_judge import HFPairJudge

    return HFPairJudge(
        config.model, config.judge.template, config.judge.labels, batch_size=config.batch_size
    )


def judged_scores(
    kept: pa.Table, judge: PairJudge | None, settings: Any, signal: str, aggregate: str
) -> tuple[pa.Table, pa.Table, dict[str, Any]]:
    """Both-order pairwise judging of every saturated question, aggregated per solution.

    An empty saturated set gives explicitly empty tables and a note (`judge` may then be None,
    so no model is loaded for nothing)."""
    if kept.num_rows == 0:
        return (
            scores_table([]),
            PAIRS_SCHEMA.empty_table(),
            {"questions": 0, "note": "empty saturated set"},
        )
    assert judge is not None
    solutions = {q: [i for i, _ in s] for q, (_, s) in solutions_by_question(kept).items()}
    pairs = judge_both_orders(kept, judge, settings)
    scores = pairwise_scores(pairs, signal, aggregate, solutions)
    diagnostics = {
        "judge": judge.name,
        "questions": len(solutions),
        "single_solution_questions": sum(len(s) == 1 for s in solutions.values()),
        "aggregate": aggregate,
        **pair_diagnostics(pairs),
    }
    return scores, pairs, diagnostics


def external_judge_scores(
    kept: pa.Table, config: ExternalJudgeConfig
) -> tuple[pa.Table, pa.Table, dict[str, Any]]:
    """(scores with signal "external_judge", pairs, diagnostics)."""
    judge = make_judge(config) if kept.num_rows else None
    return judged_scores(kept, judge, config, SIGNAL, config.aggregate)
