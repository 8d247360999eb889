"""Bad input fails with an error naming the field, file or line, before any model is loaded."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from satk8s.config import build_config
from satk8s.errors import ConfigError, DataError
from satk8s.steps import GenerateConfig, PrepareConfig
from satk8s.steps.generate import generate
from satk8s.steps.prepare import prepare


@pytest.fixture(autouse=True)
def no_model_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to load a model here is itself a failure: errors must come first."""

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(sys.modules["satk8s.steps.generate"], "load_backend", forbidden)


def test_unknown_task_name_names_the_field() -> None:
    with pytest.raises(ConfigError, match="'task'.*unknown task 'arithmetic'.*arith, gsm8k"):
        PrepareConfig(task="arithmetic")


def test_sample_count_below_one_names_the_field() -> None:
    with pytest.raises(ConfigError, match="'sampling.n'.*at least 1"):
        build_config(GenerateConfig, ["model=m", "sampling.n=0"])


def test_negative_temperature_names_the_field() -> None:
    with pytest.raises(ConfigError, match="'sampling.temperature'.*>= 0"):
        build_config(GenerateConfig, ["model=m", "sampling.temperature=-0.5"])


def test_wrong_type_names_the_dotted_field() -> None:
    with pytest.raises(ConfigError, match="'sampling.n'.*could not be converted"):
        build_config(GenerateConfig, ["model=m", "sampling.n=many"])


def test_unknown_field_is_named() -> None:
    with pytest.raises(ConfigError, match="'sampling.temprature'"):
        build_config(GenerateConfig, ["model=m", "sampling.temprature=1"])


def test_missing_gsm8k_file_names_the_file(tmp_path: Path) -> None:
    config = PrepareConfig(task="gsm8k", gsm8k_path=str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="nowhere"):
        prepare(str(tmp_path / "out"), config)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_malformed_gsm8k_line_names_file_and_line(tmp_path: Path) -> None:
    good = json.dumps({"question": "1+1?", "answer": "1+1=2\n#### 2"})
    (tmp_path / "train.jsonl").write_text(f"{good}\n{good}\n{{not json\n")
    (tmp_path / "test.jsonl").write_text(f"{good}\n")
    with pytest.raises(DataError, match=r"train\.jsonl, line 3"):
        prepare(str(tmp_path / "out"), PrepareConfig(task="gsm8k", gsm8k_path=str(tmp_path)))


def test_missing_model_directory_fails_before_loading(tmp_path: Path) -> None:
    questions = str(tmp_path / "q")
    prepare(questions, PrepareConfig(task="arith"))
    config = GenerateConfig(model=str(tmp_path / "no-such-model"))
    with pytest.raises(DataError, match="no-such-model.*does not exist"):
        generate(questions, str(tmp_path / "samples"), config)


def local_model(tmp_path: Path) -> str:
    """A checkpoint directory as far as the checks before loading go."""
    (tmp_path / "m").mkdir(exist_ok=True)
    (tmp_path / "m" / "config.json").write_text('{"model_type": "qwen3"}')
    return str(tmp_path / "m")


def test_unfinished_input_is_refused(tmp_path: Path) -> None:
    (tmp_path / "q").mkdir()
    with pytest.raises(DataError, match="not a finished step output"):
        generate(
            str(tmp_path / "q"), str(tmp_path / "s"), GenerateConfig(model=local_model(tmp_path))
        )


def test_unknown_split_lists_the_splits_present(tmp_path: Path) -> None:
    questions = str(tmp_path / "q")
    prepare(questions, PrepareConfig(task="arith"))
    with pytest.raises(DataError, match=r"no split 'dev'.*eval_hard.*train"):
        config = GenerateConfig(model=local_model(tmp_path), split="dev")
        generate(questions, str(tmp_path / "s"), config)
