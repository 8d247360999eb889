"""Build the tiny embedded base model: a small Qwen3 trained from scratch on worked arithmetic.

No machine here can download weights, so satk8s makes its own base model. The recipe, in one
readable loop (nanoGPT style):

1. draw a batch of random `arith` expressions (easy only at first, then the level mix), each
   solution in a style drawn from its level's shares (`world`: shown work, bare answer, filler);
2. each example is `format_prompt(question) + " " + solution + eos`, loss on the completion only;
3. after the easy-only phase, every `judge_every` steps a batch of judge prompts (the
   self-judge's template on two solutions) adds a loss on the verdict label (`judge_loss`);
4. AdamW, linear warm-up then linear decay to zero;
5. save with `save_pretrained` (model + tokenizer) so `AutoModelForCausalLM.from_pretrained`
   loads it like any hub checkpoint, then measure it (`measure`) and write `tiny_build.json` last.

The default recipe's build ships with satk8s (`SHIPPED`, built once on the CI machine): float
results of a training run differ between CPUs (instruction sets change the order of
floating-point sums, and 1,800 steps amplify the last bits), so a model built here is not the
same model elsewhere; the shipped weights are. `build_or_reuse` returns the shipped checkpoint
for the default recipe and builds (and caches) any other.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import math
import os
import random
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import torch
import transformers
from transformers import PreTrainedTokenizerBase

from satk8s.signals.pairwise import JudgeTemplate, check_single_token_labels
from satk8s.tasks import arith, base
from satk8s.tasks.arith import LEVELS
from satk8s.tasks.base import format_prompt
from satk8s.tiny import config as config_module
from satk8s.tiny import measure, world
from satk8s.tiny import model as model_module
from satk8s.tiny import tokenizer as tokenizer_module
from satk8s.tiny.config import TinyBuildConfig
from satk8s.tiny.model import new_model
from satk8s.tiny.tokenizer import build_tokenizer

SUMMARY_FILE = "tiny_build.json"
# Everything that shapes the weights: a change to any of these files invalidates cached builds.
SOURCE_FILES = [Path(__file__)] + [
    Path(m.__file__) for m in (config_module, model_module, tokenizer_module, world, arith, base)
]

SHIPPED = Path(__file__).parent / "checkpoint"
"""The default recipe's checkpoint, shipped as package data (about 0.6 MB)."""


# ----------------------------------------------------------------------------- data


def training_text(question: str, solution: str) -> tuple[str, str]:
    """(prompt, completion) of one training example; eos is appended after tokenizing."""
    return format_prompt(question), " " + solution


def _level_styles(config_styles: dict[str, dict[str, float]], level: str) -> dict[str, float]:
    return config_styles.get(level) or {"shown": 1.0}


def sample_batch(
    rng: random.Random,
    tokenizer: PreTrainedTokenizerBase,
    size: int,
    mix: dict[str, float],
    styles: dict[str, dict[str, float]] | None = None,
) -> dict[str, torch.Tensor]:
    """A right-padded batch of random questions with labels on the completion only; each
    solution is written in a style drawn from its level's shares (`world.solution`)."""
    styles = styles or {}
    names = rng.choices(list(mix), weights=list(mix.values()), k=size)
    texts = []
    for name in names:
        expression = arith.random_expression(LEVELS[name], rng)
        style = world.draw_style(_level_styles(styles, name), rng)
        texts.append(training_text(expression, world.solution(expression, style, rng)))
    # One batched tokenizer call per side: per-example calls cost more than the model step.
    prompts = tokenizer([p for p, _ in texts])["input_ids"]
    completions = tokenizer([c for _, c in texts])["input_ids"]
    rows, labels = [], []
    for prompt_ids, completion_ids in zip(prompts, completions, strict=True):
        completion_ids = completion_ids + [tokenizer.eos_token_id]
        rows.append(prompt_ids + completion_ids)
        labels.append([-100] * len(prompt_ids) + completion_ids)
    return {"input_ids": _right_pad(rows, tokenizer.pad_token_id), "labels": _right_pad(labels)}


def _right_pad(rows: list[list[int]], pad: int = -100) -> torch.Tensor:
    # Right padding and no attention mask: under causal attention a real token never sees the
    # pads after it, so the mask is redundant and SDPA can take its fast causal path.
    width = max(len(r) for r in rows)
    return torch.tensor([r + [pad] * (width - len(r)) for r in rows])


def judge_batch(
    rng: random.Random,
    tokenizer: PreTrainedTokenizerBase,
    size: int,
    mix: dict[str, float],
    styles: dict[str, dict[str, float]],
    template: JudgeTemplate,
) -> dict[str, torch.Tensor]:
    """Judge prompts (the self-judge's own template) on pairs of solutions drawn from the build's
    levels and styles, with the target P(first is better) from `world.preference`.

    Returns input_ids (right-padded), `last` (each row's last prompt position, where the label
    is predicted), `target` (P(first)) and `labels` (the two label token ids)."""
    tokens = check_single_token_labels(tokenizer, template.template, template.labels)
    prompts, targets = [], []
    names = rng.choices(list(mix), weights=list(mix.values()), k=size)
    for name in names:
        expression = arith.random_expression(LEVELS[name], rng)
        shares = _level_styles(styles, name)
        first, second = (world.candidate(expression, shares, rng) for _ in range(2))
        rendered = template.template.format(
            question=expression, first=" " + first.text, second=" " + second.text
        )
        prompts.append(tokens.prompt(rendered))
        targets.append(world.preference(first, second))
    ids = tokenizer(prompts)["input_ids"]
    return {
        "input_ids": _right_pad(ids, tokenizer.pad_token_id),
        "last": torch.tensor([len(row) - 1 for row in ids]),
        "target": torch.tensor(targets),
        "labels": torch.tensor(tokens.ids),
    }


def judge_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy of the next token at the end of each judge prompt against the soft target
    (P(first) on the first label, the rest on the second): it puts the probability mass on the
    two labels and their ratio at the target."""
    logits = model(input_ids=batch["input_ids"]).logits
    rows = torch.arange(logits.shape[0])
    logprobs = torch.log_softmax(logits[rows, batch["last"]].float(), dim=-1)
    first, second = logprobs[:, batch["labels"][0]], logprobs[:, batch["labels"][1]]
    target = batch["target"]
    return -(target * first + (1 - target) * second).mean()


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
    template = JudgeTemplate()
    easy_steps = round(config.easy_warmup_fraction * config.steps)
    log_every = max(1, config.steps // 10)
    smoothed = math.nan
    start = time.perf_counter()
    for step in range(config.steps):
        mix = {"easy": 1.0} if step < easy_steps else config.mix
        batch = sample_batch(rng, tokenizer, config.batch_size, mix, config.styles)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config)
        loss = model(**batch).loss
        if config.judge_every and step >= easy_steps and step % config.judge_every == 0:
            judged = judge_batch(
                rng, tokenizer, config.judge_batch_size, config.mix, config.styles, template
            )
            loss = loss + judge_loss(model, judged)
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
                "config": recipe(config),
                "recipe_fingerprint": recipe_fingerprint(config),
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
                summary["measured"] = measure_build(partial, config)
                summary["measure_seconds"] = round(time.perf_counter() - start, 1)
                summary["missed_targets"] = measure.missed_targets(summary)
        _write_summary(partial, summary)
        os.replace(partial, out_dir)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return {**summary, "out_dir": str(out_dir)}


def measure_build(model_dir: Path, config: TinyBuildConfig) -> dict:
    """Every level of the mix (`measure.measure_level`) and the judge (`measure.measure_judge`),
    on `config.measure_count` questions each, seed 0."""
    with _torch_settings(config.threads):
        measured = {
            name: measure.measure_level(model_dir, name, config.measure_count)
            for name in config.mix
        }
        measured["judge"] = measure.measure_judge(model_dir, config.measure_count)
    return measured


def _write_summary(model_dir: Path, summary: dict) -> None:
    (model_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")


def recipe(config: TinyBuildConfig) -> dict:
    """The config fields that shape the weights (everything but `shipped`), as plain data."""
    fields = asdict(config)
    fields.pop("shipped")
    return fields


def recipe_fingerprint(config: TinyBuildConfig) -> str:
    """Hash of the recipe, the judge template it trains and the builder's source files: equal
    fingerprints mean the same training run (up to the floating-point behaviour of the CPU)."""
    digest = hashlib.sha256()
    digest.update(json.dumps(recipe(config), sort_keys=True).encode())
    template = JudgeTemplate()
    digest.update(json.dumps([template.template, list(template.labels)]).encode())
    for path in SOURCE_FILES:
        digest.update(code_fingerprint(path.read_text()).encode())
    return digest.hexdigest()[:16]


def config_hash(config: TinyBuildConfig) -> str:
    """The build cache key: the recipe fingerprint and the torch/transformers versions."""
    digest = hashlib.sha256(recipe_fingerprint(config).encode())
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


def shipped_for(config: TinyBuildConfig) -> Path | None:
    """The shipped checkpoint if `config` asks for it (`shipped`) and is its recipe, else None."""
    if not config.shipped or not is_finished(SHIPPED):
        return None
    recorded = json.loads((SHIPPED / SUMMARY_FILE).read_text())
    return SHIPPED if recorded["config"] == recipe(config) else None


def build_or_reuse(cache_root: str | Path, config: TinyBuildConfig = TinyBuildConfig()) -> Path:
    """The shipped checkpoint for its recipe (`shipped_for`); otherwise `cache_root/<hash>`, a
    finished build of `config`, built now only if not already there."""
    shipped = shipped_for(config)
    if shipped is not None:
        return shipped
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
