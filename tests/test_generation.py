"""Generation: the hf backend's samples, the vLLM output mapping, and resumable Parquet shards."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest
import torch

from satk8s.errors import ConfigError, DataError
from satk8s.generation import (
    SAMPLES_SCHEMA,
    SamplingConfig,
    generate_sharded,
    load_backend,
    read_samples,
    samples_to_table,
)
from satk8s.generation.base import cut_at_stop
from satk8s.generation.hf import HFBackend, _Row
from satk8s.generation.vllm import to_sample
from satk8s.tasks.base import STOP_STRINGS, Question, format_prompt
from satk8s.tiny.model import new_model
from satk8s.tiny.tokenizer import build_tokenizer

PROMPTS = [
    ("q1", format_prompt("3 + 4")),
    ("q2", format_prompt("12 - 30")),
    ("q3", format_prompt("7 * 8 + 2")),
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny matmuls on a shared 2-core machine are ~100x slower with 2 contending threads.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A random-init tiny Qwen3 and its tokenizer, saved like any hub checkpoint."""
    path = tmp_path_factory.mktemp("tiny-random")
    tokenizer = build_tokenizer()
    new_model(tokenizer, seed=0).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def backend(model_dir) -> HFBackend:
    return load_backend("hf", str(model_dir), device="cpu", dtype="float32")


def sampled(**overrides) -> SamplingConfig:
    return SamplingConfig(**({"n": 3, "max_new_tokens": 12} | overrides))


# --- the hf backend ---------------------------------------------------------------------------


def test_each_prompt_gets_n_samples_with_one_logprob_per_token(backend):
    samples = backend.generate(PROMPTS, sampled(), seed=0)

    assert [(s.question_id, s.sample_index) for s in samples] == [
        (qid, j) for qid, _ in PROMPTS for j in range(3)
    ]
    for s in samples:
        assert s.prompt == dict(PROMPTS)[s.question_id]
        assert 1 <= len(s.token_ids) <= 12
        assert len(s.token_logprobs) == len(s.token_ids)
        assert all(lp <= 0 for lp in s.token_logprobs)
        assert s.finish_reason in ("stop", "length")


def test_logprobs_are_raw_log_softmax_of_a_teacher_forced_pass(backend):
    # Temperature and top-k change what is sampled, not the logprobs reported (raw, as vLLM).
    samples = backend.generate(PROMPTS[:2], sampled(temperature=0.7, top_k=5), seed=3)
    tok, model = backend.tokenizer, backend.model
    for s in samples:
        prompt_ids = tok(s.prompt).input_ids
        ids = torch.tensor([prompt_ids + s.token_ids])
        with torch.inference_mode():
            logits = model(ids).logits[0, len(prompt_ids) - 1 : -1]
        expected = torch.log_softmax(logits.float(), -1).gather(1, ids[0, len(prompt_ids) :, None])
        torch.testing.assert_close(
            torch.tensor(s.token_logprobs), expected.squeeze(1), atol=1e-4, rtol=0
        )


def test_same_seed_gives_identical_samples_and_another_seed_differs(backend):
    first = backend.generate(PROMPTS, sampled(), seed=7)
    again = backend.generate(PROMPTS, sampled(), seed=7)
    other = backend.generate(PROMPTS, sampled(), seed=8)

    assert first == again
    assert [s.token_ids for s in first] != [s.token_ids for s in other]


def test_samples_do_not_depend_on_batch_size_or_prompt_order(model_dir, backend):
    one_row_batches = HFBackend(str(model_dir), device="cpu", dtype="float32", batch_size=1)

    batched = backend.generate(PROMPTS, sampled(), seed=5)
    alone = one_row_batches.generate(PROMPTS, sampled(), seed=5)
    reversed_order = backend.generate(PROMPTS[::-1], sampled(), seed=5)

    assert [s.token_ids for s in alone] == [s.token_ids for s in batched]
    key = lambda s: (s.question_id, s.sample_index)  # noqa: E731
    assert sorted(reversed_order, key=key) == sorted(batched, key=key)


def test_the_checkpoints_own_generation_defaults_do_not_change_samples(model_dir, tmp_path):
    # An instruct checkpoint ships e.g. repetition_penalty and top_k in generation_config.json;
    # only SamplingConfig may shape the distribution (as with explicit vLLM SamplingParams).
    plain = HFBackend(str(model_dir), device="cpu", dtype="float32")
    opinionated = HFBackend(str(model_dir), device="cpu", dtype="float32")
    defaults = opinionated.model.generation_config
    defaults.repetition_penalty, defaults.no_repeat_ngram_size, defaults.min_new_tokens = 5.0, 2, 5
    defaults.do_sample, defaults.top_k, defaults.temperature = True, 3, 0.3

    for config in (sampled(), sampled(temperature=0.0, n=1)):
        assert opinionated.generate(PROMPTS, config, seed=0) == plain.generate(
            PROMPTS, config, seed=0
        )


def test_greedy_gives_n_identical_samples(backend):
    samples = backend.generate(PROMPTS[:1], sampled(temperature=0.0, n=4), seed=0)

    assert len({tuple(s.token_ids) for s in samples}) == 1
    assert samples == backend.generate(PROMPTS[:1], sampled(temperature=0.0, n=4), seed=99)


def test_left_padding_does_not_change_a_short_prompt_greedy_output(backend):
    greedy = sampled(temperature=0.0, n=1, max_new_tokens=16)
    short = ("short", "Question: 1 + 1\nAnswer:")
    long_prompts = [("long1", format_prompt("1 + 2 + 3 + 4 + 5 + 6 + 7 + 8")), ("long2", "x" * 60)]

    alone = backend.generate([short], greedy, seed=0)[0]
    in_batch = backend.generate([*long_prompts, short], greedy, seed=0)[-1]

    assert in_batch.token_ids == alone.token_ids
    assert in_batch.completion == alone.completion
    torch.testing.assert_close(in_batch.token_logprobs, alone.token_logprobs, atol=1e-4, rtol=0)


def test_hitting_max_new_tokens_finishes_with_length(backend):
    samples = backend.generate(PROMPTS, sampled(temperature=0.0, n=1, max_new_tokens=3), seed=0)

    for s in samples:
        assert s.finish_reason == "length"
        assert len(s.token_ids) == 3


def _free_run(backend) -> tuple[object, int]:
    """A sampled completion of 12 single-character tokens (no eos or other special token)
    generated with no stop strings, and its seed."""
    for seed in range(20):
        free = backend.generate(PROMPTS[:1], sampled(n=1, stop=()), seed=seed)[0]
        if len(free.completion) == len(free.token_ids) == 12:
            return free, seed
    raise AssertionError("no seed gave 12 plain characters")


def test_generation_stops_at_a_stop_string_which_the_completion_excludes(backend):
    free, seed = _free_run(backend)
    # Characters 5..7 of the free run as a stop string: the same sample must stop there.
    stop = free.completion[5:8]
    cut = free.completion.find(stop)

    s = backend.generate(PROMPTS[:1], sampled(n=1, stop=(stop,)), seed=seed)[0]

    assert s.completion == free.completion[:cut]
    assert s.finish_reason == "stop"
    # The kept tokens run through the stop string (as vLLM's token_ids do).
    assert s.token_ids == free.token_ids[: cut + len(stop)]
    assert s.token_logprobs == free.token_logprobs[: cut + len(stop)]


def test_a_stop_string_spanning_the_prompt_end_does_not_stop_generation(backend):
    free, seed = _free_run(backend)
    # transformers' own stop_strings would match the prompt's last character plus two
    # generated ones and end the sample there; only generated text may match.
    stop = PROMPTS[0][1][-1] + free.completion[:2]
    assert stop not in free.completion

    s = backend.generate(PROMPTS[:1], sampled(n=1, stop=(stop,)), seed=seed)[0]

    assert s == free


def test_a_row_is_cut_after_eos_and_the_padding_dropped(backend):
    tok = backend.tokenizer
    ids = tok(" 7").input_ids + [tok.eos_token_id, tok.pad_token_id, tok.pad_token_id]
    row = _Row("q", "Question: 3 + 4\nAnswer:", 0)

    s = backend._to_sample(row, ids, [-0.5] * len(ids), STOP_STRINGS)

    assert (s.completion, s.finish_reason) == (" 7", "stop")
    assert s.token_ids == ids[:3]
    assert s.token_logprobs == [-0.5] * 3


def test_text_is_cut_at_the_earliest_stop_string():
    text = " 3 + 4 = 7 #### 7\n\nQuestion: 1 + 1\nAnswer: 2"
    assert cut_at_stop(text, STOP_STRINGS) == (" 3 + 4 = 7 #### 7", True)
    assert cut_at_stop(" 7", STOP_STRINGS) == (" 7", False)


# --- config and backend choice ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("n", 0), ("temperature", -1.0), ("top_p", 0.0), ("top_k", -1), ("max_new_tokens", 0)],
)
def test_bad_sampling_values_name_the_field(field, value):
    with pytest.raises(ConfigError) as err:
        SamplingConfig(**{field: value})
    assert err.value.field == field
    assert f"'{field}'" in str(err.value)


def test_sampling_config_json_is_stable_and_sorted():
    config = SamplingConfig(n=16, stop=["\nQuestion:"])
    assert config.stop == ("\nQuestion:",)
    assert config.to_json() == SamplingConfig(n=16, stop=("\nQuestion:",)).to_json()
    assert list(config.to_dict()) != sorted(config.to_dict())  # declaration order...
    assert config.to_json().startswith('{"max_new_tokens": 256, "n": 16')  # ...sorted in JSON


def test_unknown_backend_lists_the_choices():
    with pytest.raises(ConfigError, match="unknown backend 'tgi'; choose one of: hf, vllm"):
        load_backend("tgi", "some/model")


# --- the vllm backend (mapping only: vLLM cannot run here) ------------------------------------


def _logprob(value: float) -> SimpleNamespace:
    return SimpleNamespace(logprob=value, rank=1, decoded_token=None)


def test_a_vllm_completion_maps_to_a_sample():
    completion = SimpleNamespace(
        index=2,
        text=" 3 + 4 = 7 #### 7",
        token_ids=[11, 12, 2],
        logprobs=[{11: _logprob(-0.1)}, {12: _logprob(-0.2)}, {2: _logprob(-0.3)}],
        finish_reason="stop",
    )

    s = to_sample("q1", "Question: 3 + 4\nAnswer:", completion, STOP_STRINGS)

    assert (s.question_id, s.sample_index, s.finish_reason) == ("q1", 2, "stop")
    assert s.completion == " 3 + 4 = 7 #### 7"
    assert (s.token_ids, s.token_logprobs) == ([11, 12, 2], [-0.1, -0.2, -0.3])


def test_an_aborted_vllm_completion_is_an_error():
    aborted = SimpleNamespace(index=0, text="", token_ids=[], logprobs=[], finish_reason="abort")
    with pytest.raises(RuntimeError, match="abort"):
        to_sample("q1", "p", aborted, STOP_STRINGS)


def test_importing_generation_does_not_import_vllm(tmp_path):
    # A `vllm` that fails on import: the package and the vllm module must never touch it.
    (tmp_path / "vllm.py").write_text("raise ImportError('vllm was imported')\n")
    code = "import satk8s.generation, satk8s.generation.vllm; print('ok')"
    env = {"PYTHONPATH": f"{tmp_path}:{Path(__file__).parents[1]}"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert result.stdout.strip() == "ok", result.stderr


# --- shards -----------------------------------------------------------------------------------


class CountingBackend:
    """Wraps a backend and records the question ids of every generate call."""

    def __init__(self, inner: HFBackend) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.calls: list[list[str]] = []

    def generate(self, prompts, sampling, seed):
        self.calls.append([qid for qid, _ in prompts])
        return self.inner.generate(prompts, sampling, seed)


def _questions(k: int) -> list[Question]:
    return [
        Question(f"q{i}", f"{i} + {i}", str(2 * i), f" {i} + {i} = {2 * i} #### {2 * i}")
        for i in range(k)
    ]


def test_a_resumed_run_regenerates_only_the_missing_shard_and_equals_a_full_run(backend, tmp_path):
    questions = _questions(5)
    prompts = [format_prompt(q.question) for q in questions]
    config = sampled(n=2, max_new_tokens=6)

    full = generate_sharded(
        backend, questions, prompts, config, tmp_path, shard_size=2, progress=False
    )
    before = read_samples(tmp_path)
    (tmp_path / "shard-00002.parquet").unlink()
    (tmp_path / ".shard-00002.parquet.999.tmp").write_bytes(b"PAR1 half a shard")  # killed run
    counting = CountingBackend(backend)
    resumed = generate_sharded(
        counting, questions, prompts, config, tmp_path, shard_size=2, progress=False
    )

    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "shard-00000.parquet",
        "shard-00001.parquet",
        "shard-00002.parquet",
    ]
    assert counting.calls == [["q4"]]
    assert (full["shards_written"], full["shards_skipped"]) == (3, 0)
    assert (resumed["shards_written"], resumed["shards_skipped"]) == (1, 2)
    assert resumed["questions"] == 5 and resumed["samples"] == 10 == full["samples"]
    assert resumed["tokens"] == full["tokens"]
    assert read_samples(tmp_path).equals(before)


def test_resuming_with_another_sampling_config_is_refused(backend, tmp_path):
    questions = _questions(2)
    prompts = [format_prompt(q.question) for q in questions]
    generate_sharded(
        backend, questions, prompts, sampled(n=1, max_new_tokens=4), tmp_path, progress=False
    )

    with pytest.raises(DataError, match="another sampling config"):
        generate_sharded(
            backend, questions, prompts, sampled(n=2, max_new_tokens=4), tmp_path, progress=False
        )


def test_samples_round_trip_through_parquet_in_the_schema(backend, tmp_path):
    config = sampled(n=2, max_new_tokens=5)
    samples = backend.generate(PROMPTS[:2], config, seed=0)
    table = samples_to_table(samples, backend.model_id, config)
    pq.write_table(table, tmp_path / "one.parquet")

    back = read_samples(tmp_path / "one.parquet")

    assert back.schema == SAMPLES_SCHEMA
    assert back.column("token_ids").to_pylist() == [s.token_ids for s in samples]
    assert back.column("sampling_config").to_pylist() == [config.to_json()] * 4
    lps = back.column("token_logprobs").to_pylist()
    assert lps[0] == pytest.approx(samples[0].token_logprobs, abs=1e-6)  # stored as float32


def test_reading_a_directory_without_shards_says_what_to_do(tmp_path):
    with pytest.raises(DataError, match="run the generate step first"):
        read_samples(tmp_path)
