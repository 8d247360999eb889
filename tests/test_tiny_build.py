"""The tiny model builder: batches, schedule, a short real build, determinism, atomic output."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from satk8s.errors import ConfigError
from satk8s.tasks.arith import solution_for
from satk8s.tiny import TinyBuildConfig, build_or_reuse, build_tiny_model
from satk8s.tiny import build as build_module
from satk8s.tiny.build import (
    SHIPPED,
    SUMMARY_FILE,
    code_fingerprint,
    config_hash,
    is_finished,
    lr_at,
    recipe,
    sample_batch,
)
from satk8s.tiny.measure import measure_judge, measure_level
from satk8s.tiny.tokenizer import build_tokenizer
from satk8s.tiny.world import bare_value, solution, style_of

# A smoke build: enough steps to exercise the loop, far too few to learn arithmetic.
SHORT = TinyBuildConfig(steps=30, batch_size=16, warmup=5, measure_count=0)


def test_batch_labels_cover_exactly_the_completion_and_eos():
    tokenizer = build_tokenizer()
    styles = TinyBuildConfig().styles
    batch = sample_batch(random.Random(0), tokenizer, 64, {"easy": 1.0, "add2": 1.0}, styles)
    seen = set()
    for ids, labels in zip(batch["input_ids"], batch["labels"], strict=True):
        text = tokenizer.decode(ids[labels != -100][:-1])
        prompt = tokenizer.decode(ids[labels == -100], skip_special_tokens=True)
        assert prompt.startswith("Question: ") and prompt.endswith("\nAnswer:")
        expression = prompt.removeprefix("Question: ").removesuffix("\nAnswer:")
        style = style_of(text)
        seen.add(style)
        if style == "filler":
            assert text.endswith(f"\n#### {bare_value(expression)}")
        else:
            assert text == " " + solution(expression, style, random.Random())
        assert labels[labels != -100][-1] == tokenizer.eos_token_id
    assert seen == {"shown", "bare", "filler"}


def test_a_level_without_style_shares_is_written_as_shown_work():
    tokenizer = build_tokenizer()
    batch = sample_batch(random.Random(0), tokenizer, 8, {"hard": 1.0})
    for ids, labels in zip(batch["input_ids"], batch["labels"], strict=True):
        prompt = tokenizer.decode(ids[labels == -100], skip_special_tokens=True)
        expression = prompt.removeprefix("Question: ").removesuffix("\nAnswer:")
        text = tokenizer.decode(ids[labels != -100][:-1])
        assert text == " Work:\n" + solution_for(expression)


def test_learning_rate_warms_up_then_decays_linearly_to_zero():
    config = TinyBuildConfig(steps=100, warmup=10, lr=1e-2)
    rates = [lr_at(step, config) for step in range(config.steps)]
    assert rates[0] == pytest.approx(1e-3)
    assert rates[9] == pytest.approx(1e-2) == max(rates)
    assert rates[10:] == sorted(rates[10:], reverse=True)
    assert rates[-1] == pytest.approx(1e-2 / 90)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"mix": {"expert": 1.0}}, "mix"),
        ({"mix": {"easy": 0.0}}, "mix"),
        ({"steps": 0}, "steps"),
        ({"lr": 0.0}, "lr"),
        ({"easy_warmup_fraction": 1.5}, "easy_warmup_fraction"),
        ({"styles": {"expert": {"shown": 1.0}}}, "styles"),
        ({"styles": {"easy": {"terse": 1.0}}}, "styles.easy"),
        ({"styles": {"easy": {"shown": 0.0}}}, "styles.easy"),
        ({"judge_every": -1}, "judge_every"),
        ({"judge_batch_size": 0}, "judge_batch_size"),
    ],
)
def test_invalid_build_config_names_the_field(kwargs, field):
    with pytest.raises(ConfigError) as info:
        TinyBuildConfig(**kwargs)
    assert info.value.field == field


@pytest.fixture(scope="module")
def short_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("short") / "model"
    return out, build_tiny_model(out, SHORT, progress=False)


def test_short_build_loads_like_a_hub_checkpoint(short_build):
    out, summary = short_build
    assert is_finished(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert type(model).__name__ == "Qwen3ForCausalLM"
    assert tokenizer.padding_side == "left"
    assert tokenizer.decode(tokenizer("Question: 1+2\nAnswer:")["input_ids"]) == (
        "Question: 1+2\nAnswer:"
    )
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id
    recorded = json.loads((out / SUMMARY_FILE).read_text())
    assert recorded["config"]["steps"] == 30
    assert recorded["parameters"] == summary["parameters"] > 100_000
    assert summary["out_dir"] == str(out)


def test_same_seed_gives_identical_weights_and_another_seed_does_not(short_build, tmp_path):
    out, _ = short_build
    build_tiny_model(tmp_path / "again", SHORT, progress=False)
    build_tiny_model(tmp_path / "other", replace(SHORT, seed=1), False)
    first, again, other = (
        AutoModelForCausalLM.from_pretrained(d).state_dict()
        for d in (out, tmp_path / "again", tmp_path / "other")
    )
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first)


def test_measure_level_reports_fractions_and_styles(short_build):
    out, _ = short_build
    result = measure_level(out, "easy", count=4, samples=2, seed=0)
    assert result["count"] == 4 and result["samples"] == 2
    for key in ("greedy_accuracy", "all_samples_correct", "sample_accuracy"):
        assert 0.0 <= result[key] <= 1.0
    assert result["all_samples_correct"] <= result["sample_accuracy"]
    assert sum(result["greedy_styles"].values()) == pytest.approx(1.0)
    assert sum(result["sampled_styles"].values()) == pytest.approx(1.0)


def test_measure_judge_reads_label_mass_and_position_bias(short_build):
    out, _ = short_build
    result = measure_judge(out, count=3, samples=2)
    if result["pairs"]:  # a 30-step model may write the same text twice
        assert 0.0 <= result["label_mass"] <= 1.0
        assert 0.0 <= result["position_bias"] <= 1.0


def test_a_failed_build_leaves_nothing_that_looks_finished(tmp_path, monkeypatch):
    out = tmp_path / "model"
    seen = {}
    real_save = build_module._save

    def save_and_look(model, tokenizer, partial):
        real_save(model, tokenizer, partial)
        seen["out_exists"] = out.exists()
        seen["partial_finished"] = is_finished(partial)
        seen["partial_hidden"] = partial.name.startswith(".")

    def fail(*args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(build_module, "_save", save_and_look)
    monkeypatch.setattr(build_module, "_write_summary", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        build_tiny_model(out, SHORT, progress=False)
    assert seen == {"out_exists": False, "partial_finished": False, "partial_hidden": True}
    assert list(tmp_path.iterdir()) == []  # the partial directory is cleaned up too


def test_build_refuses_a_non_empty_out_dir(tmp_path):
    (tmp_path / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="not empty"):
        build_tiny_model(tmp_path, SHORT, progress=False)


def test_build_or_reuse_builds_once_per_config(tmp_path, monkeypatch):
    target = build_or_reuse(tmp_path, SHORT)
    assert target == tmp_path / config_hash(SHORT) and is_finished(target)

    def no_rebuild(*args, **kwargs):
        raise AssertionError("rebuilt a finished build")

    monkeypatch.setattr(build_module, "build_tiny_model", no_rebuild)
    assert build_or_reuse(tmp_path, SHORT) == target
    assert config_hash(replace(SHORT, seed=1)) != config_hash(SHORT)


def test_code_fingerprint_ignores_docstrings_and_comments_but_not_code():
    source = '''"""Module."""

def f(x):
    """Double it."""
    return 2 * x  # why
'''
    reworded = source.replace("Double it.", "Twice x.").replace("# why", "# because")
    assert code_fingerprint(reworded) == code_fingerprint(source)
    assert code_fingerprint(source.replace("2 * x", "3 * x")) != code_fingerprint(source)
    # A string constant that is code, not a docstring, still counts.
    assert code_fingerprint('x = "a"\n') != code_fingerprint('x = "b"\n')


def test_the_default_recipe_is_the_shipped_checkpoint_without_training(tmp_path, monkeypatch):
    def no_build(*args, **kwargs):
        raise AssertionError("trained although the recipe ships")

    monkeypatch.setattr(build_module, "build_tiny_model", no_build)
    assert build_or_reuse(tmp_path, TinyBuildConfig()) == SHIPPED
    assert list(tmp_path.iterdir()) == []


def test_shipped_false_trains_the_default_recipe_here(tmp_path, monkeypatch):
    built = []

    def fake_build(out_dir, config, progress=True):
        built.append(config)
        out_dir.mkdir(parents=True)
        (out_dir / SUMMARY_FILE).write_text("{}")

    monkeypatch.setattr(build_module, "build_tiny_model", fake_build)
    config = TinyBuildConfig(shipped=False)
    target = build_or_reuse(tmp_path, config)
    assert target != SHIPPED and built == [config]
    # `shipped` says where the weights come from, not how they are trained.
    assert recipe(config) == recipe(TinyBuildConfig())
    assert config_hash(config) == config_hash(TinyBuildConfig())


def test_build_or_reuse_replaces_an_unfinished_directory(tmp_path, monkeypatch):
    stale = tmp_path / config_hash(SHORT)
    stale.mkdir()
    (stale / "model.safetensors").write_text("half written")
    calls = []

    def fake_build(out_dir, config, progress=True):
        calls.append(out_dir)
        out_dir.mkdir()
        (out_dir / SUMMARY_FILE).write_text("{}")

    monkeypatch.setattr(build_module, "build_tiny_model", fake_build)
    assert build_or_reuse(tmp_path, SHORT) == stale
    assert calls == [stale] and not (stale / "model.safetensors").exists()
