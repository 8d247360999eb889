"""A pairwise judge from any local causal LM, by next-token label probabilities.

The self-judge is this class with the policy model; an external judge can be this class with
another (stronger) model. For each request: render the judge template, run one forward pass,
and read the logits of the two label tokens at the last position;
p_first = softmax over those two logits.

Batching: requests are grouped by question (and by length within a question) so the pairs of
one question share a batch and little padding. The shared text is only the question itself
(the two solutions fill most of the prompt), so there is no KV-cache prefix sharing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from satk8s.errors import ConfigError
from satk8s.signals.pairwise import (
    DEFAULT_TEMPLATE,
    JudgeTemplate,
    PairRequest,
    Verdict,
    check_single_token_labels,
)


class HFPairJudge:
    """PairJudge over a transformers checkpoint (a local directory or a hub id)."""

    def __init__(
        self,
        model_dir: str,
        template: str = DEFAULT_TEMPLATE,
        labels: Sequence[str] = ("A", "B"),
        batch_size: int = 8,
        device: str = "auto",
        dtype: str = "auto",
        name: str | None = None,
    ) -> None:
        if batch_size < 1:
            raise ConfigError("batch_size", f"must be at least 1, got {batch_size}")
        self.name = name or f"hf:{Path(model_dir).name}"
        self.template = JudgeTemplate(template, tuple(labels))
        self.batch_size = batch_size
        # Left padding: every row's last real token sits at the last position.
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # Checked before the model loads: a bad label costs no GPU time.
        self.labels = check_single_token_labels(self.tokenizer, template, self.template.labels)
        self.device = torch.device(
            ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        )
        if dtype != "auto" and not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ConfigError(
                "dtype", f"unknown dtype '{dtype}'; use auto, float32, bfloat16, float16"
            )
        torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype)
        self.model.to(self.device).eval()

    def prompt(self, request: PairRequest) -> str:
        """The exact text the model reads; the label is its next token."""
        return self.labels.prompt(self.template.render(request))

    @torch.inference_mode()
    def judge(self, requests: Sequence[PairRequest]) -> list[Verdict]:
        prompts = [self.prompt(r) for r in requests]
        order = sorted(
            range(len(requests)), key=lambda k: (requests[k].question_id, -len(prompts[k]))
        )
        verdicts: list[Verdict | None] = [None] * len(requests)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            for k, verdict in zip(
                batch, self._judge_batch([prompts[k] for k in batch]), strict=True
            ):
                verdicts[k] = verdict
        return verdicts  # type: ignore[return-value]

    def _judge_batch(self, prompts: list[str]) -> list[Verdict]:
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True).to(self.device)
        # Positions from the mask, as generate does, so left padding never shifts a row.
        position_ids = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        logits = self.model(**enc, position_ids=position_ids, logits_to_keep=1).logits[:, -1]
        pair = torch.log_softmax(logits.float(), dim=-1)[:, list(self.labels.ids)].double().cpu()
        p_first = torch.softmax(pair, dim=-1)[:, 0]
        mass = pair.exp().sum(-1)
        # NaN logits, or both labels at probability 0: no usable answer.
        return [
            Verdict(p, "logprobs", m) if p == p else Verdict(None, "invalid")
            for p, m in zip(p_first.tolist(), mass.tolist(), strict=True)
        ]
