"""SFT training throughput: packing vs not, and 1 vs 2 training processes, side by side.

    .venv/bin/python benchmarks/train.py                 # random-init tiny model
    .venv/bin/python benchmarks/train.py --model DIR     # any saved causal LM
    .venv/bin/python benchmarks/train.py --processes 4   # 1 vs 4 processes

Both runs train one epoch on the same arithmetic examples (a mix of levels, each prompt with
0..--fewshot worked examples in front, so lengths vary like real few-shot prompts) through
`satk8s.training.train`. Tokens/s counts real (non-padding) tokens over the training loop. The
packed row holds about as many real tokens as an unpacked batch, so both runs take about the
same steps.

What to expect: packing saves the compute spent on padding only with flash-attention's
variable-length kernels (GPU). Under sdpa or eager (CPU) TRL's padding-free batch is one long
sequence with a block-diagonal mask, so attention is quadratic in the whole batch and packing
comes out slower (measured here on 1 CPU thread: ~0.6x).

Processes: the train step (`satk8s.steps.train.train_model`, unpacked, the same batch per
optimizer step) in one process, then under torchrun in `--processes` processes (gloo; DDP,
since accelerate shards with FSDP on GPUs only), each with one thread. Tokens/s is every
process's real tokens over rank 0's training loop. On a 2-core machine shared with other jobs
the ratio is bounded by the free cores: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
from pathlib import Path

import pyarrow as pa
import torch

from satk8s.tasks import arith
from satk8s.tasks.base import Question, format_prompt
from satk8s.training import TrainConfig, train


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a saved model directory (default: random-init tiny)")
    parser.add_argument("--examples", type=int, default=512, help="training examples")
    parser.add_argument("--fewshot", type=int, default=3, help="most worked examples per prompt")
    parser.add_argument("--batch-size", type=int, default=16, help="examples per unpacked batch")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--processes", type=int, default=2, help="processes to compare with 1")
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser.parse_args()


def save_tiny_model(path: Path) -> str:
    from satk8s.tiny.model import new_model
    from satk8s.tiny.tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    new_model(tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def examples(count: int, fewshot: int, seed: int = 0) -> pa.Table:
    """prompt/completion rows of mixed difficulty and a varying number of few-shot blocks."""
    rng = random.Random(seed)
    levels = list(arith.LEVELS.values())

    def question(i: int) -> Question:
        return arith.make_question(arith.random_expression(rng.choice(levels), rng), f"q{i}")

    rows = []
    for i in range(count):
        q = question(i)
        shots = [question(-1) for _ in range(rng.randint(0, fewshot))]
        rows.append(
            {
                "prompt": format_prompt(q.question, shots),
                "completion": " " + q.solution,
                "weight": 1.0,
            }
        )
    return pa.Table.from_pylist(rows)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    table = examples(args.examples, args.fewshot)
    with tempfile.TemporaryDirectory(prefix="satk8s-bench-") as tmp:
        model_dir = args.model or save_tiny_model(Path(tmp) / "model")
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        lengths = [
            len(tokenizer(p + c)["input_ids"]) + 1
            for p, c in zip(
                table["prompt"].to_pylist(), table["completion"].to_pylist(), strict=True
            )
        ]
        longest = max(lengths)
        # One packed row holds about one unpacked batch of real tokens.
        row = max(longest, round(args.batch_size * sum(lengths) / len(lengths)))
        common = dict(num_train_epochs=1, learning_rate=1e-4, logging_steps=10**6,
                      save_steps=10**6, device=args.device, max_length=longest)  # fmt: skip
        runs = {
            "unpacked": TrainConfig(**common, per_device_batch_size=args.batch_size),
            "packed": TrainConfig(
                **{**common, "max_length": row}, packing=True, per_device_batch_size=1
            ),
        }
        print(
            f"{args.examples} examples, {min(lengths)}-{longest} tokens "
            f"(mean {sum(lengths) / len(lengths):.0f}); batch {args.batch_size}; packed row {row}"
        )
        results = {}
        for name, config in runs.items():
            summary = train(table, model_dir, Path(tmp) / name, config)
            results[name] = summary["tokens_seen"] / summary["train_seconds"]
            print(
                f"{name:>9}: {results[name]:9.0f} tokens/s  ({summary['steps']} steps, "
                f"{summary['tokens_seen']} tokens, {summary['train_seconds']:.1f} s, "
                f"device {summary['device']})",
                flush=True,
            )
        load_before = os.getloadavg()[0]
        per_process = processes(table, model_dir, Path(tmp), args, longest)
        load_after = os.getloadavg()[0]
    speedup = results["packed"] / results["unpacked"]
    print(f"packing speed-up: {speedup:.2f}x")
    one, many = per_process["1"], per_process[str(args.processes)]
    scaling = many / one
    print(
        f"{args.processes} processes / 1: {scaling:.2f}x (load average {load_before:.1f} before, "
        f"{load_after:.1f} after, {os.cpu_count()} CPUs)"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "tokens_per_s": results,
                    "speedup": speedup,
                    "processes": {
                        "tokens_per_s": per_process,
                        "count": args.processes,
                        "scaling": scaling,
                        "load_average": [load_before, load_after],
                        "cpus": os.cpu_count(),
                    },
                },
                indent=2,
            )
        )


def processes(
    table: pa.Table, model_dir: str, tmp: Path, args: argparse.Namespace, longest: int
) -> dict[str, float]:
    """Tokens/s of the train step in one process and under torchrun in `args.processes`."""
    import time

    import pyarrow.parquet as pq

    from satk8s.steps.outputs import commit, open_output
    from satk8s.steps.train import TrainStepConfig, train_model
    from satk8s.training.distributed import DistributedConfig

    os.environ.setdefault("SATK8S_THREADS", str(args.threads))
    dataset = str(tmp / "dataset")
    staging = open_output(dataset)
    pq.write_table(table, staging / "train.parquet")
    commit(staging, "build_dataset", {"algorithm": "sft"}, {}, {}, time.time())
    config = TrainConfig(
        num_train_epochs=1, learning_rate=1e-4, logging_steps=10**6, save_steps=10**6,
        device=args.device, max_length=longest, per_device_batch_size=args.batch_size,
    )  # fmt: skip
    found = {}
    for count in (1, args.processes):
        step = TrainStepConfig(model_dir, config, DistributedConfig(processes=count))
        summary = train_model(dataset, str(tmp / f"processes-{count}"), step)
        found[str(count)] = summary["tokens_seen"] / summary["train_seconds"]
        print(
            f"{count:>2} process(es): {found[str(count)]:9.0f} tokens/s  ({summary['steps']} "
            f"steps, {summary['tokens_seen']} tokens, {summary['train_seconds']:.1f} s)",
            flush=True,
        )
    return found


if __name__ == "__main__":
    main()
