"""Training sets (signal x algorithm) and training runs (SFT, weighted SFT, DPO) with TRL.

Importing this package is cheap: torch and TRL load when a run starts or when
`WeightedSFTTrainer` is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from satk8s.training.datasets import (
    ALGORITHMS,
    BuildConfig,
    build_metadata,
    build_training_set,
    softmax_weights,
    validate_training_set,
)
from satk8s.training.train import TrainConfig, last_checkpoint, resolve, train

if TYPE_CHECKING:
    from satk8s.training.weighted_sft import WeightedSFTTrainer

__all__ = [
    "ALGORITHMS",
    "BuildConfig",
    "TrainConfig",
    "WeightedSFTTrainer",
    "build_metadata",
    "build_training_set",
    "last_checkpoint",
    "resolve",
    "softmax_weights",
    "train",
    "validate_training_set",
]


def __getattr__(name: str) -> Any:
    # WeightedSFTTrainer subclasses trl.SFTTrainer, so importing it imports TRL (seconds).
    if name == "WeightedSFTTrainer":
        from satk8s.training.weighted_sft import WeightedSFTTrainer

        return WeightedSFTTrainer
    raise AttributeError(f"module 'satk8s.training' has no attribute {name!r}")
