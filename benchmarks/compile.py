"""Compile time of a 200-cell grid for a cluster (target: under 5 s), and its size: whole, and
in the runs `satk8s grid compile` splits it into (each under the safe size of one run).

    .venv/bin/python benchmarks/compile.py             # the arith grid with 20 seeds: 200 cells
    .venv/bin/python benchmarks/compile.py --seeds 5   # 50 cells

The plan is the real `arith` grid (3 signals x 4 algorithms, sft once per seed: 10 cells per
seed) expanded for a cluster by `satk8s.grid.cluster.load_cluster_plan` (example cluster settings:
a store, the S3 and hub-token Secrets, a MinIO endpoint), as `satk8s grid compile` does;
expansion is timed apart from compilation. Images are placeholder digests: compiling never pulls
or checks them. Compiled twice: the second YAML must be byte-identical to the first. Then as
`satk8s grid compile` writes it (`compile_grid`): the parts, their sizes and task counts.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGET_S = 5.0
IMAGES = {
    "gpu": "registry.example/satk8s-gpu@sha256:" + "a" * 64,
    "cpu": "registry.example/satk8s-cpu@sha256:" + "b" * 64,
}


def example_settings() -> object:
    from satk8s.cluster.settings import ClusterSettings

    return ClusterSettings(
        store_root="s3://example-bucket/satk8s",
        s3_endpoint_url="http://minio.kubeflow:9000",
        s3_region="us-east-1",
        s3_addressing_style="path",
        s3_secret="satk8s-s3",
        hub_token_secret="satk8s-hub-token",
        source="example settings",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20, help="seeds (10 cells each)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    started = time.perf_counter()
    import kfp.compiler  # noqa: F401  (imported once, as by any compile command)
    import kfp.kubernetes  # noqa: F401

    from satk8s.grid.cluster import load_cluster_plan
    from satk8s.pipelines.builder import (
        build_pipeline,
        compile_grid,
        compile_plan,
        package_bytes,
    )

    imports = time.perf_counter() - started
    seeds = ",".join(str(s) for s in range(args.seeds))
    started = time.perf_counter()
    plan = load_cluster_plan("arith", [f"seeds=[{seeds}]"], example_settings())
    expansion = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as tmp:
        first, second = Path(tmp) / "a.yaml", Path(tmp) / "b.yaml"
        started = time.perf_counter()
        compile_plan(plan, first, IMAGES)
        compile_s = time.perf_counter() - started
        started = time.perf_counter()
        compile_plan(plan, second, IMAGES)
        recompile_s = time.perf_counter() - started
        identical = first.read_bytes() == second.read_bytes()
        size = first.stat().st_size
        whole = package_bytes(build_pipeline(plan, IMAGES))
        started = time.perf_counter()
        split = compile_grid(plan, Path(tmp) / "split" / "arith.yaml", IMAGES)
        split_s = time.perf_counter() - started

    verdict = "OK" if compile_s < TARGET_S else "OVER TARGET"
    print(f"grid arith: {len(plan.cells)} cells, {len(plan.nodes)} tasks")
    print(f"imports (kfp, satk8s): {imports:.2f} s")
    print(f"expansion (load_cluster_plan): {expansion:.2f} s")
    print(f"compile: {compile_s:.2f} s (target < {TARGET_S:.0f} s: {verdict})")
    print(f"recompile: {recompile_s:.2f} s, byte-identical: {identical}")
    print(f"YAML: {size / 1e6:.1f} MB; pipeline and platform spec as JSON: {whole / 2**20:.2f} MiB")
    sizes = ", ".join(
        f"{b / 1024:.0f} KiB ({t} tasks)" for b, t in zip(split.sizes, split.tasks, strict=True)
    )
    print(f"grid compile: {len(split.parts)} run(s) in {split_s:.2f} s: {sizes}")
    if args.json:
        record = {"cells": len(plan.cells), "tasks": len(plan.nodes), "compile_s": compile_s,
                  "expansion_s": expansion, "identical": identical, "target_s": TARGET_S,
                  "whole_bytes": whole, "parts": len(split.parts), "part_bytes": list(split.sizes),
                  "split_s": split_s}  # fmt: skip
        args.json.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
