"""What fits a GPU: the memory estimate behind the README's table, the compile-time refusal that
names what would fit, and the precision a GPU without bf16 gets (fp16, or a clear refusal)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from satk8s.cluster.gpus import catalogue
from satk8s.errors import ConfigError
from satk8s.grid import load_plan
from satk8s.grid.cost import (
    MODELS,
    STATE_BYTES,
    TRAIN_BYTES_PER_PARAM,
    fit_options,
    fit_table,
    lora_params,
    train_memory,
)
from satk8s.training.train import TrainConfig, resolve

REPO = Path(__file__).resolve().parents[1]
QWEN = {name: MODELS[f"Qwen/Qwen3-{name}"] for name in ("1.7B-Base", "8B", "32B")}
TABLE_GPUS = [
    "t4",
    "v100",
    "l4",
    "a10g",
    "a100-40gb",
    "a100-80gb",
    "h100-80gb",
    "h200-141gb",
    "b200",
]


def test_full_fine_tuning_holds_16_bytes_per_weight_plus_activations() -> None:
    shape = QWEN["1.7B-Base"]
    memory = train_memory(shape, micro_batch=1, max_length=1024)
    assert TRAIN_BYTES_PER_PARAM == STATE_BYTES[("float32", "adamw")] == 16
    assert memory.weights_and_states == shape.params * 16 == pytest.approx(27.5e9, rel=0.01)
    # Checkpointed layer inputs (2 bytes), one layer recomputed (34 bytes), fp32 logits.
    tokens = 1024
    expected = 2 * tokens * 2048 * 28 + 34 * tokens * 2048 + 4 * tokens * 151936
    assert memory.activations == expected
    assert train_memory(shape, optimizer="adamw_8bit").weights_and_states == shape.params * 10
    assert train_memory(shape, weights_dtype="bfloat16").weights_and_states == shape.params * 8
    assert train_memory(shape, shards=4).weights_and_states == shape.params * 4


def test_lora_holds_the_bf16_base_and_small_adapters() -> None:
    shape = QWEN["8B"]
    memory = train_memory(shape, lora=True)
    adapters = lora_params(shape, 16)
    assert adapters / shape.params == pytest.approx(0.005, abs=0.003)  # about half a percent
    assert memory.weights_and_states == shape.params * 2 + adapters * 16


@pytest.mark.parametrize(
    ("model", "gpu", "fits", "does_not"),
    [
        ("1.7B-Base", "h100-80gb", ["full", "LoRA"], []),
        ("1.7B-Base", "l4", ["LoRA", "full 8-bit Adam", "FSDP x2"], ["full"]),
        ("1.7B-Base", "t4", ["LoRA"], ["full", "full bf16"]),  # no bf16 on a T4
        ("8B", "h100-80gb", ["LoRA", "FSDP x2"], ["full"]),
        ("32B", "h200-141gb", ["LoRA", "FSDP x4"], ["full"]),
        ("32B", "t4", [], ["LoRA"]),
    ],
)
def test_what_fits_one_gpu_type(model: str, gpu: str, fits: list[str], does_not: list[str]):
    options = fit_options(QWEN[model], catalogue().gpu(gpu))
    assert all(o in options for o in fits), options
    assert not any(o in options for o in does_not), options


def test_the_readme_table_is_the_function_s_output() -> None:
    table = fit_table({f"Qwen3-{k}": v for k, v in QWEN.items()}, TABLE_GPUS)
    assert table in (REPO / "README.md").read_text()


def test_compile_refuses_a_train_profile_that_cannot_hold_the_model_naming_what_fits() -> None:
    with pytest.raises(ConfigError, match="compute.gpu") as refused:
        load_plan("arith", ["compute.gpu=l4"])
    message = str(refused.value)
    assert "Qwen/Qwen3-1.7B-Base full fine-tuning needs about" in message
    assert "train.lora=true" in message
    assert "train.optimizer=adamw_8bit" in message
    assert "compute.train.accelerator_count=2 (FSDP)" in message
    # Each named fix compiles.
    load_plan("arith", ["compute.gpu=l4", "train.lora=true"])
    load_plan("arith", ["compute.gpu=l4", "compute.train.accelerator_count=2"])
    load_plan("arith", ["compute.gpu=h100-80gb"])


def test_compile_refuses_bf16_on_a_gpu_without_it() -> None:
    with pytest.raises(ConfigError, match=r"'train.bf16'.*t4 has no bf16; set train.bf16=auto"):
        load_plan("arith", ["compute.gpu=t4", "train.lora=true"])
    load_plan("arith", ["compute.gpu=t4", "train.lora=true", "train.bf16=auto"])


def test_an_unknown_gpu_type_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown GPU type 'k80'; known: h100-80gb"):
        load_plan("arith", ["compute.gpu=k80"])


# ----------------------------------------------------------------------------- on the machine


@pytest.fixture
def old_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CUDA GPU without native bf16 (a T4 or V100), as torch reports it."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(
        torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation
    )


def _config(**kw: object) -> TrainConfig:
    return TrainConfig(attn_implementation="sdpa", **kw)


def test_a_gpu_without_bf16_trains_in_fp16_under_auto(old_gpu: None) -> None:
    settings = resolve(_config())
    assert (settings.bf16, settings.fp16, settings.weights_dtype) == (False, True, "float32")
    # LoRA's frozen base in fp16 there.
    assert resolve(_config(lora=True)).weights_dtype == "float16"


def test_a_gpu_without_bf16_refuses_bf16_clearly(old_gpu: None) -> None:
    with pytest.raises(ConfigError, match="'bf16'.*no bf16 support; use 'auto'"):
        resolve(_config(bf16=True))
    with pytest.raises(ConfigError, match="'weights_dtype': bfloat16 needs a GPU with bf16"):
        resolve(_config(weights_dtype="bfloat16"))


def test_a_bf16_gpu_gives_lora_a_bf16_base(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert resolve(_config(lora=True)).weights_dtype == "bfloat16"
    assert resolve(_config()).weights_dtype == "float32"  # full: fp32 master weights


def test_the_8bit_optimizers_fail_clearly_on_cpu() -> None:
    for optimizer in ("adamw_8bit", "paged_adamw_8bit"):
        with pytest.raises(ConfigError, match=f"'optimizer': '{optimizer}' is bitsandbytes' CUDA"):
            resolve(_config(device="cpu", optimizer=optimizer))


def test_unknown_optimizer_or_dtype_is_refused_naming_the_field() -> None:
    with pytest.raises(ConfigError, match="'optimizer'"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(ConfigError, match="'weights_dtype'"):
        TrainConfig(weights_dtype="float8")


def test_the_gpu_image_installs_the_8bit_optimizers() -> None:
    dockerfile = (REPO / "images" / "Dockerfile.gpu").read_text()
    assert re.search(r"satk8s-\*\.whl\)\[vllm,gpu\]", dockerfile)
    assert '"bitsandbytes==' in (REPO / "pyproject.toml").read_text()
