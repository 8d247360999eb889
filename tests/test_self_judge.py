"""The self-judge on a tiny random-init model: a real run over a small kept table."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from satk8s.errors import ConfigError
from satk8s.signals.hf_judge import HFPairJudge
from satk8s.signals.pairwise import PAIRS_SCHEMA, JudgeTemplate, PairRequest
from satk8s.signals.schema import SCORES_SCHEMA
from satk8s.signals.self_judge import SelfJudgeConfig, self_judge_scores
from satk8s.tiny.model import new_model
from satk8s.tiny.tokenizer import build_tokenizer

SOLUTIONS = {
    "q-add": ("3 + 4", [" 3 + 4 = 7 #### 7", " 4 + 3 = 7 #### 7", " 7 #### 7"]),
    "q-sub": ("9 - 5", [" 9 - 5 = 4 #### 4"]),
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    """A random-init tiny Qwen3 and its tokenizer, saved like any hub checkpoint."""
    path = tmp_path_factory.mktemp("random_tiny")
    tokenizer = build_tokenizer()
    new_model(tokenizer, seed=1).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def kept_table(solutions=SOLUTIONS) -> pa.Table:
    """The saturate step's kept table, with token ids from the tiny tokenizer."""
    tokenizer = build_tokenizer()
    rows = []
    for qid, (question, texts) in solutions.items():
        for k, text in enumerate(texts):
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            rows.append(
                {
                    "question_id": qid,
                    "sample_index": k,
                    "prompt": f"Question: 1 + 1 = ?\nAnswer: 2 #### 2\n\nQuestion: {question} = ?\nAnswer:",
                    "completion": text,
                    "token_ids": ids,
                    "token_logprobs": [-1.0] * len(ids),
                    "finish_reason": "stop",
                    "model_id": "tiny",
                    "sampling_config": "{}",
                    "extracted_answer": text.split("#### ")[-1],
                    "correct": True,
                }
            )
    table = pa.Table.from_pylist(rows)
    return table.set_column(1, "sample_index", table.column(1).cast(pa.int32()))


def test_self_judge_scores_every_kept_solution(model_dir):
    scores, pairs, diagnostics = self_judge_scores(kept_table(), model_dir, SelfJudgeConfig())
    assert scores.schema == SCORES_SCHEMA and pairs.schema == PAIRS_SCHEMA
    rows = {(r["question_id"], r["sample_index"]): r for r in scores.to_pylist()}
    assert set(rows) == {("q-add", 0), ("q-add", 1), ("q-add", 2), ("q-sub", 0)}
    assert {r["signal"] for r in rows.values()} == {"self_judge"}
    # One solution: nothing to compare with.
    assert rows[("q-sub", 0)]["score"] == 0
    assert json.loads(rows[("q-sub", 0)]["details"]) == {"n_comparisons": 0}
    assert json.loads(rows[("q-add", 0)]["details"])["n_comparisons"] == 2

    assert pairs.num_rows == 3
    for row in pairs.to_pylist():
        assert 0 < row["p_ij_first"] < 1 and 0 < row["p_ij_second"] < 1
        assert row["p_ij"] == pytest.approx((row["p_ij_first"] + row["p_ij_second"]) / 2)
        assert row["method"] == "logprobs" and 0 < row["label_mass"] < 1
    assert diagnostics["questions"] == 2 and diagnostics["single_solution_questions"] == 1
    assert diagnostics["pairs"] == 3 and diagnostics["verdicts"] == 6
    assert diagnostics["invalid"] == 0
    assert 0 <= diagnostics["position_bias"] <= 1


def test_hf_judge_reads_the_label_probabilities_of_one_forward_pass(model_dir):
    judge = HFPairJudge(model_dir, batch_size=1, device="cpu")
    request = PairRequest("q", "3 + 4 = ?", 0, 1, " 3 + 4 = 7 #### 7", " 7 #### 7")
    verdict = judge.judge([request])[0]

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    prompt = judge.prompt(request)
    assert prompt.endswith("The better solution is ")  # character tokens: "A" after the space
    with torch.no_grad():
        logits = model(**tokenizer(prompt, return_tensors="pt")).logits[0, -1]
    probs = torch.softmax(logits.double(), -1)[tokenizer.convert_tokens_to_ids(["A", "B"])]
    assert verdict.p_first == pytest.approx((probs[0] / probs.sum()).item(), abs=1e-6)
    assert verdict.label_mass == pytest.approx(probs.sum().item(), abs=1e-6)


def test_hf_judge_verdicts_do_not_depend_on_batching(model_dir):
    requests = [
        PairRequest(q, question, a, b, texts[a], texts[b])
        for q, (question, texts) in SOLUTIONS.items()
        for a in range(len(texts))
        for b in range(len(texts))
        if a != b
    ] + [PairRequest("q-sub", "9 - 5", 0, 1, " 4 #### 4", " 9 - 5 = 4 #### 4")]
    alone = HFPairJudge(model_dir, batch_size=1, device="cpu").judge(requests)
    batched = HFPairJudge(model_dir, batch_size=4, device="cpu").judge(requests)
    for a, b in zip(alone, batched, strict=True):
        assert a.p_first == pytest.approx(b.p_first, abs=1e-5)


def test_questions_beyond_max_all_pairs_use_the_pair_budget(model_dir):
    texts = [f" {k} + {7 - k} = 7 #### 7" for k in range(5)]
    config = SelfJudgeConfig(max_all_pairs_n=2, pair_budget=3, aggregate="win_rate")
    scores, pairs, _ = self_judge_scores(kept_table({"q": ("7", texts)}), model_dir, config)
    assert pairs.num_rows == 3
    assert all(0 <= s <= 1 for s in scores.column("score").to_pylist())


def test_empty_saturated_set_gives_empty_tables_not_a_crash(model_dir):
    scores, pairs, diagnostics = self_judge_scores(kept_table().slice(0, 0), model_dir)
    assert scores.num_rows == 0 and scores.schema == SCORES_SCHEMA
    assert pairs.num_rows == 0 and pairs.schema == PAIRS_SCHEMA
    assert diagnostics == {"questions": 0, "note": "empty saturated set"}


def test_a_multi_token_label_is_a_config_error_naming_the_field(model_dir):
    config = SelfJudgeConfig(judge=JudgeTemplate(labels=("XY", "B")))
    with pytest.raises(ConfigError, match="'XY' is 2 tokens") as err:
        self_judge_scores(kept_table(), model_dir, config)
    assert err.value.field == "judge.labels"


@pytest.mark.parametrize("field, value", [("aggregate", "elo"), ("pair_budget", 0)])
def test_bad_self_judge_config_names_the_field(field, value):
    with pytest.raises(ConfigError) as err:
        SelfJudgeConfig(**{field: value})
    assert err.value.field == field
