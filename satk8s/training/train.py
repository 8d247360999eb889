"""Train a model on one training set with TRL (step 7): SFT, weighted SFT or DPO, full or LoRA.

`train` validates the set before loading anything, picks the trainer by algorithm

- sft, best_of_n -> trl.SFTTrainer (loss on the completion only),
- weighted_sft   -> WeightedSFTTrainer (per-example weights),
- dpo            -> trl.DPOTrainer with the reference log-probs precomputed from the starting
                    model before the first step, so no second model stays in memory,

checkpoints every `save_steps` (and at the last step) to `out_dir/checkpoints/checkpoint-N`,
resumes from the last complete checkpoint when one exists (a preempted pod picks up where it
stopped), and saves the final model and tokenizer to `out_dir/model` as a plain Hugging Face
checkpoint in the training dtype (bf16 safetensors when training in bf16), without optimizer
state. A LoRA run merges its adapter into the base weights first, so evaluation never needs
peft.

Resume is exact in every crash window:
- each checkpoint carries the identity of the run that wrote it (`satk8s-run.json`: config,
  dataset and model); a checkpoint of another run is refused, never continued from;
- a complete final checkpoint (its global step is the run's last) is the end of training, not
  a place to continue from: its weights are the final model, saved without another step, so a
  run killed after its last checkpoint (or before its manifest) ends bit-identical to an
  uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from satk8s.errors import ConfigError
from satk8s.training.datasets import ALGORITHMS, REQUIRED_COLUMNS, validate_training_set

if TYPE_CHECKING:
    import torch
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

# torch, transformers, datasets and TRL are imported where used: the configs and the
# checkpoint helper stay cheap to import (pipeline compilation, config validation).

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
MODEL = "model"
RUN_FILE = "satk8s-run.json"
"""In every checkpoint: the identity of the run that wrote it."""
DPO_LOSS_TYPES = (
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard",
    "aot", "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm",
)  # fmt: skip
AUTO = "auto"
OPTIMIZERS = {
    "adamw": "adamw_torch",
    "adamw_8bit": "adamw_bnb_8bit",
    "paged_adamw_8bit": "paged_adamw_8bit",
}
"""`optimizer` -> transformers' `optim`. The 8-bit ones are bitsandbytes' (CUDA only)."""
WEIGHT_DTYPES = (AUTO, "float32", "bfloat16")


@dataclass(frozen=True)
class TrainConfig:
    """One training run. "auto" fields are resolved against the machine (see `resolve`)."""

    algorithm: str = "sft"
    """"sft" or "best_of_n" (SFTTrainer), "weighted_sft" (WeightedSFTTrainer), "dpo" (DPOTrainer).
    Must match the training set's algorithm."""
    learning_rate: float = 1e-5
    """Peak learning rate (AdamW)."""
    lr_scheduler_type: str = "linear"
    """A transformers scheduler name ("linear", "cosine", "constant", ...)."""
    warmup_steps: int = 0
    """Steps of linear warm-up from 0 to `learning_rate`."""
    max_steps: int = -1
    """Optimizer steps in all; -1 trains for `num_train_epochs` instead."""
    num_train_epochs: float = 1.0
    """Passes over the training set when `max_steps` is -1."""
    per_device_batch_size: int = 8
    """Examples (DPO: pairs) per device per micro-batch."""
    gradient_accumulation_steps: int = 1
    """Micro-batches per optimizer step."""
    max_length: int = 1024
    """Longest tokenized prompt + completion; longer ones are cut at the end. With packing, the
    length of a packed row."""
    packing: bool = False
    """SFT family: pack several examples into each row of `max_length` tokens (best-fit,
    padding-free; attention stays within each example). Not available for DPO. Only pays with
    flash-attention's variable-length kernels: under sdpa or eager a packed batch gets one
    dense block-diagonal mask, quadratic in the whole batch (0.6x the unpacked speed on CPU,
    see benchmarks/train.py)."""
    lora: bool = False
    """Train a LoRA adapter instead of every weight; merged into the saved model at the end."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA scaling numerator (the update is scaled by lora_alpha / lora_r)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA branch."""
    # Any: OmegaConf cannot type a union of a string and a tuple; checked in __post_init__.
    target_modules: Any = "all-linear"
    """Modules that get an adapter: "all-linear" (every linear layer but the LM head, any
    architecture) or module names such as ("q_proj", "v_proj")."""
    dpo_beta: float = 0.1
    """DPO: strength of the KL constraint to the reference (starting) model."""
    dpo_loss_type: str = "sigmoid"
    """DPO: TRL loss type; "sigmoid" is the original DPO loss."""
    chat_template: bool = False
    """Wrap prompt and completion in the tokenizer's chat template (user / assistant turns).
    Off for base models, whose prompts are plain text; a tokenizer without a template is a
    ConfigError."""
    seed: int = 0
    """Seeds model-side randomness (LoRA init, dropout) and the data order."""
    logging_steps: int = 10
    """Optimizer steps between logged losses."""
    save_steps: int = 500
    """Optimizer steps between checkpoints (and one at the end)."""
    save_total_limit: int | None = 1
    """Checkpoints kept on disk (oldest removed first); None keeps every one. Resume needs only
    the newest complete one: the trainer writes the next checkpoint before it removes the last."""
    device: str = AUTO
    """"auto" (CUDA when available, else CPU), "cpu" or "cuda"."""
    bf16: bool | str = AUTO
    """bf16 mixed precision. "auto": on exactly when training on a CUDA GPU that supports bf16;
    on an older GPU (T4, V100) "auto" trains in fp16 mixed precision instead, and true is
    refused."""
    optimizer: str = "adamw"
    """"adamw" (torch's AdamW: 8 bytes of state per trained weight), "adamw_8bit" or
    "paged_adamw_8bit" (bitsandbytes: 2 bytes; CUDA only, in the GPU image)."""
    weights_dtype: str = AUTO
    """Dtype the weights are loaded and trained in. "auto": float32 master weights for full
    fine-tuning (with bf16/fp16 mixed precision on a GPU), and a bf16 (fp16 before Ampere)
    frozen base for LoRA on a GPU. "bfloat16" halves full fine-tuning's weights, gradients and
    AdamW state (8 instead of 16 bytes per weight) at the cost of updates smaller than bf16's
    precision; bf16 GPUs only."""
    gradient_checkpointing: bool | str = AUTO
    """Recompute activations in the backward pass (less memory, ~20% slower). "auto": on on a
    GPU (TRL's default), off on CPU."""
    attn_implementation: str = AUTO
    """"auto": flash_attention_2 on a GPU when the flash-attn package is installed, else sdpa
    (sdpa also on CPU: faster than eager and it honours packed-sequence boundaries). Or any
    transformers value ("eager", "sdpa", "flash_attention_2")."""

    def __post_init__(self) -> None:
        targets = self.target_modules
        if not isinstance(targets, str):
            targets = tuple(targets) if isinstance(targets, list | tuple) else None
            if not targets or not all(isinstance(t, str) and t for t in targets):
                raise ConfigError(
                    "target_modules",
                    f"must be 'all-linear' or a list of module names, got {self.target_modules!r}",
                )
            object.__setattr__(self, "target_modules", targets)
        if self.algorithm not in ALGORITHMS:
            raise ConfigError(
                "algorithm", f"must be one of {', '.join(ALGORITHMS)}; got {self.algorithm!r}"
            )
        for name in ("per_device_batch_size", "gradient_accumulation_steps", "max_length",
                     "logging_steps", "save_steps", "lora_r", "lora_alpha"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ConfigError(name, f"must be at least 1, got {getattr(self, name)}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ConfigError(
                "learning_rate", f"must be a positive number, got {self.learning_rate}"
            )
        if self.max_steps == 0 or self.max_steps < -1:
            raise ConfigError("max_steps", f"must be >= 1, or -1 for epochs; got {self.max_steps}")
        if self.max_steps == -1 and not self.num_train_epochs > 0:
            raise ConfigError("num_train_epochs", f"must be positive, got {self.num_train_epochs}")
        if self.warmup_steps < 0:
            raise ConfigError("warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError("lora_dropout", f"must be in [0, 1), got {self.lora_dropout}")
        if self.dpo_beta <= 0:
            raise ConfigError("dpo_beta", f"must be positive, got {self.dpo_beta}")
        if self.dpo_loss_type not in DPO_LOSS_TYPES:
            raise ConfigError("dpo_loss_type", f"must be one of {', '.join(DPO_LOSS_TYPES)}")
        if self.packing and self.algorithm == "dpo":
            raise ConfigError(
                "packing", "TRL's DPOTrainer does not pack; set packing=False for dpo"
            )
        if self.device not in (AUTO, "cpu", "cuda"):
            raise ConfigError("device", f"must be 'auto', 'cpu' or 'cuda'; got {self.device!r}")
        for name in ("bf16", "gradient_checkpointing"):
            if getattr(self, name) not in (AUTO, True, False):
                raise ConfigError(
                    name, f"must be 'auto', true or false; got {getattr(self, name)!r}"
                )
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError("optimizer", f"must be one of {', '.join(OPTIMIZERS)}")
        if self.weights_dtype not in WEIGHT_DTYPES:
            raise ConfigError("weights_dtype", f"must be one of {', '.join(WEIGHT_DTYPES)}")
        if self.save_total_limit is not None and self.save_total_limit < 1:
            raise ConfigError(
                "save_total_limit", f"must be at least 1 or None, got {self.save_total_limit}"
            )


@dataclass(frozen=True)
class Resolved:
    """The "auto" settings of a TrainConfig, decided for this machine."""

    device: str
    bf16: bool
    gradient_checkpointing: bool
    attn_implementation: str
    fp16: bool = False
    """fp16 mixed precision: "auto" precision on a GPU without bf16."""
    weights_dtype: str = "float32"


def resolve(config: TrainConfig) -> Resolved:
    """Decide device, precision, checkpointing and attention for this machine."""
    import torch

    cuda = torch.cuda.is_available()
    if config.device == "cuda" and not cuda:
        raise ConfigError(
            "device", "'cuda' asked for but torch sees no CUDA GPU; use 'auto' or 'cpu'"
        )
    device = ("cuda" if cuda else "cpu") if config.device == AUTO else config.device
    on_gpu = device == "cuda"
    # Native bf16 only (Ampere and newer): torch would report emulated bf16 on a T4 or V100.
    bf16_ok = on_gpu and torch.cuda.is_bf16_supported(including_emulation=False)
    if config.bf16 is True and not bf16_ok:
        raise ConfigError(
            "bf16", f"true, but the {device} device here has no bf16 support; use 'auto'"
        )
    bf16 = bf16_ok if config.bf16 == AUTO else bool(config.bf16)
    fp16 = on_gpu and config.bf16 == AUTO and not bf16_ok
    if config.optimizer != "adamw":
        if not on_gpu:
            raise ConfigError(
                "optimizer",
                f"{config.optimizer!r} is bitsandbytes' CUDA optimizer and this run is on "
                f"{device}; use 'adamw' (or train on a GPU)",
            )
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise ConfigError(
                "optimizer",
                f"{config.optimizer!r} needs bitsandbytes: the GPU image has it "
                "(pip install 'satk8s[gpu]')",
            ) from None
    dtype = config.weights_dtype
    if dtype == "bfloat16" and not bf16_ok:
        raise ConfigError(
            "weights_dtype", f"bfloat16 needs a GPU with bf16 ({device} here has none)"
        )
    if dtype == AUTO:
        half = "bfloat16" if bf16_ok else "float16"
        dtype = half if config.lora and on_gpu else "float32"
    checkpointing = (
        on_gpu if config.gradient_checkpointing == AUTO else bool(config.gradient_checkpointing)
    )
    attn = config.attn_implementation
    if attn == AUTO:
        from transformers.utils import is_flash_attn_2_available

        attn = "flash_attention_2" if on_gpu and is_flash_attn_2_available() else "sdpa"
    return Resolved(device, bf16, checkpointing, attn, fp16, dtype)


def last_checkpoint(checkpoints: Path) -> Path | None:
    """The highest-step complete checkpoint under `checkpoints`, or None.

    Complete means trainer_state.json is there: transformers writes it after the weights,
    optimizer and RNG state, so a checkpoint cut short by a preemption is skipped.
    """
    if not checkpoints.is_dir():
        return None
    found = [
        (int(m.group(1)), p)
        for p in checkpoints.iterdir()
        if (m := re.fullmatch(r"checkpoint-(\d+)", p.name)) and (p / "trainer_state.json").is_file()
    ]
    return max(found)[1] if found else None


def is_final_checkpoint(checkpoint: Path) -> bool:
    """Whether a complete checkpoint is its run's last step (training ended there)."""
    try:
        state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return 0 < int(state.get("max_steps") or 0) <= int(state.get("global_step") or 0)


def check_resumable(checkpoint: Path, run_identity: dict[str, Any]) -> None:
    """Refuse a checkpoint written by a run of another identity (config, dataset, model)."""
    from satk8s.store.identity import differences

    try:
        written_by = json.loads((Path(checkpoint) / RUN_FILE).read_text())
    except (OSError, ValueError):
        log.warning("%s records no run identity; resuming from it unchecked", checkpoint)
        return
    if diffs := differences(written_by, run_identity):
        shown = "; ".join(diffs[:8])
        raise ConfigError(
            "train",
            f"{checkpoint.name} in {checkpoint.parent} was written by a run of another config "
            f"({shown}); resume only continues the same run. Use another output location, or "
            "force the step to start over",
        )


def train(
    dataset: pa.Table,
    model_dir: str,
    out_dir: Path,
    config: TrainConfig,
    on_checkpoint: Callable[[Path], None] | None = None,
    run_identity: dict[str, Any] | None = None,
    trainer_args: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train the model in `model_dir` on `dataset`; returns a summary of the run.

    `on_checkpoint` is called with each checkpoint directory once it is fully written (the
    train step commits it to the store there, so a restarted pod resumes from it).
    `run_identity` (the train step's identity: config, dataset and model) is written into
    every checkpoint and checked before resuming from one; by default, the config alone.
    `trainer_args` override TrainingArguments (`satk8s.training.distributed.trainer_args`:
    the per-process batch and FSDP under torchrun). Under torchrun only global rank 0 writes:
    checkpoint records, `on_checkpoint` and the final model (from the final checkpoint, which
    holds the whole model however it was sharded).

    The summary: steps, losses (one per logging step), final_loss, seconds (the whole call),
    train_seconds (the training loop of this call), tokens_seen
    (non-padding input tokens over the whole run, resumed part included), resumed_from (the
    checkpoint name or None), examples (training-set rows), rows (trainer rows: packed rows
    when packing), model_dir (the saved model) and the resolved settings.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from satk8s.store.identity import plain_config

    validate_training_set(dataset, config.algorithm, source="training set")
    started = time.perf_counter()
    out_dir = Path(out_dir)
    identity = run_identity or {
        "step": "train",
        "config": {"train": plain_config(config)},
        "input_digests": {},
        "models": {},
    }
    resume = last_checkpoint(out_dir / CHECKPOINTS)
    if resume is not None:
        check_resumable(resume, identity)  # before anything heavy is loaded
    settings = resolve(config)
    if config.packing and not settings.attn_implementation.startswith("flash"):
        log.warning(
            "packing with attn_implementation=%s: attention runs over the whole packed batch "
            "under a block-diagonal mask, often slower than no packing",
            settings.attn_implementation,
        )
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    train_dataset = _to_hf(dataset, config, tokenizer)
    model = AutoModelForCausalLM.from_pretrained(
        model_dir,
        dtype=getattr(torch, settings.weights_dtype),
        attn_implementation=settings.attn_implementation,
    )
    reference = None
    shared = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if shared and config.algorithm == "dpo" and not config.lora:
        # TRL caches precomputed reference log-probs in a file that only the main process
        # writes and every rank reads: not there for the others on their own disk. Several
        # processes run the (frozen) reference beside the policy instead, with the same values.
        reference = AutoModelForCausalLM.from_pretrained(
            model_dir,
            dtype=getattr(torch, settings.weights_dtype),
            attn_implementation=settings.attn_implementation,
        )
    trainer = _trainer(
        model,
        tokenizer,
        train_dataset,
        out_dir / CHECKPOINTS,
        config,
        settings,
        trainer_args,
        reference if shared else "precompute",
    )
    trainer.add_callback(_checkpoint_callback(identity, on_checkpoint))
    writer = trainer.is_world_process_zero()

    if resume is not None and is_final_checkpoint(resume):
        # Training ended at this checkpoint: its weights are the final model.
        final = _final_model(trainer, resume, config, model_dir, settings) if writer else None
        state = json.loads((resume / "trainer_state.json").read_text())
        history, steps = state.get("log_history", []), int(state["global_step"])
        tokens, train_seconds = int(state.get("num_input_tokens_seen") or 0), 0.0
        if writer:
            _rotate(out_dir / CHECKPOINTS, config.save_total_limit)
    else:
        output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        if trainer.args.world_size == 1:
            final = trainer.accelerator.unwrap_model(trainer.model)
        elif writer:  # sharded weights: the final checkpoint holds them whole
            final = _final_model(
                trainer, last_checkpoint(out_dir / CHECKPOINTS), config, model_dir, settings
            )
        history, steps = trainer.state.log_history, trainer.state.global_step
        tokens = int(trainer.state.num_input_tokens_seen)
        train_seconds = output.metrics["train_runtime"]  # the training loop of this call
    if writer:
        _save_final(final, tokenizer, out_dir / MODEL, torch.bfloat16 if settings.bf16 else None)

    losses = [entry["loss"] for entry in history if "loss" in entry]
    return {
        "algorithm": config.algorithm,
        "steps": steps,
        "losses": losses,
        "final_loss": losses[-1] if losses else None,
        "seconds": time.perf_counter() - started,
        "train_seconds": train_seconds,
        "tokens_seen": tokens,
        "resumed_from": resume.name if resume else None,
        "examples": dataset.num_rows,
        "rows": trainer.train_dataset.num_rows,  # after TRL's preparation: fewer when packed
        "model_dir": str(out_dir / MODEL),
        "device": settings.device,
        "bf16": settings.bf16,
        "fp16": settings.fp16,
        "weights_dtype": settings.weights_dtype,
        "gradient_checkpointing": settings.gradient_checkpointing,
        "attn_implementation": settings.attn_implementation,
        "world_size": trainer.args.world_size,
        "sharding": "fsdp" if trainer.is_fsdp_enabled else "ddp" if shared else "none",
    }


def _to_hf(table: pa.Table, config: TrainConfig, tokenizer: PreTrainedTokenizerBase) -> Dataset:
    """The columns the trainer reads, as a datasets.Dataset (chat turns when configured)."""
    from datasets import Dataset

    table = table.select(list(REQUIRED_COLUMNS[config.algorithm])).replace_schema_metadata(None)
    if not config.chat_template:
        return Dataset(table)
    if not tokenizer.chat_template:
        raise ConfigError(
            "chat_template", "true, but the model's tokenizer has no chat template; set it to false"
        )
    rows = table.to_pylist()
    for row in rows:
        row["prompt"] = [{"role": "user", "content": row["prompt"]}]
        for key in ("completion", "chosen", "rejected"):
            if key in row:
                row[key] = [{"role": "assistant", "content": row[key].strip()}]
    return Dataset.from_list(rows)


def _checkpoint_callback(
    identity: dict[str, Any], on_checkpoint: Callable[[Path], None] | None
) -> Any:
    from transformers import TrainerCallback

    class CheckpointSaved(TrainerCallback):
        # on_save runs after the checkpoint (weights, optimizer, trainer state) is on disk.
        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if not state.is_world_process_zero:
                return  # the checkpoint is rank 0's
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            (checkpoint / RUN_FILE).write_text(json.dumps(identity, sort_keys=True))
            if on_checkpoint is not None:
                on_checkpoint(checkpoint)

    return CheckpointSaved()


def _final_model(
    trainer: Any, checkpoint: Path, config: TrainConfig, model_dir: str, settings: Resolved
) -> Any:
    """The model as the final checkpoint holds it (for LoRA: the base plus its adapter)."""
    import torch
    from transformers import AutoModelForCausalLM

    if config.lora:
        from peft import PeftModel

        base = AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=torch.float32, attn_implementation=settings.attn_implementation
        )
        return PeftModel.from_pretrained(base, checkpoint)
    return AutoModelForCausalLM.from_pretrained(
        checkpoint, dtype=torch.float32, attn_implementation=settings.attn_implementation
    )


def _rotate(checkpoints: Path, limit: int | None) -> None:
    """Keep the newest `limit` checkpoints, as the trainer does after each save."""
    found = sorted(
        (int(m.group(1)), p)
        for p in checkpoints.iterdir()
        if (m := re.fullmatch(r"checkpoint-(\d+)", p.name))
    )
    for _, path in found[:-limit] if limit else []:
        shutil.rmtree(path, ignore_errors=True)


def _trainer(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    dataset: Dataset,
    checkpoints: Path,
    config: TrainConfig,
    settings: Resolved,
    trainer_args: dict[str, Any] | None = None,
    reference: Any = "precompute",
) -> Any:
    """`reference` (DPO): "precompute" the reference log-probs once before the first step, or
    a model to run beside the policy (None with LoRA: the policy with its adapter off)."""
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    from satk8s.training.weighted_sft import WeightedSFTTrainer

    common = dict(
        output_dir=str(checkpoints),
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=config.warmup_steps,
        max_steps=config.max_steps,
        num_train_epochs=config.num_train_epochs,
        per_device_train_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        max_length=config.max_length,
        seed=config.seed,
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        use_cpu=settings.device == "cpu",
        bf16=settings.bf16,
        fp16=settings.fp16,
        optim=OPTIMIZERS[config.optimizer],
        gradient_checkpointing=settings.gradient_checkpointing,
        report_to=[],
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=True,
    )
    common.update(trainer_args or {})
    peft_config = _lora_config(config) if config.lora else None
    if config.algorithm == "dpo":
        args = DPOConfig(
            **common,
            beta=config.dpo_beta,
            loss_type=[config.dpo_loss_type],
            # Reference log-probs come from the starting model, computed once before the first
            # step (and again, identically, on resume): no second model in memory, and no
            # reload by name (an in-memory model has none).
            precompute_ref_log_probs=reference == "precompute",
        )
        return DPOTrainer(
            model=model,
            ref_model=None if isinstance(reference, str) else reference,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
        )
    args = SFTConfig(**common, packing=config.packing)
    trainer_class = WeightedSFTTrainer if config.algorithm == "weighted_sft" else SFTTrainer
    return trainer_class(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
    )


def _lora_config(config: TrainConfig) -> Any:
    from peft import LoraConfig

    targets = config.target_modules
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets if isinstance(targets, str) else list(targets),
        task_type="CAUSAL_LM",
    )


def _save_final(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    model_dir: Path,
    dtype: torch.dtype | None = None,
) -> None:
    """Save a plain checkpoint (LoRA merged in, weights only, in `dtype` when given: the
    training dtype of a bf16 run rather than its float32 master weights), written aside and
    renamed so it is never half there."""
    if hasattr(model, "merge_and_unload"):  # a peft model
        model = model.merge_and_unload()
    if dtype is not None:
        model = model.to(dtype)
    staging = model_dir.with_name(model_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    shutil.rmtree(model_dir, ignore_errors=True)
    staging.rename(model_dir)
