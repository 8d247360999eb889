"""Step `tiny`: the tiny embedded base model as a store output, for pipelines that run on it.

The default recipe's checkpoint ships with satk8s and is copied as it is; any other recipe comes
from the local build cache (`build_or_reuse`), so a machine that already built it does not
train it again. The store then holds a plain HF checkpoint directory that every model-loading
step takes as its `model`.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

from satk8s.steps.outputs import step_output
from satk8s.tiny.cache import default_cache_root
from satk8s.tiny.config import TinyBuildConfig

TinyStepConfig = TinyBuildConfig


def tiny(
    out: str, config: TinyBuildConfig = TinyBuildConfig(), force: bool = False
) -> dict[str, Any]:
    """Writes the checkpoint (config.json, model.safetensors, tokenizer files) at `out`."""
    with step_output(out, "tiny", config, {}, force) as output:
        if output.cached is not None:
            return output.cached
        from satk8s.tiny.build import SHIPPED, build_or_reuse  # torch: only when building

        started = time.time()
        built = build_or_reuse(default_cache_root(), config)
        root = output.open()
        shutil.copytree(built, root, dirs_exist_ok=True)
        summary = {"parameters_built_from": str(built), "shipped": built == SHIPPED}
        return output.commit(root, summary, started)
