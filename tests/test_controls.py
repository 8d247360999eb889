"""Content tokens, the `length` and `logprob` control signals, and entropy's precision."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from satk8s.errors import ConfigError
from satk8s.signals.content import content_token_count
from satk8s.signals.controls import LengthConfig, LogprobConfig, length_scores, logprob_scores
from satk8s.signals.entropy import EntropyConfig, entropy_scores, token_entropies
from satk8s.tiny.model import new_model
from satk8s.tiny.tokenizer import build_tokenizer

PROMPT = "Question: 3 + 4 = ?\nAnswer:"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("controls_tiny")
    tokenizer = build_tokenizer()
    new_model(tokenizer, seed=1).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    return AutoTokenizer.from_pretrained(model_dir)


def ids_of(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def kept(tokenizer, rows: list[tuple[str, int, str, str, list[float] | None]]) -> pa.Table:
    """rows: (question_id, sample_index, completion text, generated text, logprobs); the
    generated text is what the tokens decode to (completion + stop string), eos is "</s>"."""
    token_ids = []
    for _, _, _, generated, _ in rows:
        ids = ids_of(tokenizer, generated.removesuffix("</s>"))
        token_ids.append(ids + ([tokenizer.eos_token_id] if generated.endswith("</s>") else []))
    return pa.table(
        {
            "question_id": [r[0] for r in rows],
            "sample_index": pa.array([r[1] for r in rows], pa.int32()),
            "prompt": [PROMPT] * len(rows),
            "completion": [r[2] for r in rows],
            "token_ids": pa.array(token_ids, pa.list_(pa.int32())),
            "token_logprobs": pa.array(
                [r[4] or [-0.1] * len(ids) for r, ids in zip(rows, token_ids, strict=True)],
                pa.list_(pa.float32()),
            ),
        }
    )


def test_content_tokens_leave_out_eos_and_stop_string_tokens(tokenizer):
    def decode(ids):
        return tokenizer.decode(ids, skip_special_tokens=True)

    body = " 3+4=7\n#### 7"
    n_body = len(ids_of(tokenizer, body))
    with_eos = ids_of(tokenizer, body) + [tokenizer.eos_token_id]
    with_stop = ids_of(tokenizer, body + "\n\nQuestion:")
    assert content_token_count(with_eos, body, decode) == n_body
    assert content_token_count(with_stop, body, decode) == n_body
    assert content_token_count(ids_of(tokenizer, body), body, decode) == n_body
    # A backend that detokenised differently: keep all but trailing special tokens.
    assert content_token_count(with_eos, " something else", decode) == n_body


def test_length_counts_content_tokens_and_its_direction_sets_the_sign(tokenizer, model_dir):
    table = kept(
        tokenizer,
        [
            ("q", 0, " 3+4=7\n#### 7", " 3+4=7\n#### 7</s>", None),
            ("q", 1, " #### 7", " #### 7\n\nQuestion:", None),
        ],
    )
    rows = length_scores(table, model_dir).to_pylist()
    assert [r["raw_score"] for r in rows] == [13.0, 7.0]
    assert [r["score"] for r in rows] == [-13.0, -7.0]
    longer = length_scores(table, model_dir, LengthConfig("longer_is_better")).to_pylist()
    assert [r["score"] for r in longer] == [13.0, 7.0]
    with pytest.raises(ConfigError, match="direction"):
        LengthConfig("wider")


def test_logprob_is_the_mean_over_content_tokens_and_sees_a_sampled_mistake(tokenizer, model_dir):
    text = " 3+4=7\n#### 7"
    n = len(ids_of(tokenizer, text))
    confident = [-0.05] * n + [-9.0]  # the eos token's logprob must not count
    slip = [-0.05] * (n - 3) + [-6.0, -0.05, -0.05] + [-0.01]  # one unlikely token drawn
    table = kept(
        tokenizer,
        [
            ("q", 0, text, text + "</s>", confident),
            ("q", 1, text, text + "</s>", slip),
        ],
    )
    rows = logprob_scores(table, model_dir).to_pylist()
    first = pytest.approx(-0.05, abs=1e-6)
    # Both copies have the same tokens: one score, the mean of their two means.
    expected = (math.fsum(confident[:n]) / n + math.fsum(slip[:n]) / n) / 2
    assert rows[0]["score"] == rows[1]["score"] == pytest.approx(expected, rel=1e-6)
    assert rows[0]["details"] != rows[1]["details"]
    alone = logprob_scores(table.slice(0, 1), model_dir).to_pylist()[0]
    assert alone["score"] == first and alone["details"].count("n_tokens")
    other = kept(tokenizer, [("q", 0, text, text + "</s>", slip)])
    assert logprob_scores(other, model_dir).to_pylist()[0]["score"] < alone["score"]
    lower = logprob_scores(table.slice(0, 1), model_dir, LogprobConfig("lower_is_better"))
    assert lower.to_pylist()[0]["score"] == pytest.approx(0.05, abs=1e-6)


def test_entropy_is_the_mean_over_content_tokens_only(tokenizer, model_dir):
    text = " 3+4=7\n#### 7"
    table = kept(
        tokenizer,
        [("q", 0, text, text + "</s>", None), ("q", 1, text, text + "\n\nQuestion:", None)],
    )
    rows = entropy_scores(table, model_dir, EntropyConfig(batch_size=1)).to_pylist()
    # The teacher-forced entropies of prompt + content, computed directly.
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    prompt_ids = tokenizer(PROMPT)["input_ids"]
    body = ids_of(tokenizer, text)
    full = prompt_ids + body + [tokenizer.eos_token_id]
    ids = torch.tensor([full])
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[0, len(prompt_ids) :] = True
    every = token_entropies(model, ids, torch.ones_like(ids), mask, 512)[0].double()
    content = every[: len(body)].mean().item()
    assert rows[0]["raw_score"] == pytest.approx(content, abs=1e-6)
    assert rows[0]["raw_score"] != pytest.approx(every.mean().item(), abs=1e-6)
    # The same tokens with a stop string instead of eos: the same solution, the same value.
    assert rows[1]["raw_score"] == rows[0]["raw_score"]


def test_entropy_lm_head_runs_in_float32_under_a_bfloat16_model(model_dir, tokenizer):
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).eval()
    ids = torch.tensor([tokenizer(PROMPT + " 12+30=42\n#### 42")["input_ids"]])
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[0, :3] = False
    found = token_entropies(model, ids, torch.ones_like(ids), mask, 512)[0].double()
    # Reference: the same bfloat16 hidden states, the head's product in float64.
    with torch.inference_mode():
        hidden = model.get_decoder()(input_ids=ids).last_hidden_state[0]
        states = hidden[2:-1].double()
        weight = model.get_output_embeddings().weight.double()
        logp = torch.log_softmax(states @ weight.T, dim=-1)
        reference = -(logp.exp() * logp).sum(-1)
        low = torch.log_softmax((hidden[2:-1] @ model.get_output_embeddings().weight.T).float(), -1)
        bf16_product = -(low.exp() * low).sum(-1).double()
    assert (found - reference).abs().max().item() < 1e-5
    # What the float32 product avoids: the bfloat16 product is off by much more.
    assert (bf16_product - reference).abs().max().item() > 1e-4
