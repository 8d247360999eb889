"""Steps set their CPU threads from the CPUs they have: cgroup quota, affinity, overrides."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from satk8s.errors import ConfigError
from satk8s.threads import (
    ENV,
    NO_QUOTA_THREADS,
    THREAD_ENV,
    cpu_quota,
    limit_threads,
    thread_setting,
)

REPO = Path(__file__).resolve().parents[1]


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_cgroup_v2_quota_is_the_smallest_on_the_path(tmp_path: Path) -> None:
    # A Kubernetes pod: the pod's cgroup holds the limit, the container's says "max".
    root = _tree(
        tmp_path / "fs",
        {
            "kubepods/pod1/cpu.max": "250000 100000\n",
            "kubepods/pod1/ctr/cpu.max": "max 100000\n",
            "kubepods/cpu.max": "max 100000\n",
        },
    )
    proc = _tree(tmp_path, {"cgroup": "0::/kubepods/pod1/ctr\n"}) / "cgroup"
    assert cpu_quota(root, proc) == 2.5


def test_cgroup_v2_inside_a_container_namespace(tmp_path: Path) -> None:
    # With a cgroup namespace the container's own cgroup is the mount's root, path "/".
    root = _tree(tmp_path / "fs", {"cpu.max": "400000 100000\n"})
    proc = _tree(tmp_path, {"cgroup": "0::/\n"}) / "cgroup"
    assert cpu_quota(root, proc) == 4.0


def test_cgroup_v1_quota_and_a_host_path_that_is_not_mounted(tmp_path: Path) -> None:
    # Docker on cgroup v1: /proc/self/cgroup names the host path, the mount is the container's.
    root = _tree(
        tmp_path / "fs",
        {"cpu,cpuacct/cpu.cfs_quota_us": "150000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"},
    )
    proc = _tree(tmp_path, {"cgroup": "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n"})
    assert cpu_quota(root, proc / "cgroup") == 1.5


def test_no_quota_anywhere_is_none(tmp_path: Path) -> None:
    root = _tree(
        tmp_path / "fs",
        {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n", "cpu.max": "max 1"},
    )
    proc = _tree(tmp_path, {"cgroup": "4:cpu:/\n0::/\n"}) / "cgroup"
    assert cpu_quota(root, proc) is None
    assert cpu_quota(tmp_path / "missing", tmp_path / "missing-cgroup") is None


def _v2(root: Path, quota: float | None) -> dict[str, Path]:
    """A cgroup v2 tree whose only cgroup has `quota` CPUs (None: no limit)."""
    line = "max 100000" if quota is None else f"{round(quota * 100000)} 100000"
    fs = _tree(root / "fs", {"cpu.max": line + "\n"})
    return {"cgroup_root": fs, "proc_cgroup": _tree(root, {"cgroup": "0::/\n"}) / "cgroup"}


@pytest.mark.parametrize(
    ("quota", "cpus", "threads"),
    [(2.5, 16, 2), (8.0, 4, 4), (0.5, 16, 1), (16.0, 64, 16)],
)
def test_quota_rounds_down_within_the_affinity(
    tmp_path: Path, quota: float, cpus: int, threads: int
) -> None:
    setting = thread_setting(env={}, cpus=cpus, **_v2(tmp_path, quota))
    assert setting.threads == threads
    assert f"cgroup CPU quota {quota:g} of {cpus} CPUs" == setting.source


def test_without_a_quota_one_thread(tmp_path: Path) -> None:
    setting = thread_setting(env={}, cpus=8, **_v2(tmp_path, None))
    assert setting.threads == NO_QUOTA_THREADS == 1
    assert setting.source == "no CPU quota, 8 CPUs visible"


def test_overrides_win_in_order() -> None:
    env = {ENV: "3", "OMP_NUM_THREADS": "5"}
    assert thread_setting(env=env, cpus=16).threads == 3
    assert thread_setting(env={"OMP_NUM_THREADS": "5"}, cpus=16).threads == 5
    torch_default = thread_setting(env={ENV: "torch"}, cpus=16)
    assert torch_default.threads is None and "torch" in torch_default.source


@pytest.mark.parametrize("value", ["two", "0", "-1", "1.5"])
def test_a_bad_override_names_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match=f"'{ENV}': must be a positive integer or torch"):
        thread_setting(env={ENV: value}, cpus=2)
    with pytest.raises(ConfigError, match="'OMP_NUM_THREADS': must be a positive integer"):
        thread_setting(env={"OMP_NUM_THREADS": value}, cpus=2)


def test_limit_threads_sets_every_pool_and_a_loaded_torch(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    before = torch.get_num_threads()
    for name in THREAD_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(ENV, "2")
    try:
        setting = limit_threads()
        assert setting.threads == 2
        assert {name: os.environ[name] for name in THREAD_ENV} == dict.fromkeys(THREAD_ENV, "2")
        assert torch.get_num_threads() == 2
        assert "satk8s: CPU threads 2 (SATK8S_THREADS)" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)


def _fresh_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_ENV and k != ENV}
    return {**env, **extra}


def test_torch_loaded_after_the_call_reads_the_count() -> None:
    # The component body calls limit_threads before any step imports torch. (torch caps the
    # count at the CPUs it sees; one differs from its default on any machine with two or more.)
    code = (
        "from satk8s.threads import limit_threads; limit_threads(log=False); "
        "import torch; print(torch.get_num_threads())"
    )
    env = _fresh_env(**{ENV: "1"})
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"


def test_step_command_sets_threads_and_rejects_a_bad_value(tmp_path: Path) -> None:
    satk8s = str(Path(sys.executable).with_name("satk8s"))
    argv = [satk8s, "step", "prepare", "--out", str(tmp_path / "q"),
            "--set", "arith.train.easy=2", "--set", "arith.train.medium=0"]  # fmt: skip
    done = subprocess.run(argv, env=_fresh_env(**{ENV: "2"}), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "satk8s: CPU threads 2 (SATK8S_THREADS)" in done.stderr
    bad = subprocess.run(argv, env=_fresh_env(**{ENV: "lots"}), capture_output=True, text=True)
    assert bad.returncode == 2
    assert "config field 'SATK8S_THREADS': must be a positive integer or torch, got 'lots'" in (
        bad.stderr
    )


def test_every_component_task_sets_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from satk8s.orchestration.addressed import resolve_config
    from satk8s.orchestration.component_runner import run_component

    for name in THREAD_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(ENV, "1")
    config = resolve_config("prepare", {"arith": {"train": {"easy": 2, "medium": 0}}})
    run_component("prepare", "prepare", str(tmp_path), json.dumps(config), False, "", {})
    assert os.environ["OMP_NUM_THREADS"] == "1"
    assert "satk8s: CPU threads 1 (SATK8S_THREADS)" in capsys.readouterr().err
