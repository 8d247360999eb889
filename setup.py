"""Package list for setuptools (everything else is in pyproject.toml).

components/ and pipelines/ live at the top of the repository (one KFP component per step; the
pipeline builder and the grid configs) and ship inside the same distribution as
`satk8s.components` and `satk8s.pipelines`, so `pip install .` gives the SDK all it needs.
Discovery from pyproject.toml alone cannot map top-level folders into the package.
"""

from setuptools import find_namespace_packages, find_packages, setup

MAPPED = {"satk8s.components": "components", "satk8s.pipelines": "pipelines"}

setup(
    packages=find_packages(include=["satk8s", "satk8s.*"])
    + [
        f"{name}{sub.removeprefix(folder)}"
        for name, folder in MAPPED.items()
        # Namespace discovery lists the data-only folders (pipelines/conf/*) too, so their YAML
        # ships as package data without setuptools warning about unlisted packages.
        for sub in [
            folder,
            *(f"{folder}.{p}" for p in find_namespace_packages(folder, exclude=["*__pycache__*"])),
        ]
    ],
    package_dir={name: folder for name, folder in MAPPED.items()},
)
