"""The GPU benchmark: generation, entropy and training speed of a Qwen3-1.7B-shaped model, one run.

    python benchmarks/gpu.py --out results/         # one GPU, about 4-5 minutes, no downloads
    python benchmarks/gpu.py --smoke --out /tmp/g   # tiny shapes, runs on CPU too (a test)

The model has Qwen3-1.7B's configuration (`benchmarks/qwen3-1.7b.json`, the public config.json
values) and random weights, in bfloat16; the tokenizer is a synthetic word-level vocabulary of
the same 151,936 tokens ("w0 w1 ..."), so nothing is downloaded and every prompt has an exact
token count. Measured, each through satk8s's own code path:

- generation at n=16: vLLM (`VLLMBackend`, only when vllm is importable; its engine start is
  reported apart) vs transformers (`HFBackend`), tokens/s of sampled tokens;
- entropy (`token_entropies`): chunked (the step's chunk_size) vs one chunk, time and peak
  GPU memory above the weights (`torch.cuda.max_memory_allocated`), max |difference|;
- SFT (satk8s's TRL trainer) without and with packing: tokens/s of non-padding tokens and
  model FLOPs utilisation (6 x matmul parameters per token over the GPU's dense bf16 peak,
  `satk8s.grid.cost.GPUS`; recomputation by gradient checkpointing is not counted);
- DPO (satk8s's TRL trainer, reference log-probs precomputed): seconds per optimizer step.

Training runs build the trainer satk8s builds but skip `train()`'s checkpoints and final save
(a 1.7B checkpoint with optimizer state is ~20 GB of disk per run). Writes gpu.json (with a
"throughput" block `satk8s grid show --throughput` reads) and gpu.md into --out. A part that
fails is recorded with its error and the others still run; the exit status is 1 then.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CONFIG = Path(__file__).with_name("qwen3-1.7b.json")
SMOKE_SHAPE = {
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 1024,
    "max_position_embeddings": 512, "bos_token_id": 1000, "eos_token_id": 1000,
}  # fmt: skip


@dataclass(frozen=True)
class Sizes:
    prompts: int = 32
    n: int = 16
    prompt_tokens: int = 64
    new_tokens: int = 256
    entropy_batch: int = 8
    entropy_tokens: int = 1024
    chunk_size: int = 512
    train_steps: int = 20
    train_batch: int = 8
    max_length: int = 1024
    dpo_steps: int = 10
    dpo_batch: int = 4


SMOKE_SIZES = Sizes(prompts=2, n=2, prompt_tokens=8, new_tokens=8, entropy_batch=2,
                    entropy_tokens=32, chunk_size=16, train_steps=2, train_batch=2,
                    max_length=64, dpo_steps=2, dpo_batch=2)  # fmt: skip


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu.json, gpu.md")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes; CPU is fine")
    parser.add_argument("--config", type=Path, default=CONFIG, help="model config.json")
    parser.add_argument("--no-vllm", action="store_true", help="skip vLLM even if importable")
    parser.add_argument("--vllm-worker", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


# ----------------------------------------------------------------------------- the model


def model_config(path: Path, smoke: bool) -> dict:
    config = json.loads(path.read_text())
    return {**config, **SMOKE_SHAPE} if smoke else config


def word(i: int) -> str:
    return f"w{i}"


def save_model(config: dict, folder: Path, device: str) -> None:
    """Random bfloat16 weights with `config`, and a word-level tokenizer of its vocabulary."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    vocab = {word(i): i for i in range(config["vocab_size"])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=word(0)))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    eos = word(config["eos_token_id"])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=eos, pad_token=eos,
                                   unk_token=word(0))  # fmt: skip
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    hf_config = AutoConfig.for_model(**config)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(hf_config, dtype=torch.bfloat16)
    model.save_pretrained(folder)


def random_text(rng: random.Random, tokens: int, vocab: int, eos: int) -> str:
    """`tokens` words of the synthetic vocabulary, never the end-of-sequence one."""
    return " ".join(word(i if i != eos else i - 1) for i in rng.choices(range(1, vocab), k=tokens))


# ----------------------------------------------------------------------------- the parts


def generation(backend, prompts, sizes: Sizes) -> dict:
    from satk8s.generation import SamplingConfig

    sampling = SamplingConfig(n=sizes.n, max_new_tokens=sizes.new_tokens, stop=(), top_k=0)
    backend.generate(prompts[:1], SamplingConfig(n=1, max_new_tokens=4, stop=()), seed=1)
    sync()
    started = time.perf_counter()
    samples = backend.generate(prompts, sampling, seed=0)
    sync()
    seconds = time.perf_counter() - started
    tokens = sum(len(s.token_ids) for s in samples)
    return {"sequences": len(samples), "tokens": tokens, "seconds": seconds,
            "tokens_per_s": tokens / seconds}  # fmt: skip


def hf_generation(model_dir: Path, prompts, sizes: Sizes, device: str) -> dict:
    from satk8s.generation.hf import HFBackend

    batch = sizes.prompts * sizes.n // 2 or 1  # two batches of prompt x sample rows
    backend = HFBackend(str(model_dir), device=device, dtype="bfloat16", batch_size=batch)
    result = generation(backend, prompts, sizes) | {"batch_size": batch}
    del backend
    free()
    return result


def vllm_worker(spec: Path) -> None:
    """In its own process: vLLM takes most of the GPU's memory and keeps it until exit."""
    args = json.loads(spec.read_text())
    sizes = Sizes(**args["sizes"])
    started = time.perf_counter()
    from satk8s.generation.vllm import VLLMBackend

    backend = VLLMBackend(args["model"], gpu_memory_utilization=0.8,
                          max_model_len=sizes.prompt_tokens + sizes.new_tokens + 16)  # fmt: skip
    start_s = time.perf_counter() - started
    result = generation(backend, [tuple(p) for p in args["prompts"]], sizes)
    spec.with_suffix(".out.json").write_text(json.dumps(result | {"engine_start_s": start_s}))


def vllm_generation(model_dir: Path, prompts, sizes: Sizes, tmp: Path) -> dict:
    spec = tmp / "vllm.json"
    spec.write_text(json.dumps({"model": str(model_dir), "prompts": prompts,
                                "sizes": sizes.__dict__}))  # fmt: skip
    done = subprocess.run([sys.executable, __file__, "--out", str(tmp), "--vllm-worker",
                           str(spec)], capture_output=True, text=True)  # fmt: skip
    if done.returncode:
        raise RuntimeError(f"vLLM worker failed:\n{done.stderr[-3000:]}")
    return json.loads(spec.with_suffix(".out.json").read_text())


def entropy(model_dir: Path, config: dict, sizes: Sizes, device: str) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from satk8s.signals.entropy import token_entropies

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).to(device).eval()
    generator = torch.Generator().manual_seed(0)
    prompt = 32 if not sizes.entropy_tokens < 64 else 4
    width = prompt + sizes.entropy_tokens
    ids = torch.randint(1, config["vocab_size"] - 1, (sizes.entropy_batch, width),
                        generator=generator).to(device)  # fmt: skip
    attention = torch.ones_like(ids)
    completion = torch.zeros_like(ids, dtype=torch.bool)
    completion[:, prompt:] = True
    results, values = {}, {}
    positions = int(completion.sum())
    for name, chunk in (("chunked", sizes.chunk_size), ("unchunked", positions)):
        token_entropies(model, ids[:1, :16], attention[:1, :16], completion[:1, :16], chunk)
        free()
        base = memory_allocated()
        reset_peak()
        started = time.perf_counter()
        found = token_entropies(model, ids, attention, completion, chunk)
        sync()
        seconds = time.perf_counter() - started
        values[name] = torch.cat(found)
        peak = peak_allocated() - base if device != "cpu" else None
        results[name] = {"seconds": seconds, "peak_mb": peak / 2**20 if peak else None,
                         "tokens_per_s": ids.numel() / seconds}  # fmt: skip
    results["max_abs_diff"] = (values["chunked"] - values["unchunked"]).abs().max().item()
    results["shape"] = {"batch": sizes.entropy_batch, "tokens": sizes.entropy_tokens,
                        "vocab": config["vocab_size"], "chunk_size": sizes.chunk_size}  # fmt: skip
    del model
    free()
    return results


def training_table(algorithm: str, rows: int, config: dict, sizes: Sizes, seed: int):
    """Rows of random text with lengths spread from short to `max_length`, like real sets."""
    import pyarrow as pa

    rng = random.Random(seed)
    vocab, eos = config["vocab_size"], config["eos_token_id"]
    top = sizes.max_length - 2

    def text(low: int, high: int) -> str:
        return random_text(rng, rng.randint(low, high), vocab, eos)

    table = []
    for _ in range(rows):
        prompt = text(max(1, top // 16), top // 4)
        if algorithm == "dpo":
            table.append({"prompt": prompt, "chosen": " " + text(top // 8, top // 2),
                          "rejected": " " + text(top // 8, top // 2)})  # fmt: skip
        else:
            table.append({"prompt": prompt, "completion": " " + text(top // 16, top // 2)})
    return pa.Table.from_pylist(table)


def train(model_dir: Path, config: dict, sizes: Sizes, algorithm: str, packing: bool,
          device: str, tmp: Path) -> dict:  # fmt: skip
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.trainer_utils import SaveStrategy

    from satk8s.training.train import TrainConfig, _to_hf, _trainer, resolve

    steps = sizes.dpo_steps if algorithm == "dpo" else sizes.train_steps
    batch = sizes.dpo_batch if algorithm == "dpo" else sizes.train_batch
    on_gpu = device != "cpu"
    settings = TrainConfig(
        algorithm=algorithm, max_steps=steps, per_device_batch_size=batch, learning_rate=1e-5,
        max_length=sizes.max_length, packing=packing, logging_steps=10**6, save_steps=10**6,
        device="cuda" if on_gpu else "cpu", bf16=on_gpu, gradient_checkpointing=on_gpu,
    )  # fmt: skip
    resolved = resolve(settings)
    # Packed rows hold several examples: give both runs the same number of rows to fill.
    rows = steps * batch * (6 if packing else 1)
    table = training_table(algorithm, rows, config, sizes, seed=1)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation=resolved.attn_implementation
    )
    trainer = _trainer(model, tokenizer, _to_hf(table, settings, tokenizer), tmp / "ckpt",
                       settings, resolved)  # fmt: skip
    trainer.args.save_strategy = SaveStrategy.NO  # no checkpoint, no final save: speed only
    reset_peak()
    output = trainer.train()
    seconds = output.metrics["train_runtime"]
    tokens = int(trainer.state.num_input_tokens_seen)
    result = {"steps": trainer.state.global_step, "seconds": seconds, "tokens": tokens,
              "tokens_per_s": tokens / seconds, "seconds_per_step": seconds / steps,
              "attn_implementation": resolved.attn_implementation,
              "gradient_checkpointing": resolved.gradient_checkpointing,
              "peak_mb": peak_allocated() / 2**20 if on_gpu else None}  # fmt: skip
    del trainer, model
    free()
    return result


# ----------------------------------------------------------------------------- devices


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def free() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def reset_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def memory_allocated() -> int:
    import torch

    return torch.cuda.memory_allocated() if torch.cuda.is_available() else 0


def peak_allocated() -> int:
    import torch

    return torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0


def gpu_type(name: str) -> str | None:
    """The `satk8s.grid.cost.GPUS` key of a CUDA device name, if it is one of them."""
    for key, mark in (("h200-141gb", "H200"), ("h100-80gb", "H100"), ("b200", "B200"),
                      ("a100-80gb", "A100-SXM4-80GB"), ("a100-80gb", "A100 80GB"),
                      ("a100-40gb", "A100"), ("l40s", "L40S"), ("l4", "L4")):  # fmt: skip
        if mark in name:
            return key
    return None


# ----------------------------------------------------------------------------- the run


def main() -> None:
    args = parse_args()
    if args.vllm_worker:
        vllm_worker(args.vllm_worker)
        return
    import torch

    from satk8s.grid.cost import GPUS, ModelShape

    sizes = SMOKE_SIZES if args.smoke else Sizes()
    config = model_config(args.config, args.smoke)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.smoke:
        sys.exit("no CUDA GPU: run with --smoke for the CPU check at tiny shapes")
    if device == "cpu":
        torch.set_num_threads(1)
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()
    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"
    gpu = GPUS.get(gpu_type(name) or "")
    shape = ModelShape.from_config(config)
    report: dict = {
        "device": name, "smoke": args.smoke, "sizes": sizes.__dict__,
        "model": {"config": str(args.config), "matmul_params": shape.matmul_params,
                  "params": shape.params, "vocab": shape.vocab},
        "versions": versions(), "results": {}, "errors": {},
    }  # fmt: skip
    print(f"{name}: Qwen3 {shape.params / 1e9:.2f}B parameters, random weights", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="satk8s-gpu-") as tmp_name:
        tmp = Path(tmp_name)
        model_dir = tmp / "model"
        save_model(config, model_dir, device)
        free()
        rng = random.Random(0)
        prompts = [
            (f"q{i}", random_text(rng, sizes.prompt_tokens, config["vocab_size"],
                                  config["eos_token_id"]))
            for i in range(sizes.prompts)
        ]  # fmt: skip
        parts = {
            "generate_vllm": lambda: vllm_generation(model_dir, prompts, sizes, tmp),
            "generate_hf": lambda: hf_generation(model_dir, prompts, sizes, device),
            "entropy": lambda: entropy(model_dir, config, sizes, device),
            "sft": lambda: train(model_dir, config, sizes, "sft", False, device, tmp),
            "sft_packed": lambda: train(model_dir, config, sizes, "sft", True, device, tmp),
            "dpo": lambda: train(model_dir, config, sizes, "dpo", False, device, tmp),
        }
        if args.no_vllm or not vllm_importable():
            parts.pop("generate_vllm")
            report["results"]["generate_vllm"] = {"skipped": "vllm is not importable here"}
        for part, run in parts.items():
            part_started = time.perf_counter()
            try:
                report["results"][part] = run()
            except Exception:  # noqa: BLE001  one failed part must not lose the others
                report["errors"][part] = traceback.format_exc()[-4000:]
                print(f"{part}: FAILED\n{report['errors'][part]}", flush=True)
            else:
                print(f"{part}: {time.perf_counter() - part_started:.1f} s", flush=True)
    report["seconds"] = time.perf_counter() - started
    add_mfu(report, shape, gpu)
    report["throughput"] = throughput_block(report["results"], shape)
    (args.out / "gpu.json").write_text(json.dumps(report, indent=2))
    (args.out / "gpu.md").write_text(markdown(report))
    print(markdown(report))
    sys.exit(1 if report["errors"] else 0)


def vllm_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("torch", "transformers", "trl", "vllm", "flash-attn"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def add_mfu(report: dict, shape, gpu) -> None:
    """Model FLOPs utilisation of the SFT runs: 6 x matmul parameters per trained token."""
    for part in ("sft", "sft_packed"):
        result = report["results"].get(part)
        if result and gpu is not None:
            flops = 6 * shape.matmul_params * result["tokens_per_s"]
            result["mfu"] = flops / (gpu.bf16_tflops * 1e12)
    report["peak_bf16_tflops"] = gpu.bf16_tflops if gpu else None


def throughput_block(results: dict, shape) -> dict:
    """Measured tokens/s per kind of work, with FLOPs per token of the run that measured it,
    for `satk8s grid show --throughput` (`satk8s.grid.cost.load_throughput`)."""
    n = shape.matmul_params
    generated = results.get("generate_vllm", {}).get("tokens_per_s") or results.get(
        "generate_hf", {}
    ).get("tokens_per_s")
    sft = results.get("sft", {})
    return {
        "decode": {"tokens_per_s": generated, "flops_per_token": 2 * n},
        "forward": {"tokens_per_s": results.get("entropy", {}).get("chunked", {}).get(
            "tokens_per_s"), "flops_per_token": 2 * n},
        "train": {"tokens_per_s": sft.get("tokens_per_s"),
                  "flops_per_token": (8 if sft.get("gradient_checkpointing") else 6) * n},
    }  # fmt: skip


def markdown(report: dict) -> str:
    r = report["results"]

    def get(part: str, *keys: str):
        value = r.get(part, {})
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    def num(value, fmt: str = ",.0f") -> str:
        return "—" if value is None else format(value, fmt)

    def ratio(a, b) -> str:
        return "—" if not a or not b else f"{a / b:.2f}x"

    s = report["sizes"]
    vllm_tps, hf_tps = get("generate_vllm", "tokens_per_s"), get("generate_hf", "tokens_per_s")
    vllm = (
        f"skipped: {get('generate_vllm', 'skipped')}"
        if get("generate_vllm", "skipped")
        else f"{num(vllm_tps)} tokens/s (engine start {num(get('generate_vllm', 'engine_start_s'), '.0f')} s)"
    )
    chunked, whole = get("entropy", "chunked") or {}, get("entropy", "unchunked") or {}
    sft, packed = get("sft", "tokens_per_s"), get("sft_packed", "tokens_per_s")
    lines = [
        f"# satk8s GPU benchmark: {report['device']}",
        "",
        f"{Path(report['model']['config']).name}{' scaled down to tiny shapes' if report['smoke'] else ''}, "
        f"random bf16 weights ({report['model']['params'] / 1e9:.3f}B parameters), synthetic word-level vocabulary of {report['model']['vocab']:,} tokens; torch "
        f"{report['versions']['torch']}, transformers {report['versions']['transformers']}, "
        f"trl {report['versions']['trl']}, vllm {report['versions']['vllm']}; "
        f"{report['seconds']:.0f} s in all{' (SMOKE: tiny shapes, not a measurement)' if report['smoke'] else ''}.",
        "",
        "| measure | value | ratio |",
        "| --- | --- | --- |",
        f"| generation, {s['prompts']} prompts x n={s['n']}, {s['new_tokens']} new tokens: vLLM | "
        f"{vllm} | {ratio(vllm_tps, hf_tps)} of hf |",
        f"| generation: hf (batch {num(get('generate_hf', 'batch_size'))}) | {num(hf_tps)} tokens/s | 1.00x |",
        f"| entropy, {s['entropy_batch']} x {s['entropy_tokens']} tokens: chunked ({s['chunk_size']}) | "
        f"{num(chunked.get('seconds'), '.3f')} s, peak {num(chunked.get('peak_mb'))} MB "
        f"| memory {ratio(chunked.get('peak_mb'), whole.get('peak_mb'))}, time "
        f"{ratio(chunked.get('seconds'), whole.get('seconds'))} of unchunked |",
        f"| entropy: unchunked | {num(whole.get('seconds'), '.3f')} s, peak "
        f"{num(whole.get('peak_mb'))} MB | max abs diff {num(get('entropy', 'max_abs_diff'), '.1e')} |",
        f"| SFT, batch {s['train_batch']}, max_length {s['max_length']}: unpacked | "
        f"{num(sft)} tokens/s, MFU {num(get('sft', 'mfu'), '.1%')} | 1.00x |",
        f"| SFT: packed ({get('sft_packed', 'attn_implementation') or '—'}) | {num(packed)} tokens/s, "
        f"MFU {num(get('sft_packed', 'mfu'), '.1%')} | {ratio(packed, sft)} of unpacked |",
        f"| DPO, {s['dpo_batch']} pairs per step | {num(get('dpo', 'seconds_per_step'), '.2f')} s per step "
        "(the reference pass over the set included) | — |",
    ]  # fmt: skip
    for part, error in report["errors"].items():
        lines.append(f"\n**{part} failed**: `{error.strip().splitlines()[-1]}`")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
