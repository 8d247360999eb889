"""The `arith` task: seeded synthetic integer expressions with step-by-step worked solutions.

A question is an expression without spaces ("12+7*3"); its answer is the exact integer under the
usual precedence (* before + and -, then left to right). The worked solution has one line per
intermediate computation, products first (left to right), then sums and differences left to
right, and ends in "#### N":

    12+7*3  ->  7*3=21
                12+21=33
                #### 33

Difficulty comes from the number of operands, their digit count and the operators allowed
(`ArithLevel`). `make_splits` builds the sampling pool and the two evaluation sets, disjoint by
expression.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from satk8s.errors import ConfigError
from satk8s.tasks.base import Question

OPERATORS = "+-*"
# Enumerate every expression of a level up to this size (exact, handles `exclude` exactly);
# beyond it, draw at random and reject repeats.
_ENUMERATE_LIMIT = 200_000

_TOKEN = re.compile(r"\d+|[+\-*]")
_STEP = re.compile(r"^\s*(-?\d+)\s*([+\-*])\s*(-?\d+)\s*=\s*(-?\d+)\s*$")


@dataclass(frozen=True)
class ArithLevel:
    """A difficulty level: how many operands, how many digits each, which operators."""

    operands: int
    """Number of operands in an expression (at least 2)."""
    digits: int
    """Digit count of each operand: operands are uniform in [0, 10**digits - 1]."""
    operators: str
    """Operators that may appear between operands: a non-empty subset of "+-*"."""

    def __post_init__(self) -> None:
        if self.operands < 2:
            raise ConfigError("operands", f"must be at least 2, got {self.operands}")
        if self.digits < 1:
            raise ConfigError("digits", f"must be at least 1, got {self.digits}")
        if not self.operators or set(self.operators) - set(OPERATORS):
            raise ConfigError(
                "operators", f"must be a non-empty subset of {OPERATORS!r}, got {self.operators!r}"
            )

    @property
    def size(self) -> int:
        """How many distinct expressions this level has."""
        ops = len(set(self.operators))
        return (10**self.digits) ** self.operands * ops ** (self.operands - 1)


# easy, medium and hard are the paper-sized task's levels; add2 (two-digit additions) is where
# the tiny model's world plants its quality dimension (satk8s/tiny/world.py).
LEVELS: dict[str, ArithLevel] = {
    "easy": ArithLevel(operands=2, digits=1, operators="+-"),
    "medium": ArithLevel(operands=2, digits=2, operators="+-"),
    "hard": ArithLevel(operands=3, digits=1, operators="+-*"),
    "add2": ArithLevel(operands=2, digits=2, operators="+"),
}


def _default_train() -> dict[str, int]:
    return {"easy": 100, "medium": 100}


def _default_eval_id() -> dict[str, int]:
    return {"easy": 50, "medium": 50}


def _default_eval_hard() -> dict[str, int]:
    return {"hard": 100}


@dataclass(frozen=True)
class ArithTaskConfig:
    """Which questions `make_splits` builds. Level names refer to `LEVELS`."""

    train: dict[str, int] = field(default_factory=_default_train)
    """The sampling pool (saturated questions are found here): level name -> question count."""
    eval_id: dict[str, int] = field(default_factory=_default_eval_id)
    """In-distribution evaluation set: level name -> count. The same mix as `train` by default."""
    eval_hard: dict[str, int] = field(default_factory=_default_eval_hard)
    """Harder evaluation set (out of the pool's distribution): level name -> count."""
    seed: int = 0
    """Seed of every draw; each (split, level) pair gets its own stream derived from it."""

    def __post_init__(self) -> None:
        for name in ("train", "eval_id", "eval_hard"):
            for level, count in getattr(self, name).items():
                if level not in LEVELS:
                    raise ConfigError(
                        name, f"unknown level {level!r}; known levels: {', '.join(LEVELS)}"
                    )
                if count < 0:
                    raise ConfigError(name, f"count for level {level!r} must be >= 0, got {count}")


def tokenize(expression: str) -> tuple[list[int], list[str]]:
    """Split "12+7*3" into operands [12, 7, 3] and operators ["+", "*"]."""
    tokens = _TOKEN.findall(expression)
    well_formed = (
        "".join(tokens) == expression
        and len(tokens) % 2 == 1
        and all(t.isdigit() == (i % 2 == 0) for i, t in enumerate(tokens))
    )
    if not well_formed:
        raise ValueError(
            f"not an arith expression: {expression!r} (expected e.g. '12+7*3': non-negative "
            "integers joined by + - *, no spaces)"
        )
    return [int(t) for t in tokens[::2]], tokens[1::2]


def _apply(a: int, op: str, b: int) -> int:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    return a * b


def steps_for(expression: str) -> list[tuple[int, str, int, int]]:
    """The intermediate computations (a, op, b, a op b): products left to right, then +/-."""
    values, ops = tokenize(expression)
    steps = []
    # Products first: fold each `*` into its left neighbour, left to right.
    while "*" in ops:
        i = ops.index("*")
        a, b = values[i], values[i + 1]
        steps.append((a, "*", b, a * b))
        values[i : i + 2] = [a * b]
        del ops[i]
    # Then sums and differences, left to right.
    acc = values[0]
    for op, b in zip(ops, values[1:], strict=True):
        steps.append((acc, op, b, _apply(acc, op, b)))
        acc = _apply(acc, op, b)
    return steps


def evaluate(expression: str) -> int:
    """The exact value of `expression` under the usual precedence."""
    steps = steps_for(expression)
    return steps[-1][3]


def solution_for(expression: str) -> str:
    """The reference worked solution: one `a<op>b=c` line per step, then `#### N`."""
    steps = steps_for(expression)
    lines = [f"{a}{op}{b}={c}" for a, op, b, c in steps]
    lines.append(f"#### {steps[-1][3]}")
    return "\n".join(lines)


def parse_steps(text: str) -> list[tuple[int, str, int, int]]:
    """Read every `a<op>b=c` line of a solution as (a, op, b, claimed c); other lines are skipped.

    Negative numbers are allowed anywhere ("-5+4=-1"). The claimed result is returned as
    written, so a judge can check it against `a op b`.
    """
    steps = []
    for line in text.splitlines():
        match = _STEP.match(line)
        if match:
            a, op, b, c = match.groups()
            steps.append((int(a), op, int(b), int(c)))
    return steps


def make_question(expression: str, id: str) -> Question:
    """The `Question` record of one expression."""
    return Question(
        id=id,
        question=expression,
        answer=str(evaluate(expression)),
        solution=solution_for(expression),
    )


def random_expression(level: ArithLevel, rng: random.Random) -> str:
    """One expression of `level`, drawn uniformly (repeats possible)."""
    top = 10**level.digits - 1
    parts = [str(rng.randint(0, top))]
    for _ in range(level.operands - 1):
        parts += [rng.choice(level.operators), str(rng.randint(0, top))]
    return "".join(parts)


def _all_expressions(level: ArithLevel) -> Iterator[str]:
    numbers = [str(n) for n in range(10**level.digits)]
    ops = sorted(set(level.operators))
    for operands in itertools.product(numbers, repeat=level.operands):
        for chosen in itertools.product(ops, repeat=level.operands - 1):
            parts = [operands[0]]
            for op, n in zip(chosen, operands[1:], strict=True):
                parts += [op, n]
            yield "".join(parts)


def _too_few(level: ArithLevel, count: int, available: int) -> ConfigError:
    return ConfigError(
        "count",
        f"level {level} has only {available} distinct expressions left "
        f"({level.size} in all, minus those excluded); asked for {count}. "
        "Lower the count or use more digits or operands.",
    )


def generate_questions(
    level: ArithLevel,
    count: int,
    seed: int,
    exclude: set[str] | frozenset[str] = frozenset(),
    prefix: str = "arith",
) -> list[Question]:
    """`count` distinct questions of `level`, none in `exclude`, deterministic under `seed`.

    Ids are f"{prefix}-{i:05d}" in draw order.
    """
    rng = random.Random(seed)
    if level.size <= _ENUMERATE_LIMIT:
        # Small level: enumerate and sample without replacement (exact, never loops).
        pool = [e for e in _all_expressions(level) if e not in exclude]
        if count > len(pool):
            raise _too_few(level, count, len(pool))
        chosen = rng.sample(pool, count)
    else:
        if count > level.size - len(exclude):
            raise _too_few(level, count, level.size - len(exclude))
        seen: set[str] = set()
        chosen = []
        while len(chosen) < count:
            expression = random_expression(level, rng)
            if expression not in seen and expression not in exclude:
                seen.add(expression)
                chosen.append(expression)
    return [make_question(e, f"{prefix}-{i:05d}") for i, e in enumerate(chosen)]


def derive_seed(seed: int, *names: str) -> int:
    """An independent seed stream for (seed, names...), stable across Python runs."""
    digest = hashlib.sha256(":".join([str(seed), *names]).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def make_splits(config: ArithTaskConfig = ArithTaskConfig()) -> dict[str, list[Question]]:
    """The "train" pool and the "eval_id" and "eval_hard" sets, disjoint by expression.

    Ids are f"{split}-{level}-{i:05d}", e.g. "train-easy-00003".
    """
    splits: dict[str, Mapping[str, int]] = {
        "train": config.train,
        "eval_id": config.eval_id,
        "eval_hard": config.eval_hard,
    }
    used: set[str] = set()
    out: dict[str, list[Question]] = {}
    for split, counts in splits.items():
        out[split] = []
        for name, count in counts.items():
            questions = generate_questions(
                LEVELS[name],
                count,
                seed=derive_seed(config.seed, split, name),
                exclude=used,
                prefix=f"{split}-{name}",
            )
            used.update(q.question for q in questions)
            out[split].extend(questions)
    return out


def fewshot_examples(
    k: int,
    seed: int = 0,
    level: ArithLevel = LEVELS["easy"],
    exclude: set[str] | frozenset[str] = frozenset(),
) -> list[Question]:
    """`k` worked examples for few-shot prompts, from a seed stream of their own.

    Pass the evaluation expressions as `exclude` to keep the shots out of the evaluated set.
    """
    return generate_questions(
        level, k, seed=derive_seed(seed, "fewshot"), exclude=exclude, prefix="fewshot"
    )
