"""Step `stage_model`: a hub model mirrored into the store once per grid, for the GPU steps.

GPU nodes often have no route to the hub (private subnets) and a grid has dozens of GPU tasks
that each would download the same weights; the pipeline runs this one CPU task instead, and
every model-loading task takes its output location as its `model` (`satk8s.grid.expand`). The
work is `satk8s.store.stage_model.stage_model`, which `satk8s store stage-model` runs too.
"""

from __future__ import annotations

from satk8s.store.stage_model import StageModelConfig, stage_model

__all__ = ["StageModelConfig", "stage_model"]
