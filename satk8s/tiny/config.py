"""How the tiny model is built: its architecture and training recipe, as plain config.

Kept free of torch and transformers so that building a pipeline's configs (grid expansion, the
compiler) does not import them; `satk8s.tiny.build` does the training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from satk8s.errors import ConfigError
from satk8s.tasks.arith import LEVELS
from satk8s.tiny.world import STYLES


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
    return {"easy": 0.5, "add2": 0.5}


def _default_styles() -> dict[str, dict[str, float]]:
    shares = {"shown": 0.25, "bare": 0.55, "filler": 0.2}
    return {"easy": dict(shares), "add2": dict(shares)}


@dataclass(frozen=True)
class TinyBuildConfig:
    """How the tiny model is trained (its world of solution styles: `satk8s.tiny.world`).

    The defaults are the recipe of the checkpoint that ships with satk8s (`build.SHIPPED`; its
    tiny_build.json holds what it measures); training them takes about 4 minutes on one core.
    """

    seed: int = 0
    """Seeds the weight init and the stream of training questions: same seed, same weights."""
    steps: int = 1800
    """Optimizer steps in all (easy-only warm-up included)."""
    batch_size: int = 48
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
    styles: dict[str, dict[str, float]] = field(default_factory=_default_styles)
    """Level name -> style -> share of that level's training solutions (`world.STYLES`). A level
    not listed is written in the shown style only."""
    judge_every: int = 8
    """Every this many steps after the easy-only phase, one batch of judge examples
    (`world.preference`) is trained too; 0 trains no judge format."""
    judge_batch_size: int = 32
    """Judge examples per judge batch."""
    measure_count: int = 100
    """Questions per level (and for the judge) measured into tiny_build.json; 0 skips measuring."""
    shipped: bool = True
    """Take the checkpoint that ships with satk8s when this config is its recipe (the defaults):
    the same weights on every machine, no training. False trains the recipe here (a model built
    on another CPU differs in its last bits, and so in its samples)."""

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
        if self.judge_every < 0:
            raise ConfigError("judge_every", f"must be >= 0, got {self.judge_every}")
        if self.judge_batch_size < 1:
            raise ConfigError(
                "judge_batch_size", f"must be at least 1, got {self.judge_batch_size}"
            )
        for level, shares in self.styles.items():
            if level not in LEVELS:
                raise ConfigError("styles", f"unknown level {level!r}; known: {', '.join(LEVELS)}")
            unknown_styles = set(shares) - set(STYLES)
            if unknown_styles:
                raise ConfigError(
                    f"styles.{level}",
                    f"unknown styles {sorted(unknown_styles)}; known: {', '.join(STYLES)}",
                )
            if any(w < 0 for w in shares.values()) or sum(shares.values()) <= 0:
                raise ConfigError(
                    f"styles.{level}", f"shares must be >= 0 with a positive sum, got {shares}"
                )
        if self.measure_count < 0:
            raise ConfigError("measure_count", f"must be >= 0, got {self.measure_count}")
        unknown = set(self.mix) - set(LEVELS)
        if unknown:
            raise ConfigError(
                "mix", f"unknown levels {sorted(unknown)}; known: {', '.join(LEVELS)}"
            )
        if any(w < 0 for w in self.mix.values()) or sum(self.mix.values()) <= 0:
            raise ConfigError("mix", f"shares must be >= 0 with a positive sum, got {self.mix}")
