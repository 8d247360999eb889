"""A step over a large pool as K part tasks (each on its own GPUs), merged by a CPU task.

`generate`, `signals` and `evaluate` take a `part` (index, count): the task does only its share
of the pool, cut so the merged output equals one task's over the whole pool:

- generate: whole generation shards (`shard_size` questions each), contiguous. A shard's
  samples depend only on the run's seed and the shard's index (`satk8s.generation.shards`), so
  K parts write exactly the shards one task would;
- signals: whole questions (every solution of a question in one part: the judges compare
  solutions within a question), contiguous in the order the kept table lists them;
- evaluate: each eval set's questions (after `limit`), contiguous.

The `merge` step (`satk8s.steps.merge`) puts the parts back together on CPU and recomputes
what spans the whole pool (counts, judge health, accuracies with their bootstrap CIs).
"""

from __future__ import annotations

from dataclasses import dataclass

from satk8s.errors import ConfigError


@dataclass(frozen=True)
class PartConfig:
    """Which share of the pool this task does."""

    index: int = 0
    """This task's part, from 0."""
    count: int = 1
    """Parts the pool is split into; 1: the whole pool in one task."""

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ConfigError("part.count", f"must be at least 1, got {self.count}")
        if not 0 <= self.index < self.count:
            raise ConfigError("part.index", f"must be in [0, {self.count}), got {self.index}")

    def bounds(self, n: int) -> tuple[int, int]:
        """[start, stop) of this part among `n` items: contiguous, disjoint, covering all."""
        return n * self.index // self.count, n * (self.index + 1) // self.count
