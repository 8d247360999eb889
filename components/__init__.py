"""KFP components, one per step: thin wrappers that call the satk8s step.

The component functions live in `steps.py`; `step_component` makes the KFP component of a step
for one pinned image (the image is known only at compile time, from `images/digests.json`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from kfp import dsl
from kfp.dsl.python_component import PythonComponent

from .grid_parts import FUNCTIONS as PART_FUNCTIONS
from .steps import FUNCTIONS


def image_for_profile(profile: Mapping[str, Any], images: Mapping[str, str]) -> str:
    """The image (`repo@sha256:…`) a step with this compute profile runs in: the GPU image
    when the profile asks for accelerators, the CPU image otherwise (the CPU image runs every
    step on CPU, e.g. the smoke grid on a cluster's CPU nodes)."""
    return images["gpu"] if int(profile.get("accelerator_count") or 0) > 0 else images["cpu"]


@functools.cache
def step_component(step: str, image: str) -> PythonComponent:
    """The lightweight component of `step` running in `image`. `install_kfp_package=False`:
    the step images ship satk8s with the pinned kfp, and kfp.local would otherwise pip-install
    kfp into the current environment before every task."""
    if step not in FUNCTIONS:
        raise KeyError(f"no component for step '{step}'; known: {', '.join(FUNCTIONS)}")
    return dsl.component(FUNCTIONS[step], base_image=image, install_kfp_package=False)


@functools.cache
def part_component(name: str, image: str) -> PythonComponent:
    """A component of a split grid's coordination (`grid_parts.py`) running in `image`."""
    return dsl.component(PART_FUNCTIONS[name], base_image=image, install_kfp_package=False)


__all__ = ["FUNCTIONS", "PART_FUNCTIONS", "image_for_profile", "part_component", "step_component"]
