"""Character-level, lower-cased tokenizer with BERT's special tokens, built from the training split.

The study's BERT tokenizer splits Chinese into characters and drops whitespace; a character
vocabulary built from the data is the from-scratch equivalent (and what bert4keras' `keep_tokens`
reduces a BERT vocabulary to).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable

from .. import fileio
from ..errors import UserError
from .base import SPECIALS, Tokenizer

VOCAB = "vocab.txt"


def normalize(text: str) -> list[str]:
    """The characters the model sees: lower-cased, whitespace dropped."""
    return [c for c in text.lower() if not c.isspace()]


class CharTokenizer(Tokenizer):
    name = "char"
    files = (VOCAB,)

    def __init__(self, tokens: list[str]):
        if tokens[: len(SPECIALS)] != SPECIALS:
            raise ValueError(f"vocabulary must start with {SPECIALS}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("vocabulary has repeated tokens")
        self.tokens = list(tokens)
        self.index = {t: i for i, t in enumerate(tokens)}
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = range(len(SPECIALS))

    @classmethod
    def build(cls, texts: Iterable[str], min_freq: int = 1) -> "CharTokenizer":
        counts = Counter(c for t in texts for c in normalize(t))
        # Most frequent first, ties by code point, so the same data always gives the same ids.
        chars = sorted((c for c, n in counts.items() if n >= min_freq), key=lambda c: (-counts[c], c))
        return cls(SPECIALS + [c for c in chars if c not in SPECIALS])

    def encode(self, text: str) -> list[int]:
        unk = self.unk_id
        return [self.index.get(c, unk) for c in normalize(text)]

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.tokens[i] for i in self.until_sep(ids) if i >= len(SPECIALS))

    def save(self, run_dir: str | Path) -> None:
        fileio.write_text(Path(run_dir) / VOCAB, "\n".join(self.tokens) + "\n")

    @classmethod
    def load(cls, run_dir: str | Path) -> "CharTokenizer":
        path = Path(run_dir) / VOCAB
        tokens = fileio.read_text(path, "vocabulary file").split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()
        try:
            return cls(tokens)
        except ValueError as e:
            raise UserError(f"{path}: {e}") from None
