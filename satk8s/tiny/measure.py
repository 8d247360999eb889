"""What a tiny build is measured by (`tiny_build.json`), and the targets the recipe must reach.

Per level: greedy accuracy, the share of questions with every sample right (saturation), the
sample accuracy, which style the model writes (greedy and sampled), and the accuracy of each
sampled style. The judge: on pairs of the model's own distinct samples of easy questions,
judged in both orders through the self-judge's own code (`HFPairJudge`, default template), the
probability mass on the two labels, the share of verdicts won by the solution shown first, and
the agreement with the world's preference (`world.preference`) where it prefers one.

Samples are drawn at temperature 1.0 with top_k=0 (true sampling), zero-shot, stopping at eos.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from satk8s.tasks import arith
from satk8s.tasks.arith import LEVELS, ArithLevel
from satk8s.tasks.base import format_prompt
from satk8s.tiny import world

# Room for the longest solution style (filler words or column addition) and some slack.
MAX_NEW_TOKENS = 48

TARGETS: tuple[tuple[str, str, str, float], ...] = (
    # (section, key, "min" or "max", bound): what makes the tiny model a positive control.
    ("easy", "greedy_accuracy", "min", 0.95),
    ("easy", "all_samples_correct", "min", 0.6),
    ("easy", "sampled_shown_share", "min", 0.15),
    ("add2", "greedy_accuracy", "max", 0.75),
    ("add2", "greedy_bare_share", "min", 0.8),
    ("add2", "shown_accuracy", "min", 0.7),
    ("add2", "shown_carry_accuracy", "min", 0.6),
    ("add2", "bare_carry_accuracy", "max", 0.1),
    ("judge", "label_mass", "min", 0.8),
    ("judge", "position_bias", "min", 0.4),
    ("judge", "position_bias", "max", 0.6),
    ("judge", "agreement", "min", 0.8),
)
"""Bounds a build of the default recipe must meet: saturated on one-digit questions with the
shown work among the correct samples; on two-digit additions the bare style is the greedy
choice and gets the sums with a carry wrong, while the shown work gets them right; a judge
that answers in format, without a position preference, and mostly agrees with the world's
preference."""


def missed_targets(summary: dict[str, Any]) -> list[str]:
    """The TARGETS a build summary (`tiny_build.json`) misses, as readable lines; [] if none."""
    missed = []
    measured = summary.get("measured", {})
    for section, key, kind, bound in TARGETS:
        value = measured.get(section, {}).get(key)
        if value is None or (value < bound if kind == "min" else value > bound):
            sign = ">=" if kind == "min" else "<="
            missed.append(f"{section}.{key} = {value} (target {sign} {bound})")
    return missed


def measure_level(
    model_dir: str | Path, level: ArithLevel | str, count: int, samples: int = 8, seed: int = 0
) -> dict[str, Any]:
    """Accuracy and styles of the model on `count` seeded questions of `level`."""
    level = LEVELS[level] if isinstance(level, str) else level
    questions = arith.generate_questions(
        level, count, seed=arith.derive_seed(seed, "measure"), prefix="measure"
    )
    greedy, sampled = _complete(Path(model_dir), [q.question for q in questions], samples, seed)
    greedy_ok = [world.is_correct(t, q.answer) for t, q in zip(greedy, questions, strict=True)]
    sample_ok = [
        [world.is_correct(t, q.answer) for t in group]
        for group, q in zip(sampled, questions, strict=True)
    ]
    flat = [
        (t, ok, world.has_carry(q.question))
        for group, oks, q in zip(sampled, sample_ok, questions, strict=True)
        for t, ok in zip(group, oks, strict=True)
    ]
    by_style: dict[str, list[bool]] = {}
    carry_by_style: dict[str, list[bool]] = {}
    for text, ok, carry in flat:
        by_style.setdefault(world.style_of(text), []).append(ok)
        if carry:
            carry_by_style.setdefault(world.style_of(text), []).append(ok)
    greedy_styles = Counter(world.style_of(t) for t in greedy)
    sample_styles = Counter(world.style_of(t) for t, _, _ in flat)
    result: dict[str, Any] = {
        "level": asdict(level),
        "count": count,
        "samples": samples,
        "greedy_accuracy": sum(greedy_ok) / count,
        "all_samples_correct": sum(all(ok) for ok in sample_ok) / count,
        "sample_accuracy": sum(ok for _, ok, _ in flat) / len(flat),
        "greedy_styles": {s: greedy_styles[s] / count for s in sorted(greedy_styles)},
        "sampled_styles": {s: sample_styles[s] / len(flat) for s in sorted(sample_styles)},
        "accuracy_by_style": {s: sum(v) / len(v) for s, v in sorted(by_style.items())},
        # Questions whose bare answer drops a carry (none at one digit).
        "carry_questions": sum(world.has_carry(q.question) for q in questions) / count,
        "carry_accuracy_by_style": {s: sum(v) / len(v) for s, v in sorted(carry_by_style.items())},
    }
    # Flat keys for the targets.
    result["greedy_bare_share"] = result["greedy_styles"].get("bare", 0.0)
    result["sampled_shown_share"] = result["sampled_styles"].get("shown", 0.0)
    result["shown_accuracy"] = result["accuracy_by_style"].get("shown")
    result["shown_carry_accuracy"] = result["carry_accuracy_by_style"].get("shown")
    result["bare_carry_accuracy"] = result["carry_accuracy_by_style"].get("bare")
    return result


def measure_judge(model_dir: str | Path, count: int, samples: int = 8, seed: int = 0) -> dict:
    """The self-judge on pairs of the model's own distinct samples of `count` easy questions."""
    from satk8s.signals.hf_judge import HFPairJudge
    from satk8s.signals.pairwise import PairRequest

    questions = arith.generate_questions(
        LEVELS["easy"], count, seed=arith.derive_seed(seed, "measure-judge"), prefix="judge"
    )
    _, sampled = _complete(Path(model_dir), [q.question for q in questions], samples, seed)
    requests, preferred = [], []
    for q, group in zip(questions, sampled, strict=True):
        texts = list(dict.fromkeys(group))  # distinct texts: an identical pair is a tie
        judged = [
            world.Judged(t.strip(), world.style_of(t), world.is_correct(t, q.answer)) for t in texts
        ]
        for a in range(len(texts)):
            for b in range(a + 1, len(texts)):
                for x, y in ((a, b), (b, a)):
                    requests.append(PairRequest(q.id, q.question, x, y, texts[x], texts[y]))
                    preferred.append(world.preference(judged[x], judged[y]))
    if not requests:
        return {"pairs": 0}
    verdicts = HFPairJudge(str(model_dir), batch_size=16).judge(requests)
    p_first = [v.p_first for v in verdicts]
    decided = [(p, w) for p, w in zip(p_first, preferred, strict=True) if w != 0.5]
    return {
        "questions": count,
        "pairs": len(requests) // 2,
        "label_mass": sum(v.label_mass for v in verdicts) / len(verdicts),
        "position_bias": sum(1.0 if p > 0.5 else 0.5 if p == 0.5 else 0.0 for p in p_first)
        / len(p_first),
        "agreement": sum((p > 0.5) == (w > 0.5) for p, w in decided) / max(1, len(decided)),
        "decided_verdicts": len(decided),
    }


@torch.no_grad()
def _complete(
    model_dir: Path, questions: list[str], samples: int, seed: int
) -> tuple[list[str], list[list[str]]]:
    """Greedy completions, and `samples` sampled completions per question."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    inputs = tokenizer([format_prompt(q) for q in questions], return_tensors="pt", padding=True)
    common = {
        "max_new_tokens": MAX_NEW_TOKENS,
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
    # num_return_sequences repeats each prompt `samples` times in a row.
    groups = [sampled_text[i * samples : (i + 1) * samples] for i in range(len(questions))]
    return greedy_text, groups
