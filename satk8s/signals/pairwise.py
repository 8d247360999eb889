"""The pairwise judging protocol shared by the self-judge and the external judges.

1. `plan_pairs` picks which solutions of a question are compared (all pairs for small n, a
   seeded subset beyond).
2. `judge_both_orders` asks a `PairJudge` about every pair in BOTH orders (i shown first, then
   j shown first) and averages P(i better) over the two, which cancels a judge's preference for
   one position. Two solutions with the same text are a tie by definition and are not asked
   about (both orders would show the judge the same prompt). `pair_diagnostics` measures the
   judge's health on the distinct pairs: label mass, invalid verdicts, position preference and
   how often the two orders agree.
3. `pairwise_scores` turns the pairs of each question into one score per solution:
   Bradley-Terry log-strength (default) or soft win rate.

A judge verdict is P(first shown solution is better), read from next-token probabilities of
two single-token labels ("A", "B") after a prompt that ends where the label comes.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import pyarrow as pa

from satk8s.errors import ConfigError, DataError
from satk8s.signals.schema import ScoreRow, scores_table

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

AGGREGATES = ("bradley_terry", "win_rate")
IDENTICAL = "identical"
"""The `method` of a pair whose two solutions have the same text: a tie, never judged."""
P_TIE_TOLERANCE = 1e-9
"""|p - 0.5| at or below this is a tied verdict (the oracle's 0.5, float noise around it)."""

DEFAULT_TEMPLATE = (
    "Question: {question}\n\nSolution A:{first}\n\nSolution B:{second}\n\n"
    "Which solution is better, A or B? The better solution is "
)

# One row per planned pair (i < j are sample indices). p_* are P(solution i is better);
# null where the verdict was invalid. p_ij is the average of both orders, and null unless
# both are valid: one order alone carries the judge's position bias. A pair of identical texts
# has method "identical", p_ij 0.5 and no per-order verdicts: it was never shown to the judge.
PAIRS_SCHEMA = pa.schema(
    [
        ("question_id", pa.string()),
        ("i", pa.int32()),
        ("j", pa.int32()),
        ("p_ij_first", pa.float64()),
        ("p_ij_second", pa.float64()),
        ("p_ij", pa.float64()),
        ("method", pa.string()),
        ("label_mass", pa.float64()),
    ]
)


@dataclass(frozen=True)
class PairRequest:
    """One judge call: is `first_text` (sample `first_index`) better than `second_text`?"""

    question_id: str
    question: str
    first_index: int
    second_index: int
    first_text: str
    second_text: str


@dataclass(frozen=True)
class Verdict:
    """A judge's answer to one PairRequest."""

    p_first: float | None
    """P(the FIRST shown solution is better), normalised over the two labels; None if invalid."""
    method: str
    """"logprobs" (read from label probabilities), "text" (parsed from generated text), a
    judge's own name for how it decided (e.g. "oracle"), or "invalid" (no usable answer:
    counted and excluded, never turned into 0.5)."""
    label_mass: float | None = None
    """Probability the judge put on the two labels together before normalising (logprobs
    only): low mass means the judge is not answering in the expected format."""


@runtime_checkable
class PairJudge(Protocol):
    """Anything that compares two solutions of the same question."""

    name: str

    def judge(self, requests: Sequence[PairRequest]) -> list[Verdict]:
        """One verdict per request, in request order."""
        ...


@dataclass(frozen=True)
class JudgeTemplate:
    """The judge prompt. Used as `judge.template` / `judge.labels` in judge step configs."""

    template: str = DEFAULT_TEMPLATE
    """str.format template with {question}, {first} and {second} (solutions are inserted as
    stored, with their leading space). It must END where the verdict label is the next token.
    A trailing space means "the label follows after a space": for tokenizers whose words carry
    their leading space (BPE: " A" is one token) the space is moved into the label token; for
    others (character level) the label is the bare "A" after the space. `check_single_token_labels`
    decides per tokenizer."""
    labels: tuple[str, str] = ("A", "B")
    """The labels of the first and the second shown solution; each must be one token."""

    def __post_init__(self) -> None:
        # Hydra and JSON hand lists; keep a tuple so the config stays hashable.
        object.__setattr__(self, "labels", tuple(self.labels))
        for name in ("question", "first", "second"):
            if "{" + name + "}" not in self.template:
                raise ConfigError("judge.template", f"must contain the field {{{name}}}")
        try:
            self.template.format(question="", first="", second="")
        except (KeyError, IndexError, ValueError) as err:
            raise ConfigError(
                "judge.template",
                f"is not a str.format template with only {{question}}, {{first}}, {{second}} "
                f"({err!r}); write a literal brace as {{{{ or }}}}",
            ) from None
        if len(self.labels) != 2 or len(set(self.labels)) != 2 or not all(self.labels):
            raise ConfigError(
                "judge.labels", f"need two distinct non-empty labels, got {list(self.labels)}"
            )

    def render(self, request: PairRequest) -> str:
        return self.template.format(
            question=request.question, first=request.first_text, second=request.second_text
        )


@dataclass(frozen=True)
class LabelTokens:
    """How a template's prompt meets the labels for one tokenizer."""

    strip_trailing_space: bool
    """True when the template's trailing space belongs to the label token (" A")."""
    ids: tuple[int, int]
    """Token ids of the first and the second label."""

    def prompt(self, rendered: str) -> str:
        """The exact model input for a rendered template."""
        return rendered[:-1] if self.strip_trailing_space else rendered


def check_single_token_labels(
    tokenizer: PreTrainedTokenizerBase, template: str, labels: Sequence[str]
) -> LabelTokens:
    """Verify each label is exactly one token where it follows the template, for this
    tokenizer; raise ConfigError("judge.labels", ...) otherwise.

    With a trailing space in the template, " A" after the template without it is tried first
    (how BPE tokenizers write a word), then "A" after the space (character-level tokenizers).
    """
    rendered = template.format(question="1 + 1 = ?", first=" 1 + 1 = 2", second=" 2")
    forms = [(False, rendered)]
    if rendered.endswith(" "):
        forms.insert(0, (True, rendered[:-1]))
    tried = []
    for strip, prompt in forms:
        base = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        # What each label adds after the prompt's own tokens; None when the label merges with
        # the prompt's last token (then the model would never see the prompt as we send it).
        extras = []
        for label in labels:
            full = tokenizer(prompt + (" " if strip else "") + label, add_special_tokens=False)
            ids = full["input_ids"]
            extras.append(ids[len(base) :] if ids[: len(base)] == base else None)
        if all(e is not None and len(e) == 1 for e in extras) and extras[0] != extras[1]:
            return LabelTokens(strip_trailing_space=strip, ids=(extras[0][0], extras[1][0]))
        tried.append(extras)
    # Report the last form tried: the bare label after the template, as the user wrote it.
    for label, extra in zip(labels, tried[-1], strict=True):
        if extra is None:
            raise ConfigError(
                "judge.labels",
                f"label '{label}' merges with the end of the template into one token for this "
                "tokenizer; end the template with a space or a punctuation mark",
            )
        if len(extra) != 1:
            pieces = [tokenizer.decode([t]) for t in extra]
            raise ConfigError(
                "judge.labels",
                f"label '{label}' is {len(extra)} tokens for this tokenizer: {pieces}; "
                "use labels that are one token each where they follow the template (e.g. A/B)",
            )
    raise ConfigError("judge.labels", f"labels {list(labels)} map to the same token")


def question_from_prompt(prompt: str) -> str:
    """The question text of a base-model prompt: after the last "Question: ", up to
    "\\nAnswer:" (few-shot blocks before it are skipped)."""
    start = prompt.rfind("Question: ")
    end = prompt.find("\nAnswer:", start)
    if start < 0 or end < 0:
        raise DataError("prompt", f"no 'Question: ...\\nAnswer:' block in prompt {prompt[-80:]!r}")
    return prompt[start + len("Question: ") : end]


def plan_pairs(
    n_solutions: int, max_all_pairs_n: int, budget: int, seed: int
) -> list[tuple[int, int]]:
    """Which solutions (positions 0..n-1) to compare, as sorted (i, j) pairs with i < j.

    All n(n-1)/2 pairs when n <= max_all_pairs_n; otherwise `budget` pairs drawn with `seed`,
    chosen so that every solution appears at least once when budget >= ceil(n / 2).
    """
    every = list(itertools.combinations(range(n_solutions), 2))
    if n_solutions <= max_all_pairs_n or budget >= len(every):
        return every
    if budget < 1:
        raise ConfigError("pair_budget", f"must be at least 1, got {budget}")
    rng = random.Random(seed)
    # Cover first: pair up a shuffled order (an odd one out meets a random other solution).
    order = list(range(n_solutions))
    rng.shuffle(order)
    cover = [tuple(sorted(order[k : k + 2])) for k in range(0, n_solutions - 1, 2)]
    if n_solutions % 2:
        last = order[-1]
        cover.append(tuple(sorted((last, rng.choice(order[:-1])))))
    chosen = set(cover[:budget])
    rest = [p for p in every if p not in chosen]
    rng.shuffle(rest)
    chosen.update(rest[: budget - len(chosen)])
    return sorted(chosen)


class PairingSettings(Protocol):
    """The pairing fields every judge step config has (SelfJudgeConfig, ...); read-only, so
    frozen dataclasses match."""

    @property
    def max_all_pairs_n(self) -> int: ...
    @property
    def pair_budget(self) -> int: ...
    @property
    def seed(self) -> int: ...


def judge_both_orders(kept: pa.Table, judge: PairJudge, config: PairingSettings) -> pa.Table:
    """PAIRS_SCHEMA: each planned pair of each question judged in both orders."""
    by_question = solutions_by_question(kept)
    requests: list[PairRequest] = []
    planned: list[tuple[str, int, int, int | None]] = []  # (.., index of its first request)
    for qid, (question, solutions) in by_question.items():
        seed = _question_seed(config.seed, qid)
        for a, b in plan_pairs(len(solutions), config.max_all_pairs_n, config.pair_budget, seed):
            (i, text_i), (j, text_j) = solutions[a], solutions[b]
            if text_i == text_j:
                planned.append((qid, i, j, None))
                continue
            planned.append((qid, i, j, len(requests)))
            requests.append(PairRequest(qid, question, i, j, text_i, text_j))
            requests.append(PairRequest(qid, question, j, i, text_j, text_i))
    verdicts = _judge_once_per_prompt(judge, requests)
    rows = []
    for qid, i, j, k in planned:
        if k is None:
            rows.append(
                {
                    "question_id": qid,
                    "i": i,
                    "j": j,
                    "p_ij_first": None,
                    "p_ij_second": None,
                    "p_ij": 0.5,
                    "method": IDENTICAL,
                    "label_mass": None,
                }
            )
            continue
        first, second = verdicts[k], verdicts[k + 1]
        p_first = _valid(first)
        p_second = None if _valid(second) is None else 1.0 - _valid(second)
        both = p_first is not None and p_second is not None
        masses = [v.label_mass for v in (first, second) if v.label_mass is not None]
        rows.append(
            {
                "question_id": qid,
                "i": i,
                "j": j,
                "p_ij_first": p_first,
                "p_ij_second": p_second,
                "p_ij": (p_first + p_second) / 2 if both else None,
                "method": _pair_method(first, second),
                "label_mass": sum(masses) / len(masses) if masses else None,
            }
        )
    return pa.Table.from_pylist(rows, schema=PAIRS_SCHEMA)


def _judge_once_per_prompt(judge: PairJudge, requests: list[PairRequest]) -> list[Verdict]:
    """One verdict per request, each distinct (question, first text, second text) asked once:
    solutions with the same text then get the very same verdicts (a model judging the same
    prompt in two batches would differ in the last bits), and no call is spent twice."""
    unique: dict[tuple[str, str, str], int] = {}
    asked: list[PairRequest] = []
    for r in requests:
        key = (r.question_id, r.first_text, r.second_text)
        if key not in unique:
            unique[key] = len(asked)
            asked.append(r)
    verdicts = judge.judge(asked) if asked else []
    if len(verdicts) != len(asked):
        raise RuntimeError(
            f"judge {judge.name} gave {len(verdicts)} verdicts for {len(asked)} requests"
        )
    return [verdicts[unique[(r.question_id, r.first_text, r.second_text)]] for r in requests]


def solutions_by_question(kept: pa.Table) -> dict[str, tuple[str, list[tuple[int, str]]]]:
    """question_id -> (question text, [(sample_index, completion)] sorted by sample_index)."""
    missing = [
        c
        for c in ("question_id", "sample_index", "prompt", "completion")
        if c not in kept.column_names
    ]
    if missing:
        raise DataError(
            "kept",
            f"missing column(s) {', '.join(missing)}; is this the kept table of the saturate step?",
        )
    out: dict[str, tuple[str, list[tuple[int, str]]]] = {}
    columns = [
        kept.column(c).to_pylist() for c in ("question_id", "sample_index", "prompt", "completion")
    ]
    for qid, idx, prompt, completion in zip(*columns, strict=True):
        if qid not in out:
            out[qid] = (question_from_prompt(prompt), [])
        out[qid][1].append((idx, completion))
    for _, solutions in out.values():
        solutions.sort()
    return dict(sorted(out.items()))


def pair_diagnostics(pairs: pa.Table) -> dict[str, Any]:
    """The judge's health, from a PAIRS_SCHEMA table, measured on DISTINCT pairs only (pairs of
    identical texts were never judged; counted in `identical_pairs`).

    position_bias: share of valid verdicts (both orders counted) won by the solution shown
    FIRST (p_first > 0.5; tied verdicts count half); 0.5 is unbiased. order_consistency: share
    of distinct pairs with both orders valid whose two verdicts pick the same winner (or both
    tie). invalid / invalid_share: verdicts with no usable answer, excluded from every score.
    mean_label_mass: mean probability the judge put on the two labels (logprob judges; None
    for judges that read no label probabilities). A measure with nothing to measure is None.
    """
    rows = [r for r in pairs.to_pylist() if r["method"] != IDENTICAL]
    firsts = [r["p_ij_first"] for r in rows]
    seconds = [r["p_ij_second"] for r in rows]
    # P(first shown wins) for each valid verdict: order 1 shows i first, order 2 shows j first.
    shown_first = [p for p in firsts if p is not None] + [1 - p for p in seconds if p is not None]
    wins = [0.5 if _tied(p) else float(p > 0.5) for p in shown_first]
    both = [(a, b) for a, b in zip(firsts, seconds, strict=True) if a is not None and b is not None]
    agree = [_side(a) == _side(b) for a, b in both]
    masses = [r["label_mass"] for r in rows if r["label_mass"] is not None]
    verdicts = 2 * len(rows)
    invalid = verdicts - len(shown_first)
    return {
        "pairs": pairs.num_rows,
        "identical_pairs": pairs.num_rows - len(rows),
        "distinct_pairs": len(rows),
        "verdicts": verdicts,
        "invalid": invalid,
        "invalid_share": invalid / verdicts if verdicts else None,
        "position_bias": math.fsum(wins) / len(wins) if wins else None,
        "mean_p_first": math.fsum(shown_first) / len(shown_first) if shown_first else None,
        "order_consistency": sum(agree) / len(agree) if agree else None,
        "consistency_pairs": len(agree),
        "mean_label_mass": math.fsum(masses) / len(masses) if masses else None,
    }


def _tied(p: float) -> bool:
    return abs(p - 0.5) <= P_TIE_TOLERANCE


def _side(p: float) -> int:
    """+1 when a verdict prefers solution i, -1 for j, 0 for a tie."""
    return 0 if _tied(p) else (1 if p > 0.5 else -1)


def bradley_terry(
    comparisons: Sequence[tuple[int, int, float]],
    prior: float = 1.0,
    tol: float = 1e-10,
    max_iter: int = 10_000,
) -> dict[int, float]:
    """Bradley-Terry strengths pi_s, fitted by the MM algorithm (Hunter 2004) on soft wins.

    Each comparison (i, j, p) is one game that i wins with weight p and j with weight 1 - p.
    Regularisation: every solution also plays `prior` virtual games against a fixed opponent
    of strength 1 and wins half of them, so an undefeated solution keeps a finite strength and
    strengths sit on a common scale (a solution no better or worse than its peers gets about 1).
    MM update: pi_i <- W_i / sum_k n_ik / (pi_i + pi_k), with the virtual games in both sums.
    Every sum is `math.fsum` (exactly rounded, so independent of the order the games are
    listed in): two solutions with the same games get bit-identical strengths, and a tie in the
    judge's verdicts stays a tie in the scores.
    """
    if prior <= 0:
        raise ConfigError("prior", f"must be > 0 to keep undefeated strengths finite, got {prior}")
    won: dict[int, list[float]] = defaultdict(list)
    games: dict[int, list[int]] = defaultdict(list)
    for i, j, p in comparisons:
        won[i].append(p)
        won[j].append(1.0 - p)
        games[i].append(j)
        games[j].append(i)
    wins = {s: math.fsum(ps) for s, ps in won.items()}
    strength = {s: 1.0 for s in games}
    for _ in range(max_iter):
        new = {}
        for s, opponents in games.items():
            denominator = math.fsum(
                [
                    prior / (strength[s] + 1.0),
                    *(1.0 / (strength[s] + strength[o]) for o in opponents),
                ]
            )
            new[s] = (wins[s] + prior / 2) / denominator
        change = max(abs(math.log(new[s] / strength[s])) for s in new) if new else 0.0
        strength = new
        if change < tol:
            break
    return strength


def win_rate(comparisons: Sequence[tuple[int, int, float]]) -> dict[int, float]:
    """Soft win rate: each solution's mean P(it is better) over its comparisons."""
    totals: dict[int, list[float]] = defaultdict(list)
    for i, j, p in comparisons:
        totals[i].append(p)
        totals[j].append(1.0 - p)
    return {s: math.fsum(ps) / len(ps) for s, ps in totals.items()}


def pairwise_scores(
    pairs: pa.Table,
    signal_name: str,
    aggregate: str = "bradley_terry",
    solutions: Mapping[str, Sequence[int]] | None = None,
) -> pa.Table:
    """SCORES_SCHEMA from a PAIRS_SCHEMA table: one row per solution of each question.

    score is the Bradley-Terry log-strength (raw_score: the strength) or the soft win rate
    (raw_score: the same). Only pairs with both orders valid count. `solutions` (question_id ->
    sample indices) adds the solutions that were in no valid pair (a question with one
    solution, or all its verdicts invalid): score 0 (the prior's neutral strength) for
    bradley_terry, 0.5 for win_rate, and details {"n_comparisons": 0}.
    """
    if aggregate not in AGGREGATES:
        raise ConfigError("aggregate", f"must be one of {', '.join(AGGREGATES)}, got '{aggregate}'")
    by_question: dict[str, list[tuple[int, int, float]]] = defaultdict(list)
    for row in pairs.select(["question_id", "i", "j", "p_ij"]).to_pylist():
        if row["p_ij"] is not None:
            by_question[row["question_id"]].append((row["i"], row["j"], row["p_ij"]))
    everyone: dict[str, set[int]] = {q: set(s) for q, s in (solutions or {}).items()}
    for qid, comparisons in by_question.items():
        everyone.setdefault(qid, set()).update(s for i, j, _ in comparisons for s in (i, j))

    neutral = 0.0 if aggregate == "bradley_terry" else 0.5
    rows = []
    for qid, members in everyone.items():
        comparisons = by_question.get(qid, [])
        bt, rate = bradley_terry(comparisons), win_rate(comparisons)
        counts: dict[int, int] = defaultdict(int)
        for i, j, _ in comparisons:
            counts[i] += 1
            counts[j] += 1
        for s in members:
            if counts[s] == 0:
                rows.append(ScoreRow(qid, s, signal_name, neutral, neutral, {"n_comparisons": 0}))
                continue
            log_strength = math.log(bt[s])
            details = {"bt": log_strength, "win_rate": rate[s], "n_comparisons": counts[s]}
            if aggregate == "bradley_terry":
                rows.append(ScoreRow(qid, s, signal_name, log_strength, bt[s], details))
            else:
                rows.append(ScoreRow(qid, s, signal_name, rate[s], rate[s], details))
    return scores_table(rows)


def _valid(verdict: Verdict) -> float | None:
    if verdict.method == "invalid" or verdict.p_first is None or not math.isfinite(verdict.p_first):
        return None
    return verdict.p_first


def _pair_method(first: Verdict, second: Verdict) -> str:
    """The pair's method: "invalid" if either order is, else the shared method (or "mixed")."""
    if _valid(first) is None or _valid(second) is None:
        return "invalid"
    return first.method if first.method == second.method else "mixed"


def _question_seed(seed: int, question_id: str) -> int:
    """A per-question seed, the same in every process (unlike `hash()`)."""
    digest = hashlib.sha256(f"{seed}:{question_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little")
