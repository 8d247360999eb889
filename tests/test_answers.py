"""Answer extraction and checking: what counts as a model's final answer, and when it is right."""

from __future__ import annotations

import re
from fractions import Fraction

import pytest

from satk8s.tasks.answers import (
    LM_EVAL_FLEXIBLE_REGEX,
    LM_EVAL_IGNORE_REGEXES,
    LM_EVAL_STRICT_REGEX,
    LM_EVAL_UNTIL,
    answers_match,
    boxed_answer,
    canonical_number,
    cut_at_stop,
    extract_answer,
    flexible_extract,
    format_number,
    hash_answer,
    is_correct,
    lm_eval_exact_match,
    parse_number,
    strict_match,
)

RUN_ON = " 5*8=40\n40+32=72\n#### 72\n\nQuestion: foo\nAnswer: #### 2"


def test_cut_at_stop_keeps_text_before_the_earliest_stop_string():
    assert cut_at_stop(RUN_ON) == " 5*8=40\n40+32=72\n#### 72"
    assert cut_at_stop("a STOP b END c", stop=("END", "STOP")) == "a "


def test_cut_at_stop_without_a_stop_string_keeps_everything():
    assert cut_at_stop(" 3+4=7\n#### 7") == " 3+4=7\n#### 7"
    assert cut_at_stop("abc", stop=()) == "abc"
    assert cut_at_stop("abc", stop=("",)) == "abc"  # an empty stop string must not cut all


def test_run_on_text_after_the_answer_is_ignored():
    assert extract_answer(RUN_ON) == "72"
    assert is_correct(RUN_ON, "72")
    assert not is_correct(RUN_ON, "2")


def test_the_cut_happens_before_looking_for_hashes():
    # Without the cut the invented next question's answer would be the only `####`.
    completion = " 5*8=40\n\nQuestion: foo\nAnswer: #### 2"
    assert extract_answer(completion) is None
    assert hash_answer(completion) == "2"


def test_the_first_hash_answer_wins():
    assert extract_answer(" #### 3\n#### 4") == "3"


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (" 9+9=18\n#### $18", "18"),
        (" #### 18.00", "18"),
        (" #### 1,234.", "1234"),
        (" #### 3/4", "0.75"),
        (" #### 1/3", "1/3"),
        (" #### -5", "-5"),
        (" #### -$5", "-5"),
        (" #### $-5", "-5"),
        (" #### 0.50", "0.5"),
        (" #### .5", "0.5"),
        (" ####72", "72"),
        (" ####   72 apples", "72"),
        (" #### 72.", "72"),
        (" #### 1,000,000", "1000000"),
    ],
)
def test_hash_answers_are_read_in_every_common_format(completion, expected):
    assert extract_answer(completion) == expected


def test_boxed_answers_are_the_fallback_without_hashes():
    assert extract_answer(r"So the total is \boxed{18}.") == "18"
    assert extract_answer(r"$\boxed{\frac{3}{4}}$") == "0.75"
    assert extract_answer(r"\boxed{\dfrac{1}{3}}") == "1/3"
    assert extract_answer(r"\boxed{\$1,234}") == "1234"


def test_the_last_boxed_answer_wins():
    assert boxed_answer(r"\boxed{1} is wrong, \boxed{2} is right") == "2"


def test_a_non_numeric_boxed_answer_is_kept_as_latex():
    assert boxed_answer(r"\boxed{\sqrt{2}}") == r"\sqrt{2}"


def test_empty_or_unclosed_boxes_give_no_answer():
    assert extract_answer(r"\boxed{}") is None
    assert extract_answer(r"\boxed{18") is None


def test_hashes_take_precedence_over_a_box():
    assert extract_answer("\\boxed{5}\n#### 6") == "6"


@pytest.mark.parametrize(
    "completion",
    ["", "   ", " 5*8=40\n40+32=72", " the answer is 72 + 1", " #### ", " #### lots", "#### --5"],
)
def test_no_final_answer_gives_none_and_is_never_correct(completion):
    assert extract_answer(completion) is None
    assert not is_correct(completion, "72")


def test_a_number_outside_hashes_or_boxes_is_not_an_answer():
    # Bare numbers in the working are not answers: a truncated sample must not pass by luck.
    assert extract_answer(" 40+32=72") is None


@pytest.mark.parametrize(
    ("predicted", "gold"),
    [
        ("18", "18"),
        ("18.00", "18"),
        ("$18", "18"),
        ("1,234", "1234"),
        ("0.75", "3/4"),
        ("3/4", "0.75"),
        ("-5", "-5"),
        ("0.333333", "1/3"),  # math-verify's 6-place rounding
        ("\\sqrt{2}", "\\sqrt{2}"),
    ],
)
def test_answers_match_by_value(predicted, gold):
    assert answers_match(predicted, gold)


@pytest.mark.parametrize(
    ("predicted", "gold"),
    [
        (None, "18"),
        ("", "18"),
        ("18", ""),
        ("17", "18"),
        ("-18", "18"),
        ("0.33", "1/3"),
        ("1000000.5", "1000000"),
        ("\\sqrt{2}", "\\sqrt{3}"),
    ],
)
def test_answers_differ_by_value(predicted, gold):
    assert not answers_match(predicted, gold)


def test_a_boxed_fraction_matches_its_decimal_gold():
    assert is_correct(r"The share is \boxed{\frac{3}{4}}", "0.75")
    assert not is_correct(r"The share is \boxed{\frac{3}{5}}", "0.75")


def test_is_correct_accepts_formatted_golds():
    assert is_correct(" 9+9=18\n#### 18.00", "18")
    assert is_correct(" #### 1234", "1,234")


def test_parse_number_reads_only_a_lone_number():
    assert parse_number(" $1,234. ") == Fraction(1234)
    assert parse_number("3 / 4") == Fraction(3, 4)
    assert parse_number("-0") == 0
    assert parse_number("72 apples") is None
    assert parse_number("3/0") is None
    assert parse_number("") is None


def test_format_number_gives_one_string_per_value():
    assert format_number(Fraction(18)) == "18"
    assert format_number(Fraction(-5)) == "-5"
    assert format_number(Fraction(3, 4)) == "0.75"
    assert format_number(Fraction(-1, 8)) == "-0.125"
    assert format_number(Fraction(7, 20)) == "0.35"
    assert format_number(Fraction(2, 3)) == "2/3"
    assert canonical_number("18.00") == canonical_number("18") == "18"


def test_hash_answer_neither_cuts_nor_falls_back():
    assert hash_answer("Question: x\n#### 7") == "7"
    assert hash_answer(r"\boxed{7}") is None


# lm-evaluation-harness gsm8k filters, copied so reported numbers compare with published ones.


def test_strict_match_takes_the_first_hash_number_raw():
    assert strict_match(" 9+9=18\n#### 1,234.\n#### 5") == "1,234."
    assert strict_match(RUN_ON) == "72"
    assert strict_match(" #### $18") is None  # lm-eval's regex does not allow `$`
    assert strict_match("no answer") is None


def test_flexible_extract_takes_the_last_number_raw():
    assert flexible_extract(" She pays $18 and gets 2 back") == "2"
    assert flexible_extract(" The total is $72.") == "$72."
    assert flexible_extract(RUN_ON) == "72"
    assert flexible_extract(" -5 degrees") == "-5"
    assert flexible_extract("no numbers") is None


def test_lm_eval_exact_match_compares_normalised_strings():
    assert lm_eval_exact_match("$1,234.", "1234")
    assert lm_eval_exact_match("72", "48+24=72\n#### 72")
    assert not lm_eval_exact_match("18.00", "18")  # lm-eval is a string match, unlike ours
    assert not lm_eval_exact_match(None, "18")


# Answer forms that must not be misread (false positives) ...


@pytest.mark.parametrize(
    "completion",
    [
        " #### 1,8",  # not a thousands group: 1 then 8, or 1.8 in some locales; never 18
        " #### 18e3",  # 18000, not 18
        " #### 18E3",
        " #### 1,2345",
        " #### 18.5.3",
        " #### 12,34,567",
    ],
)
def test_malformed_numbers_after_hashes_are_not_read_as_another_value(completion):
    assert extract_answer(completion) is None
    assert not is_correct(completion, "18")


# ... and forms a base model really writes, read where the value is unambiguous.


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (" #### **18**", "18"),
        (" #### *18*", "18"),
        (" #### __18__", "18"),
        (" #### **$1,234**", "1234"),
        (" #### +18", "18"),
        (" #### (-5)", "-5"),
        (" #### (−5)", "-5"),
        (" #### 1\u2009234", "1234"),
        (" #### 1\u202f234\u202f567", "1234567"),
        (" #### 1 234", "1234"),
        (" #### 1,234,567", "1234567"),
        (" 9+9=18\nThe answer is 18.", "18"),
        (" 9+9=18\nThe final answer is $18", "18"),
        (" 9+9=18. So the answer is: 18 apples.", "18"),
        (" 9+9=18\nFinal answer: 18", "18"),
    ],
)
def test_emphasised_signed_grouped_and_prose_answers_are_read(completion, expected):
    assert extract_answer(completion) == expected


def test_prose_answers_that_disagree_or_continue_an_expression_are_not_read():
    assert extract_answer(" The answer is 18. No, the answer is 19.") is None
    assert extract_answer(" The answer is 18 + 2 = 20") is None
    assert extract_answer(" The answer is 18. Indeed the answer is 18.") == "18"


def test_a_hash_marker_takes_precedence_over_prose():
    assert extract_answer(" The answer is 17.\n#### 18") == "18"
    # An unreadable `####` answer is not rescued by prose: the model's own final answer is bad.
    assert extract_answer(" The answer is 18.\n#### 1,8") is None


@pytest.mark.parametrize("marker", ["Question 2:", "Q:", "Q2:", "Problem:", "Problem 3:"])
def test_run_on_text_starting_a_new_question_cannot_supply_the_answer(marker):
    completion = f" 5*8=40\n{marker} Tom has 3 apples.\nAnswer: 3\n#### 3"
    assert extract_answer(completion) is None
    assert not is_correct(completion, "3")
    assert extract_answer(f" 5*8=40\n#### 40\n{marker} x\n#### 3") == "40"


def test_parse_number_accepts_the_new_forms_alone():
    assert parse_number("**18**") == Fraction(18)
    assert parse_number("(-5)") == Fraction(-5)
    assert parse_number("+7") == Fraction(7)
    assert parse_number("1,8") is None
    assert parse_number("18e3") is None


# Parity with lm-evaluation-harness. lm-eval is not a dependency (it pulls scikit-learn,
# evaluate, sacrebleu and rouge-score), so its GSM8K task is copied as constants in
# satk8s.tasks.answers; the reference below re-implements, independently of satk8s's code,
# what lm-eval 0.4.13 does with them:
# - lm_eval/models/utils.py `postprocess_generated_text`: `generation.split(term)[0]` for every
#   term of `until` (gsm8k.yaml's list plus the tokenizer's eos text, `handle_stop_sequences`);
# - lm_eval/filters/extraction.py `RegexFilter.apply`: findall, take `group_select`, first
#   non-empty group of a tuple, strip, "[invalid]" when nothing matched;
# - lm_eval/api/metrics.py `exact_match_hf_evaluate`: re.sub every regexes_to_ignore on both
#   sides, lower-case (ignore_case: true), compare.


def _lm_eval_reference(generation: str, gold_solution: str, eos: str = "<|endoftext|>"):
    for term in [*LM_EVAL_UNTIL, eos]:
        generation = generation.split(term)[0]

    def regex_filter(pattern: str, group_select: int) -> str:
        found = re.findall(pattern, generation)
        if not found:
            return "[invalid]"
        match = found[group_select]
        if isinstance(match, tuple):
            match = [m for m in match if m]
            match = match[0] if match else "[invalid]"
        return match.strip()

    def exact_match(prediction: str) -> bool:
        for pattern in LM_EVAL_IGNORE_REGEXES:
            prediction = re.sub(pattern, "", prediction)
        reference = gold_solution
        for pattern in LM_EVAL_IGNORE_REGEXES:
            reference = re.sub(pattern, "", reference)
        return prediction.lower() == reference.lower()

    strict = regex_filter(LM_EVAL_STRICT_REGEX.pattern, 0)
    flexible = regex_filter(LM_EVAL_FLEXIBLE_REGEX.pattern, -1)
    return exact_match(strict), exact_match(flexible)


def test_lm_eval_constants_are_the_gsm8k_task_of_lm_eval_0_4_13():
    # lm_eval/tasks/gsm8k/gsm8k.yaml (lm-eval 0.4.13, task version 3.0).
    assert LM_EVAL_UNTIL == ("Question:", "</s>", "<|im_end|>")
    assert LM_EVAL_STRICT_REGEX.pattern == "#### (\\-?[0-9\\.\\,]+)"
    assert LM_EVAL_FLEXIBLE_REGEX.pattern == "(-?[$0-9.,]{2,})|(-?[0-9]+)"
    assert LM_EVAL_IGNORE_REGEXES == (",", "\\$", "(?s).*#### ", "\\.$")


GOLD = "Tom has 9+9=<<9+9=18>>18 apples.\n#### 18"


@pytest.mark.parametrize(
    "completion",
    [
        " 9+9=18\n#### 18",
        " 9+9=18\n#### 18 Question: what is 2+2?\n#### 4",  # lm-eval cuts at any "Question:"
        " 9+9=18 Question: x #### 4",
        " 9+9=18</s>#### 4",
        " 9+9=18<|im_end|>\n#### 4",
        " 9+9=18\n#### 18\n\nQuestion: next\nAnswer: 4",
        " #### 1,8",
        " #### $18.",
        " The total is 18 dollars",
        " 9+9=17\n#### 17",
        " no number at all",
    ],
)
def test_reporting_extractors_equal_lm_eval_on_the_same_generation(completion):
    strict_ok, flexible_ok = _lm_eval_reference(completion, GOLD)
    assert lm_eval_exact_match(strict_match(completion), GOLD) == strict_ok
    assert lm_eval_exact_match(flexible_extract(completion), GOLD) == flexible_ok


def test_reporting_extractors_cut_at_lm_evals_stop_list_not_satk8s_stop_strings():
    # satk8s stops generation at "\nQuestion:"; lm-eval cuts at "Question:" anywhere.
    completion = " 9+9=18 Question: #### 4"
    assert strict_match(completion) is None
    assert flexible_extract(completion) == "18"
