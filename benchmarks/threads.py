"""Steps' CPU threads: torch's default vs satk8s's setting (`satk8s.threads`), interleaved.

    .venv/bin/python benchmarks/threads.py            # `make demo`'s pipeline, A B A B
    .venv/bin/python benchmarks/threads.py --quick    # one evaluate step of the tiny model
    .venv/bin/python benchmarks/threads.py --repeats 3 --json out.json

A: `SATK8S_THREADS=torch`, every step keeps torch's and BLAS's defaults (one thread per
visible CPU), the behaviour before `satk8s.threads`. B: no override, every step sets what
`satk8s.threads.thread_setting` chooses on this machine. The runs alternate (A, B, A, B, ...)
so that a change in the machine's load hits both alike; medians are compared.

The demo workload is `satk8s run smoke --local` into a fresh store and workdir per run (so
every step computes), with the tiny model already built in `$SATK8S_CACHE` (built here first
if it is not). `--quick` times `satk8s step evaluate` on 120 questions instead. Each run is a
subprocess with OMP_NUM_THREADS and the other pool variables removed from its environment.
The 1-minute load average is printed before every run: other processes' load is part of what
the thread setting has to cope with, and it should be reported with the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from satk8s.threads import ENV, THREAD_ENV, thread_setting  # noqa: E402

SATK8S = str(Path(sys.executable).with_name("satk8s"))
VARIANTS = {"A: torch default": "torch", "B: satk8s default": None}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one evaluate step, not the demo")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each variant")
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser.parse_args()


def env_for(threads: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_ENV and k != ENV}
    if threads is not None:
        env[ENV] = threads
    return env


def tiny_model() -> Path:
    """The default tiny model from the build cache (built now, untimed, if missing)."""
    from satk8s.tiny.build import TinyBuildConfig, build_or_reuse
    from satk8s.tiny.cache import default_cache_root

    return build_or_reuse(default_cache_root(), TinyBuildConfig())


def demo_command(work: Path) -> list[str]:
    return [SATK8S, "run", "smoke", "--local", "--store", str(work / "store"),
            "--workdir", str(work / "kfp")]  # fmt: skip


def quick_setup(root: Path) -> tuple[Path, Path]:
    """The questions the quick workload evaluates, prepared once (untimed)."""
    questions = root / "questions"
    sets = ["arith.train.easy=1", "arith.train.medium=0", "arith.eval_id.easy=40",
            "arith.eval_id.medium=20", "arith.eval_hard.hard=60"]  # fmt: skip
    argv = [SATK8S, "step", "prepare", "--out", str(questions)]
    subprocess.run(argv + [a for s in sets for a in ("--set", s)], check=True,
                   capture_output=True, env=env_for("1"))  # fmt: skip
    return questions, tiny_model()


def quick_command(work: Path, questions: Path, model: Path) -> list[str]:
    return [SATK8S, "step", "evaluate", "-i", f"questions={questions}", "--out", str(work),
            "--set", f"model={model}", "--set", "eval.max_new_tokens=48"]  # fmt: skip


def main() -> None:
    args = parse_args()
    setting = thread_setting(env_for(None))
    print(
        f"machine: {os.cpu_count()} CPUs, {len(os.sched_getaffinity(0))} usable; "
        f"satk8s default here: {setting.threads} thread(s) ({setting.source})"
    )
    with tempfile.TemporaryDirectory(prefix="satk8s-threads-") as tmp:
        root = Path(tmp)
        if args.quick:
            questions, model = quick_setup(root)
            workload = "satk8s step evaluate (tiny model, 120 questions, 48 new tokens)"
        else:
            tiny_model()
            workload = "satk8s run smoke --local (make demo, tiny model cached)"
        print(f"workload: {workload}; order A, B, A, B, ...", flush=True)
        times: dict[str, list[float]] = {name: [] for name in VARIANTS}
        loads: list[float] = []
        for i in range(args.repeats):
            for name, threads in VARIANTS.items():
                work = root / f"run-{i}-{threads or 'satk8s'}"
                argv = quick_command(work, questions, model) if args.quick else demo_command(work)
                load = os.getloadavg()[0]
                loads.append(load)
                started = time.perf_counter()
                done = subprocess.run(argv, env=env_for(threads), capture_output=True, text=True)
                seconds = time.perf_counter() - started
                if done.returncode:
                    sys.exit(f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
                times[name].append(seconds)
                print(f"  run {i + 1} {name:<20} {seconds:8.1f} s  (load before {load:.2f})",
                      flush=True)  # fmt: skip
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    a, b = medians.values()
    print(f"median: A {a:.1f} s, B {b:.1f} s; A / B = {a / b:.2f}x "
          f"(load average {min(loads):.2f}-{max(loads):.2f})")  # fmt: skip
    if args.json:
        result = {
            "workload": workload,
            "satk8s_default": {"threads": setting.threads, "source": setting.source},
            "seconds": times,
            "median_seconds": medians,
            "speedup": a / b,
            "load_average": [min(loads), max(loads)],
        }
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
