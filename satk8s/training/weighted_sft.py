"""Weighted SFT: TRL's SFTTrainer with a per-example weight on the loss (TRL has none).

The loss is SFTTrainer's own token-level mean with every token's loss scaled by its example's
weight:

    loss = sum_t(w_t * nll_t) / n_tokens

where n_tokens is SFTTrainer's own count (the batch's label tokens, or `num_items_in_batch`
across gradient accumulation). With every weight 1 this IS SFTTrainer's loss, bit for bit;
longer solutions weigh more, exactly as in plain SFT.

How the weight travels: the `weight` column becomes a per-token `token_weights` column right
after TRL tokenizes (so it survives truncation and packing like the labels do), is kept past
`remove_unused_columns`, padded by a collator wrapper the same way as the labels, and multiplies
the per-token log-probabilities the fused LM head returns, so the rest of SFTTrainer's loss code
(normalisation, metrics) runs unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from datasets import Dataset
from trl import SFTTrainer
from trl.data_utils import pack_dataset

WEIGHT_COLUMN = "weight"
TOKEN_WEIGHTS = "token_weights"


class WeightedCollator:
    """Wraps TRL's collator and adds `token_weights`, laid out exactly like `input_ids`."""

    def __init__(self, inner: Callable[[list[dict[str, Any]]], dict[str, Any]], padding_free: bool):
        self.inner = inner
        self.padding_free = padding_free

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.inner(examples)  # TRL's collator ignores keys it does not know
        weights = [torch.tensor(e[TOKEN_WEIGHTS], dtype=torch.float32) for e in examples]
        if self.padding_free:
            weights = [torch.cat(weights)]  # one flattened row, like the collator's input_ids
        width = batch["input_ids"].shape[1]
        padded = torch.zeros(len(weights), width)  # padding carries weight 0 (and label -100)
        for row, w in enumerate(weights):
            padded[row, : len(w)] = w
        batch[TOKEN_WEIGHTS] = padded
        return batch


class WeightedSFTTrainer(SFTTrainer):
    """SFTTrainer whose loss weights each example by its dataset's `weight` column.

    Takes the same arguments as SFTTrainer. The train dataset must be plain text
    (prompt/completion or text) with a numeric `weight` column; `loss_type` must be "nll" and
    no `compute_loss_func` or label smoothing may be set (they bypass the weighted path).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.args.loss_type != "nll" or self.compute_loss_func or self.label_smoother:
            raise ValueError(
                "WeightedSFTTrainer weights the plain NLL loss only: set loss_type='nll' and no "
                "compute_loss_func or label_smoothing_factor"
            )
        # Set after SFTTrainer.__init__: it refuses any custom collator when padding-free.
        self.data_collator = WeightedCollator(self.data_collator, self.padding_free)

    def _prepare_dataset(
        self,
        dataset: Dataset,
        processing_class: Any,
        args: Any,
        packing: bool,
        formatting_func: Callable[[dict], str] | None,
        dataset_name: str,
    ) -> Dataset:
        if WEIGHT_COLUMN not in dataset.column_names:
            raise ValueError(f"the {dataset_name} dataset has no {WEIGHT_COLUMN!r} column")
        # TRL's preparation without packing (tokenize, labels, truncation), then per-token
        # weights, then TRL's own packing, which carries every list column along.
        dataset = super()._prepare_dataset(
            dataset, processing_class, args, False, formatting_func, dataset_name
        )
        dataset = dataset.map(
            lambda ex: {TOKEN_WEIGHTS: [float(ex[WEIGHT_COLUMN])] * len(ex["input_ids"])},
            desc=f"Adding token weights to {dataset_name} dataset",
        )
        if packing:
            dataset = dataset.select_columns(["input_ids", "labels", TOKEN_WEIGHTS])
            map_kwargs = {"num_proc": args.dataset_num_proc}
            dataset = pack_dataset(dataset, args.max_length, args.packing_strategy, map_kwargs)
            if args.shuffle_dataset:
                dataset = dataset.shuffle(seed=args.seed)
        return dataset

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if TOKEN_WEIGHTS not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, TOKEN_WEIGHTS]

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> Any:
        token_weights = inputs.pop(TOKEN_WEIGHTS)

        def weighted_model(**kwargs: Any) -> Any:
            outputs = model(**kwargs)
            if kwargs.get("fused_lm_head"):
                # log_probs[:, t] scores the label at t + 1 (the fused head shifts by one).
                weights = token_weights[:, 1:].to(outputs.log_probs.device, outputs.log_probs.dtype)
                outputs.log_probs = outputs.log_probs * weights
            return outputs

        # SFTTrainer computes loss = -sum(log_probs) / n_tokens from what the model returns;
        # handing it the weighted log-probs makes that sum the weighted one.
        return super().compute_loss(weighted_model, inputs, return_outputs, num_items_in_batch)
