"""Entropy of solutions under a 152K-vocabulary model: chunked vs unchunked vs TRL, in one run.

    .venv/bin/python benchmarks/entropy.py            # batch 8 x 1,024-token solutions (~11 GB)
    .venv/bin/python benchmarks/entropy.py --small    # batch 8 x 128: a quick run (~1.5 GB)

The model is a random-weight Qwen3 (`Qwen3ForCausalLM`, the class of Qwen3-1.7B) with the real
151,936-token vocabulary and tied embeddings; its depth and width are small (--hidden,
--layers) so the decoder is cheap on CPU and the vocabulary dominates, as it does for the
entropy step's memory at any size. Every row is a 32-token prompt and a --tokens completion.

Variants, each in a fresh subprocess (same seed, so same weights and tokens):
- chunked: `satk8s.signals.entropy.token_entropies` with the step's default chunk_size (512);
- unchunked: the same function with one chunk holding every completion position;
- trl: a plain forward (`model(...).logits`, every position's float32 logits at once) and TRL's
  `entropy_from_logits` (trl/trainer/utils.py in trl 1.16), taken at the completion positions.

Peak memory is the process's peak resident set size (VmHWM, /proc/self/status; the same as
`resource.getrusage(RUSAGE_SELF).ru_maxrss`) during the timed call: the peak is reset by
writing 5 to /proc/self/clear_refs after the model and the inputs are built, so "peak" counts
the weights and the Python process too, and "above start" is the peak less the RSS just before
the call. Time is the median of --repeats calls after a small warm-up call. Target: chunked
peak <= 1/4 of unchunked at <= 1.1x its time, every entropy equal within 1e-5.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

VOCAB = 151_936
PROMPT_TOKENS = 32
VARIANTS = ("chunked", "unchunked", "trl")
MEMORY_TARGET = 0.25
TIME_TARGET = 1.1
TOLERANCE = 1e-5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="128-token solutions (quick)")
    parser.add_argument("--batch", type=int, default=8, help="solutions per forward pass")
    parser.add_argument("--tokens", type=int, default=1024, help="completion tokens per row")
    parser.add_argument("--vocab", type=int, default=VOCAB)
    parser.add_argument("--hidden", type=int, default=256, help="model width")
    parser.add_argument("--layers", type=int, default=2, help="decoder layers")
    parser.add_argument("--chunk-size", type=int, default=512, help="chunked variant's chunk")
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per variant")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.small:
        args.tokens = min(args.tokens, 128)
    return args


def build(args: argparse.Namespace):
    """(model, input_ids, attention_mask, completion_mask), the same for every variant."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    heads = max(1, args.hidden // 64)
    config = Qwen3Config(
        vocab_size=args.vocab, hidden_size=args.hidden, num_hidden_layers=args.layers,
        num_attention_heads=heads, num_key_value_heads=max(1, heads // 2), head_dim=64,
        intermediate_size=3 * args.hidden, max_position_embeddings=4096,
        tie_word_embeddings=True, attn_implementation="sdpa",
    )  # fmt: skip
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(config).eval()
    width = PROMPT_TOKENS + args.tokens
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, args.vocab, (args.batch, width), generator=generator)
    attention = torch.ones_like(ids)
    completion = torch.zeros_like(ids, dtype=torch.bool)
    completion[:, PROMPT_TOKENS:] = True
    return model, ids, attention, completion


def compute(variant: str, model, ids, attention, completion, chunk_size: int):
    """Entropy at every completion position, flattened row by row ([rows * tokens])."""
    import torch

    from satk8s.signals.entropy import token_entropies

    if variant == "trl":
        from trl.trainer.utils import entropy_from_logits

        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=attention).logits
            entropies = entropy_from_logits(logits)  # [batch, seq]
            del logits
            # Position t - 1 predicts token t, as in token_entropies.
            return entropies[:, :-1][completion[:, 1:]]
    size = chunk_size if variant == "chunked" else int(completion.sum())
    return torch.cat(token_entropies(model, ids, attention, completion, size))


def rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    model, ids, attention, completion = build(args)
    # Warm-up on a slice: first-call allocations and kernel choices, not counted.
    warm = (ids[:1, :64], attention[:1, :64], completion[:1, :64])
    compute(args.worker, model, *warm, args.chunk_size)
    start_rss = rss_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
    seconds = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        entropies = compute(args.worker, model, ids, attention, completion, args.chunk_size)
        seconds.append(time.perf_counter() - started)
    peak = rss_mb("VmHWM")
    torch.save(entropies, args.out.with_suffix(".pt"))
    record = {"seconds": statistics.median(seconds), "peak_mb": peak, "start_mb": start_rss}
    args.out.write_text(json.dumps(record))


def run_variant(variant: str, argv: list[str], tmp: Path) -> dict:
    out = tmp / f"{variant}.json"
    command = [sys.executable, __file__, *argv, "--worker", variant, "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"variant {variant} failed:\n{done.stderr[-3000:]}")
    import torch

    return {**json.loads(out.read_text()), "entropies": torch.load(out.with_suffix(".pt"))}


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args)
        return
    settings = ("batch", "tokens", "vocab", "hidden", "layers", "chunk_size", "repeats", "threads")
    argv = [
        x for name in settings for x in (f"--{name.replace('_', '-')}", str(getattr(args, name)))
    ]
    positions = args.batch * args.tokens
    full_gb = args.batch * (PROMPT_TOKENS + args.tokens) * args.vocab * 4 / 1e9
    print(
        f"Qwen3, vocab {args.vocab:,}, hidden {args.hidden}, {args.layers} layers (random "
        f"weights); batch {args.batch} x ({PROMPT_TOKENS} prompt + {args.tokens} solution) "
        f"tokens; {positions:,} entropies; full float32 logits {full_gb:.1f} GB; "
        f"{args.threads} thread(s)",
        flush=True,
    )
    results = {}
    with tempfile.TemporaryDirectory(prefix="satk8s-entropy-") as tmp:
        for variant in VARIANTS:
            results[variant] = run_variant(variant, argv, Path(tmp))
            r = results[variant]
            print(f"  {variant:<10} done: {r['seconds']:.2f} s, peak {r['peak_mb']:.0f} MB",
                  flush=True)  # fmt: skip
    base = results["unchunked"]
    print(f"\n{'variant':<11}{'seconds':>9}{'peak RSS MB':>13}{'above start':>13}"
          f"{'peak vs unchunked':>19}{'time vs unchunked':>19}{'max |diff|':>12}")  # fmt: skip
    for variant, r in results.items():
        diff = (r["entropies"] - base["entropies"]).abs().max().item()
        r["max_abs_diff"] = diff
        r["peak_ratio"] = r["peak_mb"] / base["peak_mb"]
        r["time_ratio"] = r["seconds"] / base["seconds"]
        above = r["peak_mb"] - r["start_mb"]
        print(f"{variant:<11}{r['seconds']:>9.2f}{r['peak_mb']:>13.0f}{above:>13.0f}"
              f"{r['peak_ratio']:>18.2f}x{r['time_ratio']:>18.2f}x{diff:>12.1e}")  # fmt: skip
    chunked = results["chunked"]
    met = (
        chunked["peak_ratio"] <= MEMORY_TARGET
        and chunked["time_ratio"] <= TIME_TARGET
        and max(r["max_abs_diff"] for r in results.values()) <= TOLERANCE
    )
    print(
        f"\nchunked: peak {chunked['peak_ratio']:.2f}x of unchunked (target <= {MEMORY_TARGET}), "
        f"time {chunked['time_ratio']:.2f}x (target <= {TIME_TARGET}), values within "
        f"{TOLERANCE:g}: {'met' if met else 'NOT met'}"
    )
    if args.json:
        summary = {
            v: {k: r[k] for k in r if k != "entropies"} for v, r in results.items()
        } | {"shape": {"batch": args.batch, "tokens": args.tokens, "vocab": args.vocab},
             "target_met": met}  # fmt: skip
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
