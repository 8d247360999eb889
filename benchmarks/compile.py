"""Compile time of a 200-cell grid into one Kubeflow pipeline YAML (target: under 5 s).

    .venv/bin/python benchmarks/compile.py             # the arith grid with 20 seeds: 200 cells
    .venv/bin/python benchmarks/compile.py --seeds 5   # 50 cells

The plan is the real `arith` grid (3 signals x 4 algorithms, sft once per seed: 10 cells per
seed) expanded for a cluster by `satk8s.grid.cluster.load_cluster_plan` (example cluster settings:
a store, the S3 and hub-token Secrets, a MinIO endpoint), as `satk8s grid compile` does;
expansion is timed apart from compilation. Images are placeholder digests: compiling never pulls
or checks them. Compiled twice: the second YAML must be byte-identical to the first.
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
    from satk8s.pipelines.builder import compile_plan

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

    verdict = "OK" if compile_s < TARGET_S else "OVER TARGET"
    print(f"grid arith: {len(plan.cells)} cells, {len(plan.nodes)} tasks")
    print(f"imports (kfp, satk8s): {imports:.2f} s")
    print(f"expansion (load_cluster_plan): {expansion:.2f} s")
    print(f"compile: {compile_s:.2f} s (target < {TARGET_S:.0f} s: {verdict})")
    print(f"recompile: {recompile_s:.2f} s, byte-identical: {identical}")
    print(f"YAML: {size / 1e6:.1f} MB")
    if args.json:
        record = {"cells": len(plan.cells), "tasks": len(plan.nodes), "compile_s": compile_s,
                  "expansion_s": expansion, "identical": identical, "target_s": TARGET_S}  # fmt: skip
        args.json.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
