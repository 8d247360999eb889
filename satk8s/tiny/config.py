"""How the tiny model is built: its architecture and training recipe, as plain config.

Kept free of torch and transformers so that building a pipeline's configs (grid expansion, the
compiler) does not import them; `satk8s.tiny.build` does the training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from satk8s.errors import ConfigError
from satk8s.tasks.arith import LEVELS


@dataclass(frozen=True)
class TinyArchitecture:
    """Sizes of the tiny Qwen3. The defaults give about 133K parameters."""

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 256
    max_positions: int = 512


def _default_mix() -> dict[str, float]:
    return {"easy": 0.65, "medium": 0.3, "hard": 0.05}


@dataclass(frozen=True)
class TinyBuildConfig:
    """How the tiny model is trained.

    The defaults build in about 3-4 minutes on one CPU core and give (seed 0, 100 questions per
    level): easy all-8-samples-correct 97%, two-digit greedy 14%, hard greedy 30%.
    """

    seed: int = 0
    """Seeds the weight init and the stream of training questions: same seed, same weights."""
    steps: int = 1800
    """Optimizer steps in all (easy-only warm-up included)."""
    batch_size: int = 64
    """Examples per step."""
    lr: float = 3e-3
    """Peak AdamW learning rate."""
    warmup: int = 100
    """Steps of linear learning-rate warm-up (at most `steps`); then linear decay to 0."""
    mix: dict[str, float] = field(default_factory=_default_mix)
    """Level name (see `arith.LEVELS`) -> share of examples after the easy-only phase."""
    easy_warmup_fraction: float = 0.25
    """Share of `steps` at the start that trains on "easy" only (a curriculum; helps a lot)."""
    arch: TinyArchitecture = field(default_factory=TinyArchitecture)
    """Model sizes (about 133K parameters by default)."""
    threads: int = 1
    """torch CPU threads while building; weights are reproducible for a fixed value. One thread is
    about as fast as two for matmuls this small, and two threads run 10-20x slower (spinning at
    barriers) as soon as another process shares a 2-core machine."""
    check_fraction: float = 0.3
    """Share of training solutions written with a redundant check line
    (`arith.checked_solution_for`). Two correct styles make the saturated samples differ, so
    signals, judges and DPO pairs have something to rank; 0 gives one style only."""
    measure_count: int = 100
    """Questions per level for the saturation figures in tiny_build.json; 0 skips measuring."""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "threads"):
            if getattr(self, name) < 1:
                raise ConfigError(name, f"must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError("lr", f"must be positive, got {self.lr}")
        if self.warmup < 0:
            raise ConfigError("warmup", f"must be >= 0, got {self.warmup}")
        if not 0.0 <= self.easy_warmup_fraction <= 1.0:
            raise ConfigError(
                "easy_warmup_fraction", f"must be in [0, 1], got {self.easy_warmup_fraction}"
            )
        if not 0.0 <= self.check_fraction <= 1.0:
            raise ConfigError("check_fraction", f"must be in [0, 1], got {self.check_fraction}")
        if self.measure_count < 0:
            raise ConfigError("measure_count", f"must be >= 0, got {self.measure_count}")
        unknown = set(self.mix) - set(LEVELS)
        if unknown:
            raise ConfigError(
                "mix", f"unknown levels {sorted(unknown)}; known: {', '.join(LEVELS)}"
            )
        if any(w < 0 for w in self.mix.values()) or sum(self.mix.values()) <= 0:
            raise ConfigError("mix", f"shares must be >= 0 with a positive sum, got {self.mix}")
