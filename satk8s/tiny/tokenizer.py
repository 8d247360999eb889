"""The tiny model's tokenizer: one token per character, built with the `tokenizers` library.

One token per character keeps every digit its own token (arithmetic is learnable by a model
this small) and makes every single-character judge label ("A", "B") exactly one token.
"""

from __future__ import annotations

import string

from tokenizers import Tokenizer, decoders, models
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = {
    "pad_token": "<pad>",
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
}
# Printable ASCII (letters, digits, punctuation, space, newline): enough for prompts and judge
# templates; anything else maps to <unk>.
CHARACTERS = [c for c in string.printable if c not in "\t\r\x0b\x0c"]


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A character-level tokenizer that `AutoTokenizer.from_pretrained` loads after saving."""
    specials = list(SPECIAL_TOKENS.values())
    vocab = {tok: i for i, tok in enumerate(specials + CHARACTERS)}
    # BPE with no merges splits any text into single characters and keeps spaces and newlines.
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=SPECIAL_TOKENS["unk_token"]))
    core.decoder = decoders.Fuse()
    # Left padding: batched generation appends to the right end of every prompt.
    return PreTrainedTokenizerFast(tokenizer_object=core, padding_side="left", **SPECIAL_TOKENS)
