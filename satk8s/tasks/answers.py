"""Final-answer extraction and checking for `#### N` style tasks (GSM8K, arith).

Two families live here:

- the training-side checker (`extract_answer`, `answers_match`, `is_correct`): cut the
  completion at the stop strings, read the number after the first `####` (tolerating `$`,
  thousands commas, a trailing period, signs, decimals and fractions), fall back to
  math-verify on a `\\boxed{..}`, and compare numerically. Saturation and every signal depend
  on it, so it is lenient about formatting and strict about the value.
- the reporting extractors (`strict_match`, `flexible_extract`, `lm_eval_exact_match`), which
  copy lm-evaluation-harness's gsm8k task so reported numbers are comparable with published
  ones.

Answers are carried as canonical number strings: "18", "-5", "0.75", "1234", and "p/q" for a
fraction with no finite decimal form ("1/3").
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Sequence
from fractions import Fraction

from satk8s.tasks.base import STOP_STRINGS

# A number as models and GSM8K write it: "1,234", "1 234" (a space, no-break or thin space
# between groups of exactly three digits), "18.00", ".5". A comma or space is read as a
# thousands separator only between such groups: "1,8" is not 18.
_GROUPED = r"\d{1,3}(?:,\d{3})+|\d{1,3}(?:[ \u00a0\u2009\u202f]\d{3})+"
_NUMBER = rf"(?:(?:{_GROUPED}|\d+)(?:\.\d+)?|\.\d+)"
# What may not follow a number: more of a number ("18e3", "1,8", "18.5.3"). A trailing period,
# a space, a word or punctuation end it.
_NUMBER_ENDS = r"(?![\d,.]\d|\d|[eE][-+]?\d)"
# Sign and `$` in either order ("-$5", "$-5"), a leading "+", an optional "/denominator" for
# fractions; optionally in parentheses ("(-5)") and markdown emphasis ("**18**", "__18__").
_ANSWER = re.compile(
    r"\s*(?P<emph>\*\*|\*|__|_)?\s*(?P<paren>\()?"
    rf"\s*(?P<sign>[-−+]?)\s*\$?\s*(?P<sign2>[-−]?)\s*(?P<num>{_NUMBER}){_NUMBER_ENDS}"
    rf"(?:\s*/\s*(?P<den>{_NUMBER}){_NUMBER_ENDS})?"
    r"\s*(?(paren)\))\s*(?(emph)(?P=emph))"
)
# A final answer stated in prose, with no `####`: "The answer is 18.", "Final answer: $18".
_PROSE = re.compile(r"(?i)\b(?:final\s+answer(?:\s+is)?|answer\s+is)\s*:?")
# After a prose answer, the rest of its sentence must not carry on computing ("18 + 2 = 20").
_SENTENCE_END = re.compile(r"\n|[.!?;](?:\s|$)")
_CONTINUES = re.compile(r"[\d=+*/×÷^]|-\s*\d")
# Run-on text that starts a new question with a marker of its own, at a line start: a base
# model's invented next problem must not supply the answer.
_RUN_ON = re.compile(r"\n[ \t]*(?:Question|Problem|Q)[ \t]*\d*[ \t]*:")

# lm-evaluation-harness 0.4.13, lm_eval/tasks/gsm8k/gsm8k.yaml (task version 3.0):
# generation_kwargs.until, the filter_list regexes, and exact_match's regexes_to_ignore. Copied
# as constants rather than imported: lm-eval pulls scikit-learn, evaluate, sacrebleu and
# rouge-score into the environment for three regexes and a stop list.
LM_EVAL_UNTIL: tuple[str, ...] = ("Question:", "</s>", "<|im_end|>")
LM_EVAL_STRICT_REGEX = re.compile(r"#### (\-?[0-9\.\,]+)")
LM_EVAL_FLEXIBLE_REGEX = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
LM_EVAL_IGNORE_REGEXES = (",", r"\$", r"(?s).*#### ", r"\.$")

# Math-verify rounds floats to 6 places; the same absolute slack accepts "0.333333" for 1/3
# while a relative 1e-9 keeps "1000000.5" apart from 1000000.
_ABS_TOL = 1e-6
_REL_TOL = 1e-9


def cut_at_stop(completion: str, stop: Sequence[str] = STOP_STRINGS) -> str:
    """The completion up to the earliest stop string (a base model runs on into new questions)."""
    cuts = [i for s in stop if s and (i := completion.find(s)) >= 0]
    return completion[: min(cuts)] if cuts else completion


def cut_run_on(text: str) -> str:
    """`text` up to a line that starts a new question with its own marker ("Question 2:",
    "Q:", "Problem:"), which the generation stop strings do not catch."""
    match = _RUN_ON.search(text)
    return text[: match.start()] if match else text


def parse_number(text: str) -> Fraction | None:
    """The exact value of a number written alone: "18", "$1,234.", "-5", "18.00", "3/4",
    "**18**", "(-5)", "+7", "1 234".

    None when `text` is not just a number (units, words or LaTeX around it).
    """
    match = _ANSWER.match(text)
    if match is None or text[match.end() :].strip() not in ("", "."):
        return None
    return _match_value(match)


def format_number(value: Fraction) -> str:
    """The canonical string of a value: "18", "-5", "0.75"; "p/q" when no finite decimal exists."""
    if value.denominator == 1:
        return str(value.numerator)
    digits = _decimal_places(value.denominator)
    if digits is None:
        return f"{value.numerator}/{value.denominator}"
    scaled = abs(value.numerator) * (10**digits // value.denominator)
    whole, frac = divmod(scaled, 10**digits)
    sign = "-" if value < 0 else ""
    # The smallest power of ten the denominator divides leaves no trailing zeros.
    return f"{sign}{whole}.{frac:0{digits}d}"


def canonical_number(text: str) -> str | None:
    """`format_number(parse_number(text))`, or None when `text` is not a number."""
    value = parse_number(text)
    return None if value is None else format_number(value)


def hash_answer(text: str) -> str | None:
    """The canonical number right after the first `####` in `text`, or None.

    No stop-string cut and no fallback: this is the strict reader for gold solutions.
    """
    _, marker, tail = text.partition("####")
    if not marker:
        return None
    match = _ANSWER.match(tail)
    value = None if match is None else _match_value(match)
    return None if value is None else format_number(value)


def boxed_answer(text: str) -> str | None:
    """The answer in the last `\\boxed{..}` of `text`, parsed with math-verify, or None.

    A number comes back canonical ("\\frac{3}{4}" -> "0.75"); anything else comes back as
    math-verify's normalised LaTeX ("\\sqrt{2}"), for `answers_match` to compare symbolically.
    """
    content = _last_boxed(text)
    if content is None or not content.strip():
        return None
    plain = canonical_number(content)
    if plain is not None:
        return plain
    from math_verify import LatexExtractionConfig, parse  # sympy import: ~1 s, rarely needed

    # Boxed only: math-verify would otherwise also take "answer: $5$" or any bare number.
    config = [LatexExtractionConfig(boxed_match_priority=0, try_extract_without_anchor=False)]
    parsed = parse(
        f"\\boxed{{{content}}}",
        extraction_config=config,
        fallback_mode="first_match",
        parsing_timeout=_math_verify_timeout(),
    )
    if not parsed:
        return None
    value = _sympy_number(parsed[0])
    if value is not None:
        return format_number(value)
    latex = parsed[-1]
    return latex.strip() if isinstance(latex, str) and latex.strip() else None


def prose_answer(text: str) -> str | None:
    """The value of a final answer stated in prose ("The answer is 18.", "Final answer: $18"),
    or None. Every such statement must give the same value, and none may go on computing on
    its line ("The answer is 18 + 2 = 20")."""
    values = set()
    for marker in _PROSE.finditer(text):
        tail = text[marker.end() :]
        match = _ANSWER.match(tail)
        value = None if match is None else _match_value(match)
        rest = _SENTENCE_END.split(tail[match.end() :], maxsplit=1)[0] if match else ""
        if value is None or _CONTINUES.search(rest):
            return None
        values.add(value)
    return format_number(values.pop()) if len(values) == 1 else None


def extract_answer(completion: str, stop: Sequence[str] = STOP_STRINGS) -> str | None:
    """The final answer of a completion as a canonical number string, or None.

    Cut at the stop strings and at a line starting a new question ("Question 2:", "Q:",
    "Problem:") first: text after them belongs to an invented next question. Then read the
    number after the first `####`; without one, the last `\\boxed{..}`; with neither, a final
    answer stated in prose. A `####` whose number cannot be read gives None: the model's own
    final answer is malformed, and prose elsewhere does not rescue it.
    """
    text = cut_run_on(cut_at_stop(completion, stop))
    if "####" in text:
        answer = hash_answer(text)
        if answer is None and "\\boxed" in text:
            answer = boxed_answer(text)
        return answer
    if "\\boxed" in text:
        return boxed_answer(text)
    return prose_answer(text)


def answers_match(predicted: str | None, gold: str) -> bool:
    """Whether a predicted answer equals the gold one.

    Numbers compare by value ("18.00" == "18", "0.75" == "3/4", within 1e-6); anything else
    goes to math-verify's symbolic comparison.
    """
    if predicted is None or not predicted.strip() or not gold.strip():
        return False
    pred_value, gold_value = parse_number(predicted), parse_number(gold)
    if pred_value is not None and gold_value is not None:
        return _close(pred_value, gold_value)
    return _math_verify_equal(predicted, gold)


def is_correct(completion: str, gold: str, stop: Sequence[str] = STOP_STRINGS) -> bool:
    """Whether the completion's final answer equals `gold` (see `extract_answer`)."""
    return answers_match(extract_answer(completion, stop), gold)


def strict_match(completion: str, stop: Sequence[str] = LM_EVAL_UNTIL) -> str | None:
    """lm-eval's gsm8k "strict-match": the first `#### N`, raw ("1,234."), or None.

    The completion is cut at lm-eval's own GSM8K stop list first (`until`: "Question:"
    anywhere, not only after a newline), as lm-eval does after generation.
    """
    return _lm_eval_regex(LM_EVAL_STRICT_REGEX, cut_at_stop(completion, stop), select=0)


def flexible_extract(completion: str, stop: Sequence[str] = LM_EVAL_UNTIL) -> str | None:
    """lm-eval's gsm8k "flexible-extract": the last number-like token, raw ("$72"), or None,
    after the same cut at lm-eval's stop list."""
    return _lm_eval_regex(LM_EVAL_FLEXIBLE_REGEX, cut_at_stop(completion, stop), select=-1)


def lm_eval_exact_match(extracted: str | None, gold: str) -> bool:
    """lm-eval's gsm8k exact_match: strip `,`, `$`, text up to `#### ` and a final `.`, then
    compare case-insensitively as strings ("18.00" != "18", unlike `answers_match`).

    `gold` may be the canonical number or the full GSM8K solution text.
    """
    if extracted is None:
        return False
    return _lm_eval_normalise(extracted) == _lm_eval_normalise(gold)


def _match_value(match: re.Match[str]) -> Fraction | None:
    if match["sign"] and match["sign2"]:
        return None  # "--5" and "+-5" are not numbers anyone means
    value = Fraction(_digits(match["num"]))
    if match["den"] is not None:
        den = Fraction(_digits(match["den"]))
        if den == 0:
            return None
        value /= den
    negative = match["sign"] in ("-", "−") or match["sign2"]
    return -value if negative else value


def _digits(number: str) -> str:
    """A matched number without its group separators."""
    return re.sub(r"[,\s]", "", number)


def _decimal_places(denominator: int) -> int | None:
    """The smallest k with denominator | 10**k, or None when none exists."""
    twos = fives = 0
    while denominator % 2 == 0:
        denominator //= 2
        twos += 1
    while denominator % 5 == 0:
        denominator //= 5
        fives += 1
    return max(twos, fives) if denominator == 1 else None


def _last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{..}`, braces balanced; None when there is none."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth = 0
    begin = start + len("\\boxed{")
    for i in range(begin - 1, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[begin:i]
    return None  # unclosed: the completion was cut mid-answer


def _sympy_number(expr: object) -> Fraction | None:
    import sympy

    if isinstance(expr, sympy.Rational):
        return Fraction(int(expr.p), int(expr.q))
    if isinstance(expr, sympy.Float):
        return Fraction(str(expr))
    return None


def _close(a: Fraction, b: Fraction) -> bool:
    if a == b:
        return True
    try:
        return math.isclose(float(a), float(b), rel_tol=_REL_TOL, abs_tol=_ABS_TOL)
    except OverflowError:  # beyond float range: exact comparison already said no
        return False


def _math_verify_equal(predicted: str, gold: str) -> bool:
    from math_verify import parse, verify

    timeout = _math_verify_timeout()
    gold_parsed = parse(f"${gold}$", parsing_timeout=timeout)
    pred_parsed = parse(f"${predicted}$", parsing_timeout=timeout)
    if not gold_parsed or not pred_parsed:
        return False
    return verify(gold_parsed, pred_parsed, timeout_seconds=timeout)


def _math_verify_timeout() -> int | None:
    # math-verify times out with signal.alarm, which only works in the main thread.
    return 5 if threading.current_thread() is threading.main_thread() else None


def _lm_eval_regex(pattern: re.Pattern[str], text: str, select: int) -> str | None:
    # lm-eval's RegexFilter: findall, pick one match, first non-empty group, strip.
    matches = pattern.findall(text)
    if not matches:
        return None
    match = matches[select]
    if isinstance(match, tuple):
        match = next(group for group in match if group)
    return match.strip()


def _lm_eval_normalise(text: str) -> str:
    for pattern in LM_EVAL_IGNORE_REGEXES:
        text = re.sub(pattern, "", text)
    return text.lower()
