"""BERT's WordPiece tokenizer over a checkpoint's vocab.txt, as the study used it.

Tokenizing is Hugging Face `tokenizers`' BERT pipeline (the one `BertTokenizer` builds: clean text,
split CJK characters, lower-case and strip accents, split on whitespace and punctuation, greedy
longest-match WordPiece, a word with no match is one [UNK]). On top of it, the study's two
bert4keras 0.5.8 rules:
- the vocabulary simplification, `load_vocab(simplified=True, startwith=[PAD, UNK, CLS, SEP])`:
  drop every multi-character token holding a CJK character or a punctuation mark (`##` pieces
  judged without their `##`), keep the rest in order; `simplify` returns the kept tokens' rows in
  the checkpoint, which the model's embedding rows and MLM bias are sliced to (`keep_tokens`);
- decoding ids back to text (`decode_tokens`): `##` pieces joined, a space between two Latin or
  digit words, none around CJK characters.
bert4keras itself emits an unmatched character as [UNK] and goes on with the rest of the word;
`tokenizers` makes the whole word one [UNK]. Chinese text never meets the difference (every CJK
character is its own word); a Latin word with a character outside the vocabulary does.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Iterable

from .. import fileio
from ..errors import UserError
from .base import Tokenizer

VOCAB, TOKENIZER_JSON = "vocab.txt", "tokenizer.json"
STARTWITH = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]  # the study's `startwith`: kept first, in this order
SPECIAL_TOKENS = STARTWITH + ["[MASK]"]

# bert4keras 0.5.8 Tokenizer._cjk_punctuation(): no space is kept after these when decoding.
CJK_PUNCTUATION = ("\uff02\uff03\uff04\uff05\uff06\uff07\uff08\uff09\uff0a\uff0b\uff0c\uff0d\uff0f\uff1a\uff1b"
                   "\uff1c\uff1d\uff1e\uff20\uff3b\uff3c\uff3d\uff3e\uff3f\uff40\uff5b\uff5c\uff5d\uff5e\uff5f"
                   "\uff60\uff62\uff63\uff64\u3000\u3001\u3003\u3008\u3009\u300a\u300b\u300c\u300d\u300e\u300f"
                   "\u3010\u3011\u3014\u3015\u3016\u3017\u3018\u3019\u301a\u301b\u301c\u301d\u301e\u301f\u3030"
                   "\u303e\u303f\u2013\u2014\u2018\u2019\u201b\u201c\u201d\u201e\u201f\u2026\u2027\ufe4f\ufe51"
                   "\ufe54\xb7\uff01\uff1f\uff61\u3002")
_NO_SPACE_AFTER = re.compile("(%s) " % "|".join(re.escape(p) for p in CJK_PUNCTUATION + "+-/={(<["))


def is_cjk(ch: str) -> bool:
    """bert4keras' `_is_cjk_character`: the CJK Unified Ideographs blocks and their extensions."""
    code = ord(ch)
    return (0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0x20000 <= code <= 0x2A6DF
            or 0x2A700 <= code <= 0x2B73F or 0x2B740 <= code <= 0x2B81F or 0x2B820 <= code <= 0x2CEAF
            or 0xF900 <= code <= 0xFAFF or 0x2F800 <= code <= 0x2FA1F)


def is_punctuation(ch: str) -> bool:
    """bert4keras' `_is_punctuation`: ASCII symbols and Unicode's P* categories."""
    code = ord(ch)
    return (33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126
            or unicodedata.category(ch).startswith("P"))


def read_vocab(path: Path) -> dict[str, int]:
    """token → row of a vocab.txt (one token per line, as BertTokenizer reads it: a repeated token
    keeps its last row)."""
    text = fileio.read_text(path, "BERT vocabulary (vocab.txt)")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return {line.rstrip("\r"): i for i, line in enumerate(lines)}


def simplify(vocab: dict[str, int], startwith: list[str] = STARTWITH) -> list[int]:
    """The rows bert4keras' `load_vocab(simplified=True, startwith=...)` keeps, in the new order."""
    keep = [vocab[t] for t in startwith if t in vocab]
    kept = set(startwith)
    for t, row in sorted(vocab.items(), key=lambda item: item[1]):
        if t in kept:
            continue
        body = t[2:] if t[:2] == "##" else t
        if len(t) > 1 and any(is_cjk(c) or is_punctuation(c) for c in body):
            continue
        keep.append(row)
    return keep


def decode_tokens(tokens: list[str]) -> str:
    """bert4keras 0.5.8 `Tokenizer.decode` of tokens (special tokens are dropped first)."""
    tokens = [t for t in tokens if not (t[:1] == "[" and t[-1:] == "]")]
    text = ""
    for i, token in enumerate(tokens):
        if token[:2] == "##":
            text += token[2:]
        elif len(token) == 1 and is_cjk(token):
            text += token
        elif len(token) == 1 and is_punctuation(token):
            text += token + " "
        elif i > 0 and text and is_cjk(text[-1]):
            text += token
        else:
            text += " " + token
    text = re.sub(" +", " ", text)
    text = re.sub("' (re|m|s|t|ve|d|ll) ", "'\\1 ", text)
    text = _NO_SPACE_AFTER.sub("\\1", text)
    text = re.sub(r"(\d\.) (\d)", "\\1\\2", text)
    return text.strip()


def hf_tokenizer(tokens: list[str]):
    """The `tokenizers` pipeline BertTokenizer(do_lower_case=True) builds, over `tokens`, with the
    UniLM pair layout as its post-processor ([CLS] A [SEP] B [SEP], segments 0 then 1)."""
    try:
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, normalizers, pre_tokenizers, processors
        from tokenizers.models import WordPiece
    except ImportError:
        raise UserError("the wordpiece tokenizer (model.init: pretrained) needs the `tokenizers` package: "
                        "pip install 'exposure[pretrained]'") from None

    vocab = {t: i for i, t in enumerate(tokens)}
    tok = HFTokenizer(WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                                lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.add_special_tokens([t for t in SPECIAL_TOKENS if t in vocab])
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return tok


class WordPieceTokenizer(Tokenizer):
    name = "wordpiece"
    files = (VOCAB, TOKENIZER_JSON)

    def __init__(self, tokens: list[str], where: str = VOCAB):
        if len(set(tokens)) != len(tokens):
            raise UserError(f"{where}: the vocabulary repeats a token")
        missing = [t for t in STARTWITH if t not in tokens]
        if missing:
            raise UserError(f"{where}: the vocabulary has no {missing[0]} token (BERT's {', '.join(STARTWITH)} "
                            "are needed)")
        self.tokens = list(tokens)
        self.index = {t: i for i, t in enumerate(tokens)}
        self.pad_id, self.unk_id, self.cls_id, self.sep_id = (self.index[t] for t in STARTWITH)
        self.hf = hf_tokenizer(self.tokens)

    @classmethod
    def from_checkpoint(cls, vocab_path: Path, simplified: bool) -> tuple["WordPieceTokenizer", list[int]]:
        """The tokenizer over a checkpoint's vocab.txt, and the checkpoint rows of its tokens."""
        vocab = read_vocab(vocab_path)
        keep = simplify(vocab) if simplified else sorted(vocab.values())
        by_row = {row: t for t, row in vocab.items()}
        return cls([by_row[r] for r in keep], str(vocab_path)), keep

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int]) -> str:
        """The text of the ids up to the first [SEP], by bert4keras 0.5.8's rule."""
        return decode_tokens([self.tokens[i] for i in self.until_sep(ids)])

    def save(self, run_dir: str | Path) -> None:
        run_dir = Path(run_dir)
        fileio.write_text(run_dir / VOCAB, "".join(t + "\n" for t in self.tokens))
        fileio.write_text(run_dir / TOKENIZER_JSON, self.hf.to_str(pretty=True) + "\n")

    @classmethod
    def load(cls, run_dir: str | Path) -> "WordPieceTokenizer":
        """From a run directory's vocab.txt (the kept vocabulary); tokenizer.json must agree with it."""
        run_dir = Path(run_dir)
        tokens = fileio.read_text(run_dir / VOCAB, "vocabulary file").split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()
        tok = cls(tokens, str(run_dir / VOCAB))
        saved = fileio.read_json(run_dir / TOKENIZER_JSON, "tokenizer file")
        if not isinstance(saved, dict) or saved.get("model", {}).get("vocab") != tok.index:
            raise UserError(f"{run_dir / TOKENIZER_JSON}: its vocabulary is not the one in {VOCAB}")
        return tok
