"""How many CPU threads a step's torch and BLAS kernels use: set once, at the step's start.

torch, MKL and OpenBLAS each default to one thread per CPU they can see, and none of them reads
a cgroup CPU quota: a pod limited to 8 CPUs on a 64-core node runs 64 threads that the kernel
throttles, and two steps' threads on a busy 2-core machine spin at barriers for seconds.

The count, first match wins:
1. `SATK8S_THREADS`: a positive integer, or `torch` to leave torch's and BLAS's own defaults;
2. `OMP_NUM_THREADS` when set (torchrun sets it to 1 for each of several workers in one pod);
3. a cgroup CPU quota (a pod's CPU limit, which every compute profile sets: `cpu` is request
   and limit), rounded down, at most the CPUs the process may run on (`sched_getaffinity`);
4. with no quota (a workstation, CI, kfp.local tasks, `docker run` without `--cpus`):
   `NO_QUOTA_THREADS`, because nothing reserves any CPU for the step there.

The count goes into the environment (OMP/MKL/OpenBLAS and the tokenizers' Rayon pool read it
when they load, and child processes inherit it) and into torch directly when torch is already
imported. This module imports nothing heavy: a cached step never loads torch.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from satk8s.errors import ConfigError

ENV = "SATK8S_THREADS"
LIBRARY_DEFAULTS = "torch"
"""`SATK8S_THREADS=torch`: set nothing, leave torch's and the BLAS libraries' own defaults."""

NO_QUOTA_THREADS = 1
"""Threads when no CPU quota applies. One: the demo's steps run models of about 130K
parameters whose kernels gain nothing from a second thread, and two threads next to any other
busy process spin at barriers. `benchmarks/threads.py` measured the whole demo both ways on a
busy 2-core machine: median 278 s with one thread, 794 s with torch's default two (README,
Benchmarks). Set `SATK8S_THREADS` to use more CPUs on an idle machine."""

THREAD_ENV = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "RAYON_NUM_THREADS",
)
"""Every thread pool a step may load: OpenMP (torch), MKL, OpenBLAS (numpy, scipy), Accelerate,
numexpr, and Rayon (the `tokenizers` library)."""

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


@dataclass(frozen=True)
class ThreadSetting:
    threads: int | None
    """Threads per pool; None leaves the libraries' defaults."""
    source: str
    """Where the count came from, for the step's log."""


def affinity_cpus() -> int:
    """CPUs this process may run on (a cpuset or `taskset` narrows it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cpu_quota(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The CPU quota of this process's cgroup and its ancestors, in CPUs (the smallest one), or
    None when there is none. cgroup v2 `cpu.max` ("200000 100000" = 2 CPUs, "max ..." = none);
    cgroup v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us` (quota -1 = none). Kubernetes writes a
    container's CPU limit there (limit x period)."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    quotas: list[float] = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2: "0::/path"
            dirs = _dirs(cgroup_root, path)
            quotas += [q for d in dirs if (q := _quota_v2(d / "cpu.max")) is not None]
        elif "cpu" in controllers.split(","):  # v1: "4:cpu,cpuacct:/path"
            mount = cgroup_root / controllers
            if not mount.is_dir():
                mount = cgroup_root / "cpu"
            quotas += [q for d in _dirs(mount, path) if (q := _quota_v1(d)) is not None]
    return min(quotas) if quotas else None


def _dirs(mount: Path, path: str) -> list[Path]:
    """The cgroup's directory and its ancestors up to the mount. Inside a container the mount
    is already the container's own cgroup and `path` may name a host path that is not there."""
    leaf = mount / path.lstrip("/")
    if not leaf.is_dir():
        return [mount]
    return [leaf, *(p for p in leaf.parents if p.is_relative_to(mount))]


def _quota_v2(file: Path) -> float | None:
    try:
        quota, period = file.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def _quota_v1(directory: Path) -> float | None:
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period


def thread_setting(
    env: dict[str, str] | None = None,
    cpus: int | None = None,
    cgroup_root: Path = CGROUP_ROOT,
    proc_cgroup: Path = PROC_CGROUP,
) -> ThreadSetting:
    """The thread count a step should use here (see the module docstring for the order).
    `env` and `cpus` default to this process's environment and CPU affinity."""
    env = dict(os.environ) if env is None else env
    if value := env.get(ENV, "").strip():
        if value == LIBRARY_DEFAULTS:
            return ThreadSetting(None, f"{ENV}={LIBRARY_DEFAULTS}: the libraries' defaults")
        return ThreadSetting(_positive(value, ENV), ENV)
    if value := env.get("OMP_NUM_THREADS", "").strip():
        return ThreadSetting(_positive(value, "OMP_NUM_THREADS"), "OMP_NUM_THREADS")
    cpus = affinity_cpus() if cpus is None else cpus
    quota = cpu_quota(cgroup_root, proc_cgroup)
    if quota is not None:
        # Rounded down: a thread with less than a whole CPU behind it is throttled mid-barrier.
        threads = max(1, min(cpus, math.floor(quota)))
        return ThreadSetting(threads, f"cgroup CPU quota {quota:g} of {cpus} CPUs")
    return ThreadSetting(min(cpus, NO_QUOTA_THREADS), f"no CPU quota, {cpus} CPUs visible")


def _positive(value: str, name: str) -> int:
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ConfigError(
            name, f"must be a positive integer{' or torch' if name == ENV else ''}, got {value!r}"
        )
    return threads


def limit_threads(log: bool = True) -> ThreadSetting:
    """Apply `thread_setting()` to this process (and the processes it starts). Call it at the
    start of a step, before torch or numpy load."""
    setting = thread_setting()
    if setting.threads is not None:
        for name in THREAD_ENV:
            os.environ[name] = str(setting.threads)
        if "torch" in sys.modules:  # already loaded: its pools no longer read the environment
            sys.modules["torch"].set_num_threads(setting.threads)
    if log:
        shown = setting.threads if setting.threads is not None else "default"
        print(f"satk8s: CPU threads {shown} ({setting.source})", file=sys.stderr, flush=True)
    return setting


__all__ = [
    "ENV",
    "NO_QUOTA_THREADS",
    "ThreadSetting",
    "affinity_cpus",
    "cpu_quota",
    "limit_threads",
    "thread_setting",
]
