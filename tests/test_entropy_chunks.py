"""One chunk's entropy, computed in place: the same numbers as the plain formula, masked
vocabulary entries and soft-capped logits included."""

from __future__ import annotations

import math

import torch

from satk8s.signals.entropy import _entropy


def _plain(logits: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -torch.where(logp > -torch.inf, logp.exp() * logp, 0.0).sum(-1)


def test_in_place_entropy_equals_the_plain_formula() -> None:
    logits = torch.randn(6, 1000, generator=torch.Generator().manual_seed(0)) * 4
    assert torch.equal(_entropy(logits.clone(), None), _plain(logits))


def test_half_precision_logits_are_upcast_first() -> None:
    logits = torch.randn(3, 500, generator=torch.Generator().manual_seed(1)).bfloat16()
    assert torch.equal(_entropy(logits, None), _plain(logits.float()))


def test_masked_entries_count_as_zero_probability() -> None:
    logits = torch.zeros(2, 8)
    logits[:, 4:] = -torch.inf  # half the vocabulary masked: uniform over the other 4
    found = _entropy(logits, None)
    assert torch.allclose(found, torch.full((2,), math.log(4)))


def test_softcap_is_applied_before_the_softmax() -> None:
    logits = torch.randn(4, 300, generator=torch.Generator().manual_seed(2)) * 50
    capped = torch.tanh(logits / 30.0) * 30.0
    assert torch.allclose(_entropy(logits.clone(), 30.0), _plain(capped), atol=1e-6)
