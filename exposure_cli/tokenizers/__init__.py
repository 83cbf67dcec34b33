"""Tokenizers side by side, registered by name: `char` (built from the training split, for models
trained from scratch) and `wordpiece` (a BERT checkpoint's vocab.txt, for pretrained models)."""

from ..registry import Registry
from .base import SPECIALS, Tokenizer  # noqa: F401
from .char import CharTokenizer, normalize  # noqa: F401

TOKENIZERS: Registry[type[Tokenizer]] = Registry("tokenizer", Tokenizer, family="tokenizers")
TOKENIZERS.add("char", CharTokenizer)
TOKENIZERS.add("wordpiece", "exposure_cli.tokenizers.wordpiece:WordPieceTokenizer")
