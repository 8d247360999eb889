"""Prompt length + max_new_tokens is checked against the model's context window before any
generation, with a message that names the field, the question and the numbers."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from satk8s.errors import ConfigError
from satk8s.generation.context import check_context_window
from satk8s.steps.evaluate import EvaluateStepConfig, evaluate
from satk8s.steps.generate import GenerateConfig, generate
from satk8s.tiny.config import TinyArchitecture
from satk8s.tiny.model import new_model
from satk8s.tiny.tokenizer import build_tokenizer


@pytest.fixture(scope="module")
def short_model(tmp_path_factory) -> str:
    """A tiny model with a 64-token window (one token per character)."""
    path = tmp_path_factory.mktemp("short_window")
    tokenizer = build_tokenizer()
    new_model(tokenizer, TinyArchitecture(max_positions=64)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def questions_dir(tmp_path, question: str):
    from satk8s.steps.outputs import commit, open_output

    root = open_output(str(tmp_path / "q"))
    table = pa.table(
        {
            "id": ["q0", "q1"],
            "question": ["1 + 1 = ?", question],
            "answer": ["2", "2"],
            "solution": [" 1+1=2\n#### 2", " #### 2"],
            "prompt": ["Question: 1 + 1 = ?\nAnswer:", f"Question: {question}\nAnswer:"],
        }
    )
    pq.write_table(table, root / "train.parquet")
    pq.write_table(table, root / "eval_id.parquet")
    (root / "summary.json").write_text(json.dumps({}))
    commit(root, "prepare", {}, {}, {}, 0.0)
    return str(tmp_path / "q")


def test_a_prompt_that_leaves_no_room_is_named_with_its_numbers(short_model):
    prompts = [
        ("q0", "Question: 1 + 1 = ?\nAnswer:"),
        ("q1", "Question: " + "9" * 30 + "\nAnswer:"),
    ]
    with pytest.raises(ConfigError) as err:
        check_context_window(short_model, prompts, 37, "sampling.max_new_tokens")
    message = str(err.value)
    assert "sampling.max_new_tokens" in message and "question q1" in message
    assert "1 of 2 prompts" in message and "context window of 64 tokens" in message
    # The short prompt fits exactly: 27 + 37 = 64.
    assert check_context_window(short_model, prompts[:1], 37) == 64


def test_generate_and_evaluate_fail_before_loading_the_model(short_model, tmp_path, monkeypatch):
    import satk8s.steps.evaluate as evaluate_step
    import satk8s.steps.generate as generate_step

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(generate_step, "load_backend", no_model)
    monkeypatch.setattr(evaluate_step, "evaluate_model", no_model)
    questions = questions_dir(tmp_path, "9" * 30)
    from satk8s.evaluation import EvalConfig
    from satk8s.generation import SamplingConfig

    config = GenerateConfig(model=short_model, sampling=SamplingConfig(n=1, max_new_tokens=48))
    with pytest.raises(ConfigError, match="sampling.max_new_tokens"):
        generate(questions, str(tmp_path / "samples"), config)
    assert not (tmp_path / "samples").exists() or not any((tmp_path / "samples").iterdir())
    step = EvaluateStepConfig(
        splits=["eval_id"], model=short_model, eval=EvalConfig(max_new_tokens=48)
    )
    with pytest.raises(ConfigError, match="eval.max_new_tokens"):
        evaluate(questions, str(tmp_path / "eval"), step)
