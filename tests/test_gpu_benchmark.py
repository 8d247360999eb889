"""benchmarks/gpu.py end to end at tiny shapes on CPU, so it runs the day a GPU is there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from satk8s.grid.cost import MODELS, ModelShape, Work, load_throughput

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_benchmark_smoke_writes_json_and_markdown(tmp_path: Path) -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # the CPU path, even on a GPU machine
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu.py"), "--smoke", "--no-vllm",
         "--out", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu.json").read_text())
    assert report["errors"] == {}
    results = report["results"]
    assert results["generate_vllm"] == {"skipped": "vllm is not importable here"}
    hf = results["generate_hf"]
    assert hf["sequences"] == 2 * 2 and 0 < hf["tokens"] <= 4 * 8 and hf["tokens_per_s"] > 0
    entropy = results["entropy"]
    assert entropy["max_abs_diff"] <= 1e-5
    assert entropy["chunked"]["seconds"] > 0 and entropy["unchunked"]["seconds"] > 0
    for part in ("sft", "sft_packed"):
        assert results[part]["steps"] == 2 and results[part]["tokens_per_s"] > 0
    assert results["dpo"]["steps"] == 2 and results["dpo"]["seconds_per_step"] > 0
    # The smoke model is the shipped config scaled down, so the shapes differ from Qwen3-1.7B.
    assert report["model"]["vocab"] == 1024
    assert (
        ModelShape.from_config(json.loads((REPO / "benchmarks" / "qwen3-1.7b.json").read_text()))
        == MODELS["Qwen/Qwen3-1.7B"]
    )
    markdown = (tmp_path / "gpu.md").read_text()
    assert "| generation: hf (batch 2) |" in markdown
    assert "| SFT: packed (sdpa) |" in markdown and "SMOKE" in markdown
    # grid show reads its throughput block.
    measured = load_throughput("h100-80gb", tmp_path / "gpu.json")
    assert set(measured.measured) == {"decode", "forward", "train"}
    assert measured.rate(Work(1, "decode", "m"), MODELS["Qwen/Qwen3-1.7B"]) > 0
