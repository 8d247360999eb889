"""Build the tiny embedded base model: a small Qwen3 trained from scratch on worked arithmetic.

No machine here can download weights, so satk8s makes its own base model. The recipe, in one
readable loop (nanoGPT style):

1. draw a batch of random `arith` expressions (easy only at first, then the level mix);
2. each example is `format_prompt(question) + " " + solution + eos`, loss on the completion only;
3. AdamW, linear warm-up then linear decay to zero;
4. save with `save_pretrained` (model + tokenizer) so `AutoModelForCausalLM.from_pretrained`
   loads it like any hub checkpoint, then measure saturation and write `tiny_build.json` last.

The result is saturated on easy questions (every sample at temperature 1.0 correct) and clearly
not on harder ones, so every step of the method has real work to do.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import math
import os
import random
import re
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from satk8s.tasks import arith, base
from satk8s.tasks.arith import LEVELS, ArithLevel
from satk8s.tasks.base import format_prompt
from satk8s.tiny import config as config_module
from satk8s.tiny import model as model_module
from satk8s.tiny import tokenizer as tokenizer_module
from satk8s.tiny.config import TinyBuildConfig
from satk8s.tiny.model import new_model
from satk8s.tiny.tokenizer import build_tokenizer

SUMMARY_FILE = "tiny_build.json"
# Everything that shapes the weights: a change to any of these files invalidates cached builds.
SOURCE_FILES = [Path(__file__)] + [
    Path(m.__file__) for m in (config_module, model_module, tokenizer_module, arith, base)
]

_FINAL_ANSWER = re.compile(r"####\s*(-?\d+)")


# ----------------------------------------------------------------------------- data


def training_text(question: str, solution: str) -> tuple[str, str]:
    """(prompt, completion) of one training example; eos is appended after tokenizing."""
    return format_prompt(question), " " + solution


def sample_batch(
    rng: random.Random,
    tokenizer: PreTrainedTokenizerBase,
    size: int,
    mix: dict[str, float],
    check_fraction: float = 0.0,
) -> dict[str, torch.Tensor]:
    """A right-padded batch of random questions with labels on the completion only."""
    names = rng.choices(list(mix), weights=list(mix.values()), k=size)
    expressions = [arith.random_expression(LEVELS[name], rng) for name in names]
    styles = [rng.random() < check_fraction for _ in expressions]
    texts = [
        training_text(e, arith.checked_solution_for(e) if checked else arith.solution_for(e))
        for e, checked in zip(expressions, styles, strict=True)
    ]
    # One batched tokenizer call per side: per-example calls cost more than the model step.
    prompts = tokenizer([p for p, _ in texts])["input_ids"]
    completions = tokenizer([c for _, c in texts])["input_ids"]
    rows, labels = [], []
    for prompt_ids, completion_ids in zip(prompts, completions, strict=True):
        completion_ids = completion_ids + [tokenizer.eos_token_id]
        rows.append(prompt_ids + completion_ids)
        labels.append([-100] * len(prompt_ids) + completion_ids)
    width = max(len(r) for r in rows)
    # Right padding and no attention mask: under causal attention a real token never sees the
    # pads after it, so the mask is redundant and SDPA can take its fast causal path.
    input_ids = [r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows]
    labels = [lab + [-100] * (width - len(lab)) for lab in labels]
    return {"input_ids": torch.tensor(input_ids), "labels": torch.tensor(labels)}


def lr_at(step: int, config: TinyBuildConfig) -> float:
    """Linear warm-up to `lr`, then linear decay to 0 at the last step."""
    warmup = min(config.warmup, config.steps)  # a short smoke build keeps the default warm-up
    if step < warmup:
        return config.lr * (step + 1) / warmup
    return config.lr * (config.steps - step) / max(1, config.steps - warmup)


# ----------------------------------------------------------------------------- training


@contextlib.contextmanager
def _torch_settings(threads: int) -> Iterator[None]:
    """Fixed thread count and deterministic kernels for the build; the caller's settings after."""
    old_threads = torch.get_num_threads()
    old_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_deterministic)


def train(
    config: TinyBuildConfig, progress: bool = True
) -> tuple[torch.nn.Module, PreTrainedTokenizerBase, float]:
    """Train a fresh tiny model; returns (model, tokenizer, final smoothed loss)."""
    tokenizer = build_tokenizer()
    model = new_model(tokenizer, config.arch, seed=config.seed)
    model.train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, betas=(0.9, 0.99), weight_decay=0.0
    )
    rng = random.Random(config.seed)
    easy_steps = round(config.easy_warmup_fraction * config.steps)
    log_every = max(1, config.steps // 10)
    smoothed = math.nan
    start = time.perf_counter()
    for step in range(config.steps):
        mix = {"easy": 1.0} if step < easy_steps else config.mix
        batch = sample_batch(rng, tokenizer, config.batch_size, mix, config.check_fraction)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config)
        loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        smoothed = loss.item() if math.isnan(smoothed) else 0.95 * smoothed + 0.05 * loss.item()
        if progress and (step % log_every == 0 or step == config.steps - 1):
            elapsed = time.perf_counter() - start
            print(
                f"tiny build: step {step + 1}/{config.steps} loss {smoothed:.4f} ({elapsed:.0f}s)",
                file=sys.stderr,
                flush=True,
            )
    model.eval()
    return model, tokenizer, smoothed


def _save(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, out_dir: Path) -> None:
    # generate() stops at eos and pads with pad: set both so callers need no extra arguments.
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def is_finished(model_dir: str | Path) -> bool:
    """A build is finished once its summary exists; the summary is written last."""
    return (Path(model_dir) / SUMMARY_FILE).is_file()


def build_tiny_model(
    out_dir: str | Path, config: TinyBuildConfig = TinyBuildConfig(), progress: bool = True
) -> dict:
    """Train the tiny model, save it as a Hugging Face checkpoint in `out_dir`, return a summary.

    The build happens in a hidden sibling directory that is renamed to `out_dir` only when
    complete, so `out_dir` never holds a half-built model. `out_dir` must not exist (or be empty).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(
            f"{out_dir} exists and is not empty; remove it or pick another out_dir"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    partial = out_dir.parent / f".{out_dir.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        with _torch_settings(config.threads):
            # Wall time depends on what else runs: keep the load beside it to judge the figure.
            load_before = os.getloadavg()[0]
            start = time.perf_counter()
            model, tokenizer, final_loss = train(config, progress)
            _save(model, tokenizer, partial)
            build_seconds = time.perf_counter() - start
            summary = {
                "config": asdict(config),
                "parameters": sum(p.numel() for p in model.parameters()),
                "final_loss": round(final_loss, 5),
                "build_seconds": round(build_seconds, 1),
                "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                "threads": config.threads,
                "torch": torch.__version__,
                "transformers": transformers.__version__,
            }
            if config.measure_count:
                start = time.perf_counter()
                summary["saturation"] = {
                    name: measure_saturation(
                        partial, level, config.measure_count, seed=0, threads=config.threads
                    )
                    for name, level in LEVELS.items()
                }
                summary["measure_seconds"] = round(time.perf_counter() - start, 1)
        _write_summary(partial, summary)
        os.replace(partial, out_dir)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return {**summary, "out_dir": str(out_dir)}


def _write_summary(model_dir: Path, summary: dict) -> None:
    (model_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")


def config_hash(config: TinyBuildConfig) -> str:
    """Content hash of the config, the builder's source files and the torch/transformers versions."""
    digest = hashlib.sha256()
    digest.update(json.dumps(asdict(config), sort_keys=True).encode())
    for path in SOURCE_FILES:
        digest.update(code_fingerprint(path.read_text()).encode())
    digest.update(f"{torch.__version__} {transformers.__version__}".encode())
    return digest.hexdigest()[:16]


def code_fingerprint(source: str) -> str:
    """The source's syntax tree without docstrings: comments, docstrings and formatting do not
    shape the weights, so editing them keeps the cached build (a rebuild costs minutes)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False)


def build_or_reuse(cache_root: str | Path, config: TinyBuildConfig = TinyBuildConfig()) -> Path:
    """`cache_root/<hash>`: a finished build of `config`, built now only if not already there."""
    target = Path(cache_root) / config_hash(config)
    if is_finished(target):
        return target
    if target.exists():
        shutil.rmtree(target)  # not finished: left over by hand, never by build_tiny_model
    try:
        build_tiny_model(target, config, progress=True)
    except OSError:
        # Another process finished the same build first: theirs is as good as ours.
        if not is_finished(target):
            raise
    return target


# ----------------------------------------------------------------------------- measuring


def is_correct(completion: str, answer: str) -> bool:
    """Exact match of the first `#### N` integer with the gold answer."""
    match = _FINAL_ANSWER.search(completion)
    return match is not None and int(match.group(1)) == int(answer)


def measure_saturation(
    model_dir: str | Path,
    level: ArithLevel | str,
    count: int,
    samples: int = 8,
    seed: int = 0,
    threads: int = 1,
) -> dict:
    """Greedy accuracy and the share of questions with all `samples` samples correct.

    Samples are drawn at temperature 1.0 with top_k=0 (true sampling) through `model.generate`,
    zero-shot, stopping at eos, on `count` seeded questions of `level`. Runs on `threads` torch
    threads (see `TinyBuildConfig.threads` for why one is the default).
    """
    with _torch_settings(threads):
        return _measure(Path(model_dir), level, count, samples, seed)


@torch.no_grad()
def _measure(model_dir: Path, level: ArithLevel | str, count: int, samples: int, seed: int) -> dict:
    level = LEVELS[level] if isinstance(level, str) else level
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    questions = arith.generate_questions(
        level, count, seed=arith.derive_seed(seed, "measure"), prefix="measure"
    )
    inputs = tokenizer(
        [format_prompt(q.question) for q in questions], return_tensors="pt", padding=True
    )
    # Room for the longest reference completion, a check line and some slack.
    max_new = max(len(q.solution) for q in questions) + 16
    common = {
        "max_new_tokens": max_new,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    greedy = model.generate(**inputs, do_sample=False, **common)
    torch.manual_seed(seed)
    sampled = model.generate(
        **inputs,
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        num_return_sequences=samples,
        **common,
    )
    width = inputs["input_ids"].shape[1]
    greedy_text = tokenizer.batch_decode(greedy[:, width:], skip_special_tokens=True)
    sampled_text = tokenizer.batch_decode(sampled[:, width:], skip_special_tokens=True)
    greedy_ok = [is_correct(t, q.answer) for t, q in zip(greedy_text, questions, strict=True)]
    # num_return_sequences repeats each prompt `samples` times in a row.
    sample_ok = [
        [is_correct(t, q.answer) for t in sampled_text[i * samples : (i + 1) * samples]]
        for i, q in enumerate(questions)
    ]
    return {
        "level": asdict(level),
        "count": count,
        "samples": samples,
        "greedy_accuracy": sum(greedy_ok) / count,
        "all_samples_correct": sum(all(ok) for ok in sample_ok) / count,
        "sample_accuracy": sum(sum(ok) for ok in sample_ok) / (count * samples),
    }
