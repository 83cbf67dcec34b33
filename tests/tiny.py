"""Data and a small trained model for tests that need only a few pairs, made here (no shared data):
a copy task whose title is the opening of the content (as CSL's titles mostly draw on an
abstract's first sentences), the content a random walk over 80 CJK characters."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from exposure_cli.batching import collate, encode_examples
from exposure_cli.data import Pair, read_pairs
from exposure_cli.model import ModelConfig, UniLM
from exposure_cli.tokenizers import CharTokenizer

SOURCE, TARGET = 160, 32  # the model's positions: [CLS] 160 [SEP] + 32
ALPHABET = [chr(0x4E00 + 7 * i) for i in range(80)]
# Each character is followed by one of three others (0.6, 0.25, 0.15): the text has a grammar that
# a model learns in a few hundred steps, so its next-token distributions are peaked and depend on
# the prefix it is fed.
_FOLLOW = random.Random(1)
NEXT = {c: _FOLLOW.sample(ALPHABET, 3) for c in ALPHABET}


def synthetic_pairs(n: int, rng: random.Random) -> list[Pair]:
    pairs = []
    for _ in range(n):
        chars = [rng.choice(ALPHABET)]
        for _ in range(rng.randint(20, 200) - 1):
            chars.append(rng.choices(NEXT[chars[-1]], (0.6, 0.25, 0.15))[0])
        content = "".join(chars)
        start, length = rng.randint(0, 3), rng.randint(2, 16)
        pairs.append(Pair(content, content[start:start + length]))
    return pairs


def write_synthetic(out: Path) -> Path:
    """train (2,000), dev (240) and test (60) splits as title<TAB>content files in `out`."""
    rng = random.Random(0)
    for split, n in (("train", 2000), ("dev", 240), ("test", 60)):
        lines = [f"{p.target}\t{p.source}\n" for p in synthetic_pairs(n, rng)]
        (out / f"{split}.tsv").write_text("".join(lines), encoding="utf-8")
    return out


def train_tiny(data: Path, steps: int, **options) -> tuple[UniLM, CharTokenizer]:
    """A 2 × 64 UniLM trained `steps` steps of 16 pairs on the train split: a peaked, non-trivial
    distribution (with `options`, e.g. the copy pointer and pre-LN, as ModelConfig takes them)."""
    train = read_pairs(data / "train.tsv")
    tok = CharTokenizer.build(t for p in train for t in (p.source, p.target))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = UniLM(ModelConfig(vocab_size=len(tok), hidden=64, layers=2, heads=2, max_positions=SOURCE + 2 + TARGET,
                                  dropout=0.0, **options))
        ex = encode_examples(tok, train, SOURCE, TARGET)
        opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
        rng = random.Random(0)
        model.train()
        for _ in range(steps):
            loss = model.target_loss(collate(rng.sample(ex, 16), tok.pad_id))
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    assert loss.item() < 2.0, loss.item()  # learned: a uniform guess over 80 characters is 4.4
    return model.eval(), tok
