"""Throughput of the hf generation backend: batched vs one sequence at a time, in one run.

    .venv/bin/python benchmarks/generate.py                 # random-init tiny model
    .venv/bin/python benchmarks/generate.py --model DIR     # any saved causal LM

Prints samples/s and tokens/s for both settings and the batched speed-up (target: >= 5x).
Both runs use the same prompts, config and seed, so they also show that the samples do not
depend on the batch size.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from satk8s.generation import SamplingConfig
from satk8s.generation.hf import HFBackend
from satk8s.tasks.base import format_prompt


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a saved model directory (default: random-init tiny)")
    parser.add_argument("--prompts", type=int, default=16, help="number of questions")
    parser.add_argument("--n", type=int, default=4, help="samples per question")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=64, help="rows per batch when batched")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser.parse_args()


def save_tiny_model(path: Path) -> str:
    from satk8s.tiny.model import new_model
    from satk8s.tiny.tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    new_model(tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def run(backend: HFBackend, prompts, sampling: SamplingConfig) -> tuple[list, float]:
    backend.generate(prompts[:1], sampling, seed=0)  # warm-up: first-call allocations
    start = time.perf_counter()
    samples = backend.generate(prompts, sampling, seed=0)
    return samples, time.perf_counter() - start


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="satk8s-bench-") as tmp:
        benchmark(args, args.model or save_tiny_model(Path(tmp)))


def benchmark(args: argparse.Namespace, model: str) -> None:
    questions = [f"{i % 97} + {(7 * i) % 89} - {i % 13}" for i in range(args.prompts)]
    prompts = [(f"q{i}", format_prompt(q)) for i, q in enumerate(questions)]
    # No stop strings: a random model rarely emits them; with --model they would cut samples short.
    sampling = SamplingConfig(n=args.n, max_new_tokens=args.max_new_tokens, stop=())

    results = {}
    for label, batch_size in (("batched", args.batch_size), ("one at a time", 1)):
        backend = HFBackend(model, device=args.device, batch_size=batch_size)
        samples, seconds = run(backend, prompts, sampling)
        tokens = sum(len(s.token_ids) for s in samples)
        results[label] = (samples, seconds, len(samples) / seconds, tokens / seconds)

    print(f"model: {model}  device: {backend.device}  threads: {args.threads}")
    print(f"{args.prompts} prompts x n={args.n}, max_new_tokens={args.max_new_tokens}")
    print(f"{'':<28}{'seconds':>10}{'samples/s':>12}{'tokens/s':>12}")
    for label, (_, seconds, sps, tps) in results.items():
        name = f"{label} (batch_size={args.batch_size if label == 'batched' else 1})"
        print(f"{name:<28}{seconds:>10.2f}{sps:>12.1f}{tps:>12.1f}")
    ratio = results["batched"][3] / results["one at a time"][3]
    print(f"batched / one at a time: {ratio:.1f}x tokens/s (target >= 5x)")
    same = [s.token_ids for s in results["batched"][0]] == [
        s.token_ids for s in results["one at a time"][0]
    ]
    print(f"identical samples in both settings: {same}")
    if args.json:
        tokens_s = {label: r[3] for label, r in results.items()}
        record = {"tokens_per_s": tokens_s, "speedup": ratio, "identical": same}
        args.json.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
