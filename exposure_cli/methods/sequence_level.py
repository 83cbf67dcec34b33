"""What the sequence-level methods (mrt.py, scst.py) share: samples from the cached decoder, one
teacher-forced pass that scores any set of candidate targets with gradients, and rewards by the
study's scorer on decoded texts. Registers no method."""

from __future__ import annotations

import torch

from ..batching import Batch, collate
from ..decode import generate_ids, sample_ids
from ..metrics import study_per_example

REWARDS = ("rouge_l", "bleu")


def sources(batch: Batch) -> list[list[int]]:
    """Each example's `[CLS] source [SEP]` ids."""
    src = (batch.segment_ids == 0) & batch.pad_mask
    return [row[m].tolist() for row, m in zip(batch.input_ids, src)]


def references(batch: Batch) -> list[list[int]]:
    """Each example's target ids, its final [SEP] included."""
    tgt = (batch.segment_ids == 1) & batch.pad_mask
    return [row[m].tolist() for row, m in zip(batch.input_ids, tgt)]


def _in_eval(model, fn):
    was = model.training
    model.eval()  # decode without dropout, as at test time
    try:
        return fn()
    finally:
        model.train(was)


def sample(model, batch: Batch, n: int, temperature: float, max_len: int, sep_id: int,
           gen: torch.Generator) -> list[list[list[int]]]:
    """n samples per example from the model's distribution (decode.sample_ids), no gradient."""
    dev = batch.input_ids.device
    return _in_eval(model, lambda: sample_ids(model, sources(batch), n, max_len, sep_id, dev,
                                              temperature=temperature, generator=gen,
                                              batch_size=len(batch.input_ids), pad_id=model.config.pad_id))


def greedy(model, batch: Batch, max_len: int, sep_id: int) -> list[list[int]]:
    """The decoder's beam-1 output per example (the study's search, as at test time)."""
    dev = batch.input_ids.device
    hyps = _in_eval(model, lambda: generate_ids(model, sources(batch), 1, max_len, sep_id, dev,
                                                batch_size=len(batch.input_ids), pad_id=model.config.pad_id))
    return [h[0].tokens for h in hyps]


def sequence_log_probs(model, batch: Batch, candidates: list[tuple[int, list[int]]]) -> torch.Tensor:
    """(N,) log p(y | x) = Σ_t log p(y_t | y_<t, x) of each (example index, target ids) in
    `candidates`, from one teacher-forced pass over `[CLS] source [SEP] y` (differentiable)."""
    src = sources(batch)
    rows = [(src[b] + y, [0] * len(src[b]) + [1] * len(y)) for b, y in candidates]
    cand = collate(rows, model.config.pad_id).to(batch.input_ids.device)
    sel = cand.labels != -100
    logp = model.target_log_probs(cand)
    tok = logp.gather(1, cand.labels[sel][:, None]).squeeze(1)
    which = sel.nonzero()[:, 0]
    return torch.zeros(len(rows), dtype=tok.dtype, device=tok.device).index_add(0, which, tok)


def rewards(tok, hyps: list[list[int]], refs: list[list[int]], metric: str = "rouge_l") -> list[float]:
    """The study's per-example score (in [0, 1]) of each decoded hypothesis against its decoded reference."""
    return study_per_example([tok.decode(h) for h in hyps], [tok.decode(r) for r in refs])[metric].tolist()
