"""The entropy signal: a chunked teacher-forced pass equals the entropy of generate's own logits."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from satk8s.errors import ConfigError
from satk8s.signals.entropy import EntropyConfig, entropy_scores, token_entropies
from satk8s.signals.schema import SCORES_SCHEMA
from satk8s.tiny.model import new_model
from satk8s.tiny.tokenizer import build_tokenizer

PROMPTS = ["Question: 3 + 4 = ?\nAnswer:", "Question: 12 - 5 + 31 = ?\nAnswer:"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    """A random-init tiny Qwen3 and its tokenizer, saved like any hub checkpoint."""
    path = tmp_path_factory.mktemp("random_tiny")
    tokenizer = build_tokenizer()
    new_model(tokenizer, seed=0).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def sampled(model_dir):
    """Completions sampled by generate (top_k=0: true sampling) with their raw logits."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    torch.manual_seed(0)
    enc = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    out = model.generate(
        **enc,
        do_sample=True,
        top_k=0,
        max_new_tokens=10,
        min_new_tokens=10,  # no row ends early, so every step's logits belong to every row
        pad_token_id=tokenizer.pad_token_id,
        return_dict_in_generate=True,
        output_logits=True,
    )
    tokens = out.sequences[:, enc["input_ids"].shape[1] :]
    logp = torch.log_softmax(torch.stack(out.logits, dim=1).float(), dim=-1)
    reference = -(logp.exp() * logp).sum(-1)  # [batch, steps]
    return model, tokenizer, tokens.tolist(), reference


def _teacher_forced(model, tokenizer, completions, chunk_size, padding_side="right"):
    """token_entropies on prompt + completion rows, padded on the given side."""
    rows = [tokenizer(p)["input_ids"] + c for p, c in zip(PROMPTS, completions, strict=True)]
    starts = [len(tokenizer(p)["input_ids"]) for p in PROMPTS]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    completion = torch.zeros((len(rows), width), dtype=torch.bool)
    for r, (row, start) in enumerate(zip(rows, starts, strict=True)):
        offset = width - len(row) if padding_side == "left" else 0
        ids[r, offset : offset + len(row)] = torch.tensor(row)
        attention[r, offset : offset + len(row)] = 1
        completion[r, offset + start : offset + len(row)] = True
    return token_entropies(model, ids, attention, completion, chunk_size)


def _kept(tokenizer, completions: list[list[int]]) -> pa.Table:
    return pa.table(
        {
            "question_id": ["q0", "q1"],
            "sample_index": pa.array([0, 0], pa.int32()),
            "prompt": PROMPTS,
            "completion": [tokenizer.decode(c) for c in completions],
            "token_ids": pa.array(completions, pa.list_(pa.int32())),
        }
    )


def test_teacher_forced_entropy_matches_generate_logits(sampled):
    model, tokenizer, tokens, reference = sampled
    found = _teacher_forced(model, tokenizer, tokens, chunk_size=7)
    for row, expected in zip(found, reference, strict=True):
        assert row.shape == expected.shape
        torch.testing.assert_close(row, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("chunk_size", [1, 3, 1000])
def test_chunking_does_not_change_entropies(sampled, chunk_size):
    model, tokenizer, tokens, _ = sampled
    whole = _teacher_forced(model, tokenizer, tokens, chunk_size=10_000)
    for a, b in zip(_teacher_forced(model, tokenizer, tokens, chunk_size), whole, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_padding_does_not_change_entropies(sampled, padding_side):
    model, tokenizer, tokens, _ = sampled
    # Different completion lengths force padding; each row alone has none.
    completions = [tokens[0][:4], tokens[1]]
    batched = _teacher_forced(model, tokenizer, completions, 5, padding_side)
    for r, completion in enumerate(completions):
        alone = token_entropies(
            model,
            *_single(tokenizer, PROMPTS[r], completion),
            chunk_size=5,
        )[0]
        torch.testing.assert_close(batched[r], alone, atol=1e-5, rtol=0)


def _single(tokenizer, prompt, completion):
    ids = tokenizer(prompt)["input_ids"] + completion
    mask = torch.zeros((1, len(ids)), dtype=torch.bool)
    mask[0, len(ids) - len(completion) :] = True
    return torch.tensor([ids]), torch.ones((1, len(ids)), dtype=torch.long), mask


def test_entropy_scores_rows_details_and_batch_invariance(model_dir, sampled):
    _, tokenizer, tokens, reference = sampled
    completions = [tokens[0][:6], tokens[1]]
    kept = _kept(tokenizer, completions)
    one_by_one = entropy_scores(kept, model_dir, EntropyConfig(batch_size=1, chunk_size=4))
    batched = entropy_scores(kept, model_dir, EntropyConfig(batch_size=2, chunk_size=64))
    assert one_by_one.schema == SCORES_SCHEMA
    assert one_by_one.column("signal").to_pylist() == ["entropy", "entropy"]
    for a, b in zip(one_by_one.to_pylist(), batched.to_pylist(), strict=True):
        assert a["score"] == pytest.approx(b["score"], abs=1e-5)

    details = json.loads(one_by_one.column("details")[1].as_py())
    expected = reference[1].double()
    assert details["n_tokens"] == 10
    assert details["mean"] == pytest.approx(expected.mean().item(), abs=1e-5)
    assert details["min"] == pytest.approx(expected.min().item(), abs=1e-5)
    assert details["max"] == pytest.approx(expected.max().item(), abs=1e-5)
    assert details["tail"] == pytest.approx(expected.max().item(), abs=1e-5)  # top 10% of 10
    # Lower entropy is better by default: the score is the negated mean.
    assert one_by_one.column("score")[1].as_py() == pytest.approx(-details["mean"])
    assert one_by_one.column("raw_score")[1].as_py() == pytest.approx(details["mean"])


def test_direction_flips_the_sign(model_dir, sampled):
    _, tokenizer, tokens, _ = sampled
    kept = _kept(tokenizer, tokens)
    lower = entropy_scores(kept, model_dir, EntropyConfig(direction="lower_is_better"))
    higher = entropy_scores(kept, model_dir, EntropyConfig(direction="higher_is_better"))
    assert higher.column("score").to_pylist() == pytest.approx(
        [-s for s in lower.column("score").to_pylist()]
    )
    assert higher.column("raw_score").to_pylist() == lower.column("raw_score").to_pylist()


def test_empty_kept_table_gives_an_empty_scores_table(model_dir):
    empty = _kept(build_tokenizer(), [[5], [6]]).slice(0, 0)
    table = entropy_scores(empty, model_dir)
    assert table.num_rows == 0 and table.schema == SCORES_SCHEMA


@pytest.mark.parametrize(
    "field, value",
    [("direction", "down"), ("chunk_size", 0), ("dtype", "float8"), ("tail_fraction", 0.0)],
)
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ConfigError) as err:
        EntropyConfig(**{field: value})
    assert err.value.field == field
