"""A programmatic external judge for `arith`: it checks every intermediate computation.

A worked arith solution has one `a<op>b=c` line per computation ("7*3=21", "3-8=-5") and ends in
"#### N". Every solution the signals see already has the right final answer, so what tells two of
them apart is the work: a solution can reach the right number through a wrong step ("7*3=20" then
"12+20=33"). The oracle prefers the solution whose steps are more often right, then the one with
more right steps, then the shorter one; otherwise it calls a tie.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from satk8s.signals.pairwise import PairRequest, Verdict

# Our own parser on purpose: the judge must not share code (and so bugs) with the task it checks.
_STEP = re.compile(r"^\s*(-?\d+)\s*([+\-*])\s*(-?\d+)\s*=\s*(-?\d+)\s*$")


def _apply(a: int, op: str, b: int) -> int:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    return a * b


def oracle_step_accuracy(text: str) -> tuple[int, int]:
    """(correct steps, total steps) of a worked solution.

    A step is a line with "=" before the "####" answer line. A line that reads `a<op>b=c` is right
    when a op b == c; a line with "=" in any other shape ("7*3=", "2+3*4=14") cannot be checked
    step by step, so it counts as a wrong step rather than being skipped: skipping it would reward
    a solution for writing its work in a shape the oracle cannot read.
    """
    correct = total = 0
    for line in text.splitlines():
        if line.strip().startswith("####"):
            break
        if "=" not in line:
            continue
        total += 1
        match = _STEP.match(line)
        if match:
            a, op, b, c = match.groups()
            correct += _apply(int(a), op, int(b)) == int(c)
    return correct, total


def _quality(text: str) -> tuple[float, int, int]:
    """A sort key, higher is better: step accuracy, right steps, then shortness."""
    correct, total = oracle_step_accuracy(text)
    fraction = correct / total if total else 0.0
    return fraction, correct, -len(text.strip())


def oracle_p_first(first_text: str, second_text: str) -> float:
    """1.0 if the first solution is better, 0.0 if the second is, 0.5 for a tie."""
    first, second = _quality(first_text), _quality(second_text)
    if first > second:
        return 1.0
    if first < second:
        return 0.0
    return 0.5


class OraclePairJudge:
    """A `PairJudge` that needs no model: exact, deterministic, and blind to the shown order."""

    name = "oracle"

    def judge(self, requests: Sequence[PairRequest]) -> list[Verdict]:
        """One verdict per request, with p_first in {1.0, 0.0, 0.5} and method "oracle"."""
        return [
            Verdict(p_first=oracle_p_first(r.first_text, r.second_text), method="oracle")
            for r in requests
        ]

    def __repr__(self) -> str:
        return "OraclePairJudge()"
