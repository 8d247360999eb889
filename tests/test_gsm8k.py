"""The GSM8K loader: real files in, Question records out, and clear errors for bad files."""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import pytest

from satk8s.errors import ConfigError, DataError
from satk8s.tasks.answers import is_correct
from satk8s.tasks.gsm8k import clean_solution, load_gsm8k, strip_calculator_annotations

REPO = Path(__file__).resolve().parents[1]
SHARED_GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k"
FIXTURE_GSM8K = REPO / "tests" / "fixtures" / "gsm8k"

# Outside CI the full copy may be absent (the fixture subset covers the loader); CI always has
# ../shared beside the clone, so there a missing copy fails instead of skipping.
needs_shared = pytest.mark.skipif(
    not SHARED_GSM8K.is_dir() and not os.environ.get("CI"),
    reason=f"full GSM8K copy not at {SHARED_GSM8K}",
)

FIRST_TRAIN_SOLUTION = (
    "Natalia sold 48/2 = 24 clips in May.\n"
    "Natalia sold 48+24 = 72 clips altogether in April and May.\n"
    "#### 72"
)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def record(question: str = "What is 2+3?", answer: str = "2+3=<<2+3=5>>5\n#### 5") -> str:
    return json.dumps({"question": question, "answer": answer})


def test_the_first_train_question_loads_with_id_answer_and_clean_solution():
    [first] = load_gsm8k("train", FIXTURE_GSM8K, limit=1)
    assert first.id == "gsm8k-train-00000"
    assert first.question.startswith("Natalia sold clips to 48 of her friends in April")
    assert first.answer == "72"
    assert first.solution == FIRST_TRAIN_SOLUTION


def test_the_fixture_holds_64_questions_per_split_with_sequential_ids():
    for split in ("train", "test"):
        questions = load_gsm8k(split, FIXTURE_GSM8K)
        assert len(questions) == 64
        assert [q.id for q in questions[:2]] == [f"gsm8k-{split}-00000", f"gsm8k-{split}-00001"]
        assert questions[-1].id == f"gsm8k-{split}-00063"


def test_limit_takes_the_first_questions():
    assert [q.id for q in load_gsm8k("test", FIXTURE_GSM8K, limit=3)] == [
        "gsm8k-test-00000",
        "gsm8k-test-00001",
        "gsm8k-test-00002",
    ]
    assert load_gsm8k("test", FIXTURE_GSM8K, limit=0) == []


def test_a_jsonl_file_path_is_read_directly():
    from_file = load_gsm8k("test", FIXTURE_GSM8K / "test.jsonl", limit=5)
    assert from_file == load_gsm8k("test", str(FIXTURE_GSM8K), limit=5)


@needs_shared
def test_the_test_split_has_1319_questions_and_the_train_split_7473():
    assert len(load_gsm8k("test", SHARED_GSM8K)) == 1319
    assert len(load_gsm8k("train", SHARED_GSM8K)) == 7473


@needs_shared
@pytest.mark.parametrize("split", ["train", "test"])
def test_every_gold_solution_parses_and_checks_as_correct(split):
    # The reference solution must pass our own checker, or saturation would be wrong.
    for question in load_gsm8k(split, SHARED_GSM8K):
        assert "<<" not in question.solution and ">>" not in question.solution, question.id
        assert question.solution.endswith(f"\n#### {question.answer}"), question.id
        assert is_correct(" " + question.solution, question.answer), question.id


@needs_shared
def test_thousands_commas_in_golds_become_plain_numbers():
    train = load_gsm8k("train", SHARED_GSM8K, limit=346)
    assert train[345].answer == "1080"  # the file says "#### 1,080"
    assert train[345].solution.endswith("\n#### 1080")


def test_calculator_annotations_are_removed():
    text = "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\n#### 10"
    assert strip_calculator_annotations(text) == "Weng earns 12/60 = $0.2 per minute.\n#### 10"


def test_clean_solution_ends_in_the_canonical_answer():
    assert clean_solution("1000+80=<<1000+80=1080>>1080\n#### 1,080\n", "1080") == (
        "1000+80=1080\n#### 1080"
    )


def test_blank_lines_are_skipped(tmp_path):
    file = write_lines(tmp_path / "g.jsonl", [record(), "", record("What is 1+1?", "#### 2")])
    questions = load_gsm8k("train", file)
    assert [(q.id, q.answer) for q in questions] == [
        ("gsm8k-train-00000", "5"),
        ("gsm8k-train-00001", "2"),
    ]


def test_an_unknown_split_is_a_config_error():
    with pytest.raises(ConfigError, match="split") as err:
        load_gsm8k("validation", FIXTURE_GSM8K)
    assert err.value.field == "split"


def test_a_negative_limit_is_a_config_error():
    with pytest.raises(ConfigError, match="limit"):
        load_gsm8k("test", FIXTURE_GSM8K, limit=-1)


def test_a_missing_file_names_the_file_and_says_how_to_pass_a_path(tmp_path):
    with pytest.raises(DataError, match="pass `path`") as err:
        load_gsm8k("test", tmp_path)
    assert err.value.path == str(tmp_path / "test.jsonl")
    with pytest.raises(DataError, match="no such GSM8K file"):
        load_gsm8k("test", tmp_path / "nope.jsonl")


def test_a_malformed_json_line_names_file_and_line(tmp_path):
    file = write_lines(tmp_path / "test.jsonl", [record(), '{"question": "cut off'])
    with pytest.raises(DataError, match="line 2: not valid JSON") as err:
        load_gsm8k("test", tmp_path)
    assert (err.value.path, err.value.line) == (str(file), 2)
    # The whole phrase, with where on the line it broke off.
    assert "Unterminated string starting at column 14;" in str(err.value)


@pytest.mark.parametrize("missing", ["question", "answer"])
def test_a_line_missing_a_field_names_the_field_and_line(tmp_path, missing):
    fields = {"question": "What is 2+3?", "answer": "#### 5"}
    del fields[missing]
    file = write_lines(tmp_path / "g.jsonl", [record(), record(), json.dumps(fields)])
    with pytest.raises(DataError, match=f"line 3: missing string field '{missing}'") as err:
        load_gsm8k("train", file)
    assert err.value.path == str(file)


def test_a_line_that_is_not_an_object_is_a_data_error(tmp_path):
    file = write_lines(tmp_path / "g.jsonl", ['["question", "answer"]'])
    with pytest.raises(DataError, match="line 1: expected a JSON object"):
        load_gsm8k("train", file)


def test_a_gold_without_a_final_number_names_the_line(tmp_path):
    file = write_lines(tmp_path / "g.jsonl", [record(), record(answer="2+3=5, so five.")])
    with pytest.raises(DataError, match=r"line 2: the answer has no final '#### N' number"):
        load_gsm8k("train", file)


def test_the_hub_path_loads_openai_gsm8k_main(monkeypatch):
    calls = []

    def load_dataset(name, config, split):
        calls.append((name, config, split))
        return [{"question": "What is 2+3?", "answer": "2+3=<<2+3=5>>5\n#### 5"}]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    [question] = load_gsm8k("test")
    assert calls == [("openai/gsm8k", "main", "test")]
    assert (question.id, question.answer, question.solution) == (
        "gsm8k-test-00000",
        "5",
        "2+3=5\n#### 5",
    )


def test_a_hub_failure_says_to_pass_a_local_path(monkeypatch):
    def load_dataset(name, config, split):
        raise ConnectionError("no network")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    with pytest.raises(DataError, match="could not load from the hub.*no network.*pass `path`"):
        load_gsm8k("train")
