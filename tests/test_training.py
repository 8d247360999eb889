"""Training runs on a tiny random-init Qwen3: weighted-SFT parity with SFTTrainer, DPO, LoRA, resume."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
import torch

from satk8s.errors import ConfigError, DataError
from satk8s.training import TrainConfig, resolve, train

PAIRS = [(1, 2), (3, 4), (5, 1), (2, 2), (7, 1), (4, 4), (6, 3), (8, 1)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A random-init tiny Qwen3 and its tokenizer, saved like any hub checkpoint."""
    from satk8s.tiny.model import new_model
    from satk8s.tiny.tokenizer import build_tokenizer

    path = tmp_path_factory.mktemp("tiny-random")
    tokenizer = build_tokenizer()
    new_model(tokenizer, seed=0).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def sft_table(weights: list[float] | None = None) -> pa.Table:
    rows = [
        {
            "prompt": f"Question: {a}+{b}\nAnswer:",
            "completion": f" {a}+{b}={a + b}\n#### {a + b}",
            "question_id": f"q{i}",
            "sample_index": 0,
            "weight": 1.0 if weights is None else weights[i],
        }
        for i, (a, b) in enumerate(PAIRS)
    ]
    return pa.Table.from_pylist(rows)


def dpo_table() -> pa.Table:
    rows = [
        {
            "prompt": f"Question: {a}+{b}\nAnswer:",
            "chosen": f" {a}+{b}={a + b}\n#### {a + b}",
            "rejected": f" {a}+{b}={a + b + 1}\n#### {a + b + 1}",
            "question_id": f"q{i}",
            "chosen_index": 0,
            "rejected_index": 1,
            "margin": 1.0,
        }
        for i, (a, b) in enumerate(PAIRS[:4])
    ]
    return pa.Table.from_pylist(rows)


def config(**kw) -> TrainConfig:
    defaults = dict(
        max_steps=3,
        per_device_batch_size=4,
        learning_rate=1e-3,
        logging_steps=1,
        save_steps=100,
        device="cpu",
    )
    return TrainConfig(**{**defaults, **kw})


def first_batch_loss(model_dir: str, table: pa.Table) -> float:
    """SFT loss by hand over the whole table: sum(weight * token NLL) / completion tokens (+ eos)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    total, tokens = 0.0, 0
    for row in table.to_pylist():
        prompt_ids = tokenizer(row["prompt"])["input_ids"]
        ids = tokenizer(row["prompt"] + row["completion"] + tokenizer.eos_token)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, :-1]
        nll = torch.nn.functional.cross_entropy(logits, torch.tensor(ids[1:]), reduction="none")
        completion_nll = nll[len(prompt_ids) - 1 :]  # predictions of the completion tokens
        total += row["weight"] * completion_nll.sum().item()
        tokens += len(completion_nll)
    return total / tokens


# ----------------------------------------------------------------------------- weighted SFT


@pytest.mark.slow
def test_weighted_sft_with_unit_weights_reproduces_sft_losses_exactly(model_dir, tmp_path):
    sft = train(sft_table(), model_dir, tmp_path / "sft", config(algorithm="sft"))
    weighted = train(sft_table(), model_dir, tmp_path / "w", config(algorithm="weighted_sft"))
    assert len(sft["losses"]) == 3
    assert weighted["losses"] == pytest.approx(sft["losses"], abs=1e-6)
    assert weighted["tokens_seen"] == sft["tokens_seen"] > 0


@pytest.mark.slow
def test_weighted_sft_with_unit_weights_and_packing_reproduces_packed_sft(model_dir, tmp_path):
    # About 35 tokens an example: three or four share each 128-token row.
    packed = dict(packing=True, max_length=128, per_device_batch_size=1)
    sft = train(sft_table(), model_dir, tmp_path / "sft", config(algorithm="sft", **packed))
    weighted = train(
        sft_table(), model_dir, tmp_path / "w", config(algorithm="weighted_sft", **packed)
    )
    assert weighted["examples"] == len(PAIRS) and weighted["rows"] < len(
        PAIRS
    )  # rows really were packed
    assert weighted["losses"] == pytest.approx(sft["losses"], abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("packing", [False, True])
def test_weighted_sft_first_loss_is_the_weighted_token_mean(model_dir, tmp_path, packing):
    weights = [2.0, 0.0, 1.5, 0.5, 1.0, 3.0, 0.0, 0.0]
    table = sft_table(weights)
    # One batch (one packed row) holds every example, so the first loss covers the whole table.
    batch = dict(packing=True, max_length=512, per_device_batch_size=1) if packing else {}
    run = train(
        table,
        model_dir,
        tmp_path / "w",
        config(algorithm="weighted_sft", max_steps=1, **{"per_device_batch_size": 8, **batch}),
    )
    unweighted = first_batch_loss(model_dir, sft_table())
    assert run["losses"][0] == pytest.approx(first_batch_loss(model_dir, table), abs=1e-5)
    assert abs(run["losses"][0] - unweighted) > 1e-3  # the weights do change the loss


# ----------------------------------------------------------------------------- DPO, LoRA, resume


@pytest.mark.slow
def test_a_short_dpo_run_lowers_the_dpo_loss(model_dir, tmp_path):
    run = train(
        dpo_table(), model_dir, tmp_path / "dpo", config(algorithm="dpo", learning_rate=5e-3)
    )
    losses = run["losses"]
    assert len(losses) == 3
    assert losses[0] == pytest.approx(0.6931, abs=1e-3)  # policy == reference: -log sigmoid(0)
    assert losses[-1] < losses[0]
    assert (tmp_path / "dpo" / "model" / "model.safetensors").is_file()


@pytest.mark.slow
def test_a_lora_run_saves_a_plain_merged_checkpoint(model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    run = train(
        sft_table(),
        model_dir,
        tmp_path / "lora",
        config(lora=True, lora_r=4, lora_alpha=8, learning_rate=1e-2),
    )
    saved = Path(run["model_dir"])
    assert not (saved / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(saved)
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    assert not any("lora" in name for name in merged.state_dict())
    q_merged = merged.model.layers[0].self_attn.q_proj.weight
    q_base = base.model.layers[0].self_attn.q_proj.weight
    assert not torch.equal(q_merged, q_base)  # the adapter's update is in the weights
    torch.testing.assert_close(
        merged.model.embed_tokens.weight, base.model.embed_tokens.weight
    )  # untargeted weights are the base model's


@pytest.mark.slow
def test_an_interrupted_run_resumes_from_its_last_complete_checkpoint(model_dir, tmp_path):
    out = tmp_path / "run"
    keep_two = {"save_steps": 2, "save_total_limit": 2}
    first = train(sft_table(), model_dir, out, config(max_steps=4, **keep_two))
    assert first["resumed_from"] is None and first["steps"] == 4
    assert sorted(p.name for p in (out / "checkpoints").glob("checkpoint-*")) == [
        "checkpoint-2",
        "checkpoint-4",
    ]
    # A preemption during step 3 or 4: checkpoint-4 never finished writing.
    (out / "checkpoints" / "checkpoint-4" / "trainer_state.json").unlink()
    resumed = train(sft_table(), model_dir, out, config(max_steps=4, **keep_two))
    assert resumed["resumed_from"] == "checkpoint-2"
    assert resumed["steps"] == 4
    assert len(resumed["losses"]) == 4  # steps 1-2 from the checkpoint's log, 3-4 from this run
    assert resumed["losses"][:2] == pytest.approx(first["losses"][:2], abs=1e-6)
    # Steps 3-4 are the same batches from the same state: resuming changes nothing.
    assert resumed["losses"][2:4] == pytest.approx(first["losses"][2:4], abs=1e-5)


@pytest.mark.slow
def test_a_checkpoint_of_another_config_is_never_resumed_from(model_dir, tmp_path):
    out = tmp_path / "run"
    keep_two = {"save_steps": 2, "save_total_limit": 2}
    train(sft_table(), model_dir, out, config(max_steps=4, **keep_two))
    (out / "checkpoints" / "checkpoint-4" / "trainer_state.json").unlink()
    with pytest.raises(ConfigError, match="learning_rate: 0.001 -> 0.002") as err:
        train(sft_table(), model_dir, out, config(max_steps=4, learning_rate=2e-3, **keep_two))
    assert "checkpoint-2" in str(err.value)


@pytest.mark.slow
def test_resuming_a_finished_run_trains_no_more_steps(model_dir, tmp_path):
    """The last step (3) is not a multiple of save_steps: the final checkpoint is the end of
    training, and the model saved from it is the uninterrupted run's, bit for bit."""
    out = tmp_path / "run"
    settings = config(max_steps=3, save_steps=2, lr_scheduler_type="constant")
    first = train(sft_table(), model_dir, out, settings)
    weights = (out / "model" / "model.safetensors").read_bytes()
    shutil.rmtree(out / "model")
    again = train(sft_table(), model_dir, out, settings)
    assert again["resumed_from"] == "checkpoint-3" and again["steps"] == 3
    assert again["losses"] == first["losses"]
    assert not (out / "checkpoints" / "checkpoint-4").exists()
    assert (out / "model" / "model.safetensors").read_bytes() == weights


@pytest.mark.slow
def test_a_finished_lora_run_is_saved_from_its_final_adapter(model_dir, tmp_path):
    out = tmp_path / "run"
    settings = config(max_steps=3, save_steps=2, lora=True, lora_r=4, lora_alpha=8)
    train(sft_table(), model_dir, out, settings)
    weights = (out / "model" / "model.safetensors").read_bytes()
    shutil.rmtree(out / "model")
    again = train(sft_table(), model_dir, out, settings)
    assert again["resumed_from"] == "checkpoint-3" and again["steps"] == 3
    assert (out / "model" / "model.safetensors").read_bytes() == weights


# ----------------------------------------------------------------------------- config errors


def test_a_bad_training_set_fails_before_any_model_loads(tmp_path):
    with pytest.raises(DataError, match="no rows"):
        train(sft_table().slice(0, 0), "/nonexistent/model", tmp_path, config())


def test_chat_template_on_a_tokenizer_without_one_is_a_config_error(model_dir, tmp_path):
    with pytest.raises(ConfigError, match="chat_template"):
        train(sft_table(), model_dir, tmp_path, config(chat_template=True))


@pytest.mark.slow
def test_chat_template_wraps_prompt_and_completion_in_the_tokenizers_template(model_dir, tmp_path):
    from transformers import AutoTokenizer

    chat_dir = tmp_path / "chat-model"
    shutil.copytree(model_dir, chat_dir)
    tokenizer = AutoTokenizer.from_pretrained(chat_dir)
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    tokenizer.save_pretrained(chat_dir)
    run = train(
        sft_table(), str(chat_dir), tmp_path / "run", config(chat_template=True, max_steps=1)
    )
    assert run["steps"] == 1 and math.isfinite(run["final_loss"])


def test_auto_settings_on_cpu_turn_off_bf16_and_checkpointing():
    settings = resolve(TrainConfig(device="cpu"))
    assert (settings.device, settings.bf16, settings.gradient_checkpointing) == (
        "cpu",
        False,
        False,
    )
    assert settings.attn_implementation == "sdpa"
    with pytest.raises(ConfigError, match="bf16"):
        resolve(TrainConfig(device="cpu", bf16=True))


@pytest.mark.parametrize(
    ("field", "value"),
    [("algorithm", "ppo"), ("max_steps", 0), ("learning_rate", 0.0), ("device", "tpu"),
     ("bf16", "yes"), ("dpo_loss_type", "kto"), ("per_device_batch_size", 0)],
)  # fmt: skip
def test_train_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**{field: value})


def test_packing_is_refused_for_dpo():
    with pytest.raises(ConfigError, match="packing"):
        TrainConfig(algorithm="dpo", packing=True)
