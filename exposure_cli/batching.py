"""Examples → padded tensors: UniLM inputs, target-only labels, and an epoch's batches (length-bucketed,
or consecutive slices of a plain shuffle as the study's scripts cut them)."""

from __future__ import annotations

import random
from dataclasses import dataclass, fields

import torch

from .tokenizers import Tokenizer


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, L) [CLS] source [SEP] target [SEP], right-padded
    segment_ids: torch.Tensor  # (B, L) 0 for [CLS] source [SEP] and padding, 1 for target [SEP]
    pad_mask: torch.Tensor  # (B, L) True for real tokens
    labels: torch.Tensor  # (B, L) token t+1 at position t when t+1 is a target position, else -100
    # Facts of the batch found once, when it is built on the host, so that a training step on a GPU
    # never waits to read them back (the labels never change after `collate`; `replace` keeps these):
    n_tokens: int = -1  # real tokens
    target_rows: torch.Tensor | None = None  # (N,) row and column of each target-predicting position
    target_cols: torch.Tensor | None = None  # (N,)  (labels != -100), in row-major order
    target_width: int = -1  # the most target-predicting positions of one row

    def __post_init__(self):
        if self.target_rows is None:
            sel = self.labels != -100
            self.n_tokens = int(self.pad_mask.sum())
            self.target_rows, self.target_cols = sel.nonzero(as_tuple=True)
            self.target_width = int(sel.sum(1).max()) if sel.numel() else 0

    def map(self, fn) -> "Batch":
        """The batch with `fn` applied to each of its tensors (the host-found facts carried along)."""
        return self.replace(**{f.name: fn(getattr(self, f.name)) for f in fields(self)
                               if isinstance(getattr(self, f.name), torch.Tensor)})

    def to(self, device, **kw) -> "Batch":
        return self.map(lambda t: t.to(device, **kw))

    def replace(self, **kw) -> "Batch":
        return Batch(**{f.name: kw.get(f.name, getattr(self, f.name)) for f in fields(self)})

    def target_labels(self) -> torch.Tensor:
        """(N,) the labels of the target-predicting positions (`labels[labels != -100]`, without the host read)."""
        return self.labels[self.target_rows, self.target_cols]


def encode_examples(tok: Tokenizer, pairs, max_source: int, max_target: int, truncation: str = "fixed",
                    max_len: int | None = None):
    """(ids, segment ids) of each (source, target) pair (`Tokenizer.encode_pair` explains truncation)."""
    return [tok.encode_pair(p.source, p.target, max_source, max_target, truncation, max_len) for p in pairs]


def collate(examples, pad_id: int = 0) -> Batch:
    L = max(len(ids) for ids, _ in examples)
    B = len(examples)
    input_ids = torch.full((B, L), pad_id, dtype=torch.long)
    segment_ids = torch.zeros((B, L), dtype=torch.long)
    for i, (ids, seg) in enumerate(examples):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        segment_ids[i, : len(seg)] = torch.tensor(seg)
    pad_mask = torch.arange(L)[None, :] < torch.tensor([len(ids) for ids, _ in examples])[:, None]
    labels = torch.full((B, L), -100, dtype=torch.long)
    is_target = segment_ids.bool()
    # Position t predicts token t+1 wherever t+1 is a target token or the final [SEP].
    labels[:, :-1] = torch.where(is_target[:, 1:], input_ids[:, 1:], labels[:, :-1])
    return Batch(input_ids, segment_ids, pad_mask, labels)


def bucketed_batches(lengths: list[int], batch_size: int, rng: random.Random, bucket: int = 50) -> list[list[int]]:
    """Shuffled batches of indices whose lengths are close, so little compute goes to padding.

    Indices are shuffled, cut into chunks of `bucket` batches, sorted by length inside each chunk,
    cut into batches, and the batches shuffled: random order, similar lengths.
    """
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    chunk = batch_size * bucket
    batches = []
    for s in range(0, len(idx), chunk):
        part = sorted(idx[s : s + chunk], key=lambda i: lengths[i])
        batches += [part[j : j + batch_size] for j in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def shuffled_batches(n: int, batch_size: int, rng: random.Random) -> list[list[int]]:
    """Consecutive slices of one plain shuffle, as the study's scripts cut an epoch (`train.bucket: false`)."""
    idx = list(range(n))
    rng.shuffle(idx)
    return [idx[s : s + batch_size] for s in range(0, n, batch_size)]


def epoch_batches(lengths: list[int], batch_size: int, rng: random.Random, bucket: bool) -> list[list[int]]:
    """An epoch's batches of indices, drawn from `rng` (its state before the call rebuilds them)."""
    if bucket:
        return bucketed_batches(lengths, batch_size, rng)
    return shuffled_batches(len(lengths), batch_size, rng)
