"""The tiny model's world: the solutions it is trained on, with a quality dimension planted in it.

Every training solution is written in one of three styles, all of them right on one-digit
questions:

- `shown`: `Work:`, then one checkable `a<op>b=c` line per computation; a two-digit addition
  is done by columns with a carry line (`7+8=15`, `4+3=7`, `7+1=8`, `#### 85` for 47+38). The
  fixed first word keeps the choice of style apart from the question's digits: a solution that
  started with its first digit would tie "shows its work" to "starts with a 3";
- `bare`: the answer alone (`#### 85`). On two-digit additions it drops the carry (47+38 gives
  `#### 75`): answering without the work is the habit that costs accuracy;
- `filler`: a few filler words, then the bare answer (the carry dropped the same way). Longer
  than the shown work and no better: a signal that only prefers length picks it.

So the saturated questions (one-digit: every style right) have correct solutions of unequal
quality, and the quality matters off the saturated set: a model that shows its work gets
two-digit additions right, one that answers bare does not. A signal that finds the shown work
among correct solutions, trained on, moves the model towards it; the random control does not.

The judge: a share of the build's steps trains the pairwise judge format (the default
`self_judge` template) on pairs of solutions drawn from the same levels and styles, labelled
by `preference`: a right answer beats a wrong one, then shown work beats bare beats filler;
identical texts and equal solutions are labelled 0.5, and both orders occur equally often, so
the judge learns no position preference.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from satk8s.tasks import arith

STYLES = ("shown", "bare", "filler")
SHOWN_HEADER = "Work:"
FILLER_WORDS = ("well", "now", "then", "okay", "right", "hmm", "yes", "sure")
_RANK = {"shown": 2, "bare": 1, "filler": 0, "other": -1}
_FINAL_ANSWER = re.compile(r"####\s*(-?\d+)")


def _column_addition(a: int, b: int) -> list[str]:
    """Units, tens, and a carry line when the units overflow: every line one-digit arithmetic."""
    units = a % 10 + b % 10
    tens = a // 10 + b // 10
    lines = [f"{a % 10}+{b % 10}={units}", f"{a // 10}+{b // 10}={tens}"]
    if units >= 10:
        lines.append(f"{tens}+1={tens + 1}")
    return lines


def _multi_digit_sum(expression: str) -> tuple[int, int] | None:
    """(a, b) when `expression` is a+b with an operand of two digits (at most), else None."""
    values, ops = arith.tokenize(expression)
    if ops == ["+"] and max(values) >= 10 and max(values) < 100:
        return values[0], values[1]
    return None


def bare_value(expression: str) -> int:
    """The value a bare answer gives: right, except that a two-digit sum loses its carry."""
    pair = _multi_digit_sum(expression)
    if pair is None:
        return arith.evaluate(expression)
    a, b = pair
    return (a // 10 + b // 10) * 10 + (a % 10 + b % 10) % 10


def has_carry(expression: str) -> bool:
    """Whether a bare answer to `expression` is wrong (a two-digit sum with a carry)."""
    return bare_value(expression) != arith.evaluate(expression)


def solution(expression: str, style: str, rng: random.Random) -> str:
    """One solution of `expression` in `style` (no leading space, no eos); `rng` draws the
    filler words."""
    if style == "shown":
        pair = _multi_digit_sum(expression)
        work = (
            arith.solution_for(expression)
            if pair is None
            else "\n".join([*_column_addition(*pair), f"#### {sum(pair)}"])
        )
        return f"{SHOWN_HEADER}\n{work}"
    answer = f"#### {bare_value(expression)}"
    if style == "bare":
        return answer
    if style == "filler":
        words = rng.choices(FILLER_WORDS, k=rng.randint(4, 6))
        return " ".join(words) + "\n" + answer
    raise ValueError(f"unknown style {style!r}; known: {', '.join(STYLES)}")


def is_correct(completion: str, answer: str) -> bool:
    """Exact match of the first `#### N` integer with the gold answer."""
    match = _FINAL_ANSWER.search(completion)
    return match is not None and int(match.group(1)) == int(answer)


def style_of(completion: str) -> str:
    """Which style a completion is written in: `shown` (work lines before `####`), `filler`
    (words before it), `bare` (`####` first), or `other` (no `####` at all)."""
    head, sep, _ = completion.partition("####")
    if not sep:
        return "other"
    if "=" in head:
        return "shown"
    return "filler" if any(c.isalpha() for c in head) else "bare"


@dataclass(frozen=True)
class Judged:
    """A candidate solution as the judge data sees it."""

    text: str
    style: str
    correct: bool


def preference(first: Judged, second: Judged) -> float:
    """P(first is better): a right answer beats a wrong one, then shown > bare > filler;
    identical texts and otherwise equal solutions are a tie (0.5)."""
    if first.text == second.text:
        return 0.5
    a = (first.correct, _RANK[first.style])
    b = (second.correct, _RANK[second.style])
    return 1.0 if a > b else 0.0 if a < b else 0.5


def draw_style(shares: dict[str, float], rng: random.Random) -> str:
    """A style drawn with the given shares."""
    return rng.choices(list(shares), weights=list(shares.values()), k=1)[0]


def candidate(expression: str, shares: dict[str, float], rng: random.Random) -> Judged:
    """A solution of `expression` drawn from the style shares, with its correctness."""
    style = draw_style(shares, rng)
    text = solution(expression, style, rng)
    correct = style == "shown" or not has_carry(expression)
    return Judged(text, style, correct)
