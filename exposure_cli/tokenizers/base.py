"""What every tokenizer gives the pipeline: ids with BERT's special tokens, text back from ids, and
the UniLM pair layout `[CLS] source [SEP] target [SEP]` with its segment ids."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Iterable

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


class Tokenizer:
    name: ClassVar[str] = ""
    tokens: list[str]  # id → token
    pad_id: int
    unk_id: int
    cls_id: int
    sep_id: int

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:
        """Text of the ids up to the first [SEP]; special tokens dropped."""
        raise NotImplementedError

    def until_sep(self, ids: Iterable[int]) -> list[int]:
        """The ids before the first [SEP] (all of them without one), as ints: what `decode` reads."""
        out = []
        for i in ids:
            if int(i) == self.sep_id:
                break
            out.append(int(i))
        return out

    files: ClassVar[tuple[str, ...]] = ()  # what `save` writes into a run directory

    @classmethod
    def saved_in(cls, run_dir: Path) -> bool:
        return all((Path(run_dir) / f).is_file() for f in cls.files)

    def save(self, run_dir: Path) -> None:
        raise NotImplementedError

    @classmethod
    def load(cls, run_dir: Path) -> "Tokenizer":
        raise NotImplementedError

    def encode_pair(self, source: str, target: str | None, max_source: int, max_target: int,
                    truncation: str = "fixed", max_len: int | None = None) -> tuple[list[int], list[int]]:
        """[CLS] source [SEP] target [SEP] → (ids, segment ids); target None gives the prompt only.

        `fixed`: the source keeps `max_source` tokens, the target `max_target - 1` and its [SEP].
        `longest_first` (bert4keras' `encode(max_length=max_len)`): while the pair is longer than
        `max_len`, drop the second-to-last token of the longer side, `[CLS] source [SEP]` against
        `target [SEP]` (on a tie the target's, as in bert4keras).
        The prompt alone (target None) is cut to `max_source` tokens in both modes.
        """
        src = self.encode(source)
        if target is None or truncation == "fixed":
            first = [self.cls_id] + src[:max_source] + [self.sep_id]
            if target is None:
                return first, [0] * len(first)
            second = self.encode(target)[: max_target - 1] + [self.sep_id]
        else:
            first = [self.cls_id] + src + [self.sep_id]
            second = self.encode(target) + [self.sep_id]
            while len(first) + len(second) > max_len:
                (first if len(first) > len(second) else second).pop(-2)
        return first + second, [0] * len(first) + [1] * len(second)
