"""KFP components, one per step: thin wrappers that call the satk8s step.

The component functions live in `steps.py`; `step_component` makes the KFP component of a step
for one pinned image (the image is known only at compile time, from `images/digests.json`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from kfp import dsl
from kfp.dsl.python_component import PythonComponent

from .steps import FUNCTIONS

CPU_ROLES = ("cpu",)
"""Roles whose steps run in the CPU image; every other role runs in the GPU image."""


def image_for_role(role: str, images: Mapping[str, str]) -> str:
    """The image (`repo@sha256:…`) a step of this compute role runs in."""
    return images["cpu"] if role in CPU_ROLES else images["gpu"]


@functools.cache
def step_component(step: str, image: str) -> PythonComponent:
    """The lightweight component of `step` running in `image`. `install_kfp_package=False`:
    the step images ship satk8s with the pinned kfp, and kfp.local would otherwise pip-install
    kfp into the current environment before every task."""
    if step not in FUNCTIONS:
        raise KeyError(f"no component for step '{step}'; known: {', '.join(FUNCTIONS)}")
    return dsl.component(FUNCTIONS[step], base_image=image, install_kfp_package=False)


__all__ = ["CPU_ROLES", "FUNCTIONS", "image_for_role", "step_component"]
