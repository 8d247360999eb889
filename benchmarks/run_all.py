"""Every CPU benchmark at a CPU-feasible size, one Markdown table of ratios (`make bench`).

    .venv/bin/python benchmarks/run_all.py                     # prints and writes build/bench.md
    .venv/bin/python benchmarks/run_all.py --out bench.md --only entropy,threads

Each benchmark runs once, as its own process, with the sizes in `BENCHMARKS` (smaller than
their defaults where those take minutes), and writes its JSON; this script turns them into one
table of the ratios each measures side by side, under a description of the machine and its
load (other processes' load shifts every timing; the load average is printed before and after).
`benchmarks/gpu.py` needs a GPU and is not run here (its `--smoke` mode is a test).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from satk8s.threads import cpu_quota, thread_setting  # noqa: E402


@dataclass(frozen=True)
class Benchmark:
    script: str
    args: tuple[str, ...]
    setting: str
    """What was measured, for the table."""
    rows: Callable[[dict[str, Any]], list[tuple[str, str, str]]]
    """(measure, result, target) rows from the benchmark's JSON."""


def _generate(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    t = r["tokens_per_s"]
    result = (
        f"**{r['speedup']:.1f}x** ({t['batched']:,.0f} vs {t['one at a time']:,.0f} tokens/s), "
        f"identical samples: {r['identical']}"
    )
    return [("hf generation: batched / one at a time", result, ">= 5x")]


def _train(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    t = r["tokens_per_s"]
    result = f"**{r['speedup']:.2f}x** ({t['packed']:,.0f} vs {t['unpacked']:,.0f} tokens/s)"
    p = r["processes"]
    n, low, high = p["count"], *p["load_average"]
    scaled = (
        f"**{p['scaling']:.2f}x** ({p['tokens_per_s'][str(n)]:,.0f} vs "
        f"{p['tokens_per_s']['1']:,.0f} tokens/s; load {low:.1f}-{high:.1f} on {p['cpus']} CPUs)"
    )
    return [
        ("SFT: packed / unpacked", result, "— (pays on GPU only)"),
        (f"SFT step: {n} processes (torchrun, gloo) / 1", scaled, "— (bounded by free cores)"),
    ]


def _store(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    m, s = r["modes"]["multipart"], r["modes"]["single-part"]
    up = m["upload_mb_s"] / s["upload_mb_s"]
    down = m["download_mb_s"] / s["download_mb_s"]
    result = (
        f"upload **{up:.2f}x** ({m['upload_mb_s']:.0f} vs {s['upload_mb_s']:.0f} MB/s), "
        f"download **{down:.2f}x** ({m['download_mb_s']:.0f} vs {s['download_mb_s']:.0f} MB/s)"
    )
    return [("S3 store (moto): multipart / single-part", result, "—")]


def _compile(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    result = (
        f"**{r['compile_s']:.1f} s** for {r['cells']} cells, {r['tasks']} tasks "
        f"(expansion {r['expansion_s']:.1f} s); byte-identical recompile: {r['identical']}"
    )
    rows = [("grid compile", result, f"< {r['target_s']:.0f} s")]
    if "parts" in r:
        largest = max(r["part_bytes"]) / 1024
        split = (
            f"{r['whole_bytes'] / 2**20:.2f} MiB whole; **{r['parts']} runs**, largest "
            f"{largest:.0f} KiB, in {r['split_s']:.1f} s"
        )
        rows.append(("grid split", split, "each run < 512 KiB"))
    return rows


def _entropy(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    c, t = r["chunked"], r["trl"]
    diff = max(v["max_abs_diff"] for v in (c, r["unchunked"], t))
    shape = r["shape"]
    result = (
        f"peak **{c['peak_ratio']:.2f}x**, time **{c['time_ratio']:.2f}x** "
        f"({c['peak_mb']:,.0f} vs {r['unchunked']['peak_mb']:,.0f} MB); vs TRL: peak "
        f"{c['peak_mb'] / t['peak_mb']:.2f}x, time {c['seconds'] / t['seconds']:.2f}x; "
        f"max diff {diff:.0e}"
    )
    name = f"entropy {shape['batch']} x {shape['tokens']}, vocab {shape['vocab']:,}: chunked / unchunked"
    target = "at 8 x 1,024 (`entropy.py`, no --small): peak <= 0.25x at <= 1.1x time"
    return [(name, result, target)]


def _threads(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    m = list(r["median_seconds"].values())
    low, high = r["load_average"]
    result = (
        f"**{r['speedup']:.2f}x** faster with satk8s's setting "
        f"({r['satk8s_default']['threads']} thread(s)): median {m[1]:.1f} vs {m[0]:.1f} s (load {low:.1f}-{high:.1f})"
    )
    return [("threads, evaluate step: torch default / satk8s", result, "satk8s's not slower")]


BENCHMARKS = {
    "generate": Benchmark("generate.py", (), "16 prompts x n=4, 48 new tokens, random tiny", _generate),
    "train": Benchmark("train.py", ("--examples", "256"), "256 SFT examples, batch 16", _train),
    "store": Benchmark("store.py", ("--size-mb", "64"), "64 MiB, 8 files", _store),
    "compile": Benchmark("compile.py", (), "arith grid, 20 seeds", _compile),
    "entropy": Benchmark("entropy.py", ("--small",), "8 x 128 tokens", _entropy),
    "threads": Benchmark("threads.py", ("--quick",), "evaluate step, A B A B", _threads),
}  # fmt: skip


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    memory = next(
        int(line.split()[1]) / 2**20
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    quota = cpu_quota()
    setting = thread_setting()
    import torch

    return (
        f"{model}, {os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable, cgroup quota "
        f"{'none' if quota is None else f'{quota:g}'}), {memory:.0f} GiB RAM, no GPU; "
        f"Python {platform.python_version()}, torch {torch.__version__}; steps' threads: "
        f"{setting.threads} ({setting.source})"
    )


def run(name: str, bench: Benchmark, tmp: Path) -> dict[str, Any]:
    out = tmp / f"{name}.json"
    argv = [
        sys.executable,
        str(REPO / "benchmarks" / bench.script),
        *bench.args,
        "--json",
        str(out),
    ]
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise RuntimeError(f"{bench.script} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    print(done.stdout, flush=True)
    return {**json.loads(out.read_text()), "_seconds": seconds}


def table(results: dict[str, dict[str, Any]], description: str, loads: tuple[float, float]) -> str:
    lines = [
        f"Machine: {description}.",
        f"Load average (1 min) {loads[0]:.2f} before, {loads[1]:.2f} after; "
        f"{time.strftime('%Y-%m-%d')}.",
        "",
        "| benchmark | setting | measure | result | target |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, result in results.items():
        bench = BENCHMARKS[name]
        for measure, value, target in bench.rows(result):
            lines.append(f"| `{bench.script}` | {bench.setting} | {measure} | {value} | {target} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench.md")
    parser.add_argument("--only", help=f"comma-separated subset of {', '.join(BENCHMARKS)}")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        sys.exit(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}")
    description = machine()
    print(description, flush=True)
    before = os.getloadavg()[0]
    results = {}
    with tempfile.TemporaryDirectory(prefix="satk8s-bench-") as tmp:
        for name in names:
            print(f"== {name}: {BENCHMARKS[name].script} {' '.join(BENCHMARKS[name].args)}")
            results[name] = run(name, BENCHMARKS[name], Path(tmp))
    markdown = table(results, description, (before, os.getloadavg()[0]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown)
    print(markdown)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
