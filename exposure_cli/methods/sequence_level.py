"""What the sequence-level methods (mrt.py, scst.py) share: samples from the cached decoder, one
teacher-forced pass that scores any set of candidate targets with gradients, and rewards by the
study's scorer on decoded texts. Registers no method."""

from __future__ import annotations

import torch

from ..batching import Batch
from ..decode.beam import generate_ids, sample_ids
from ..metrics import study_per_example
from ..model import target_history

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
    `candidates`, teacher-forced and differentiable, in two batched passes.

    Under the UniLM mask a source position sees only the source, so the source's hidden states and
    keys/values do not depend on the target: pass 1 runs each example's `[CLS] source [SEP]` once
    (its [SEP] predicts y_1); pass 2 runs every candidate's target tokens at once, attending to its
    example's source keys/values (selected per candidate, gradients flowing back to pass 1) and to
    its own earlier tokens. A candidate costs its target's length, not source + target. In training
    mode a source's dropout masks are shared by its candidates.
    """
    dev = batch.input_ids.device
    src = sources(batch)
    B, S = len(src), max(len(s) for s in src)
    pad = model.config.pad_id
    ids = torch.full((B, S), pad, dtype=torch.long, device=dev)
    for b, s in enumerate(src):
        ids[b, :len(s)] = torch.tensor(s, device=dev)
    src_len = torch.tensor([len(s) for s in src], device=dev)
    src_pad = torch.arange(S, device=dev)[None, :] < src_len[:, None]
    zeros = torch.zeros_like(ids)
    caches = [{} for _ in model.bert.encoder.layer]
    h = model.hidden_states(ids, zeros, src_pad, caches=caches)  # source positions see the real source
    memory = model.source_memory(h, ids, zeros, src_pad)

    which = torch.tensor([b for b, _ in candidates], device=dev)
    N, T = len(candidates), max(len(y) for _, y in candidates)
    y = torch.full((N, T), pad, dtype=torch.long, device=dev)
    for n, (_, t) in enumerate(candidates):
        y[n, :len(t)] = torch.tensor(t, device=dev)
    y_pad = torch.arange(T, device=dev)[None, :] < torch.tensor([len(t) for _, t in candidates], device=dev)[:, None]
    queries = [h[which, src_len[which] - 1][:, None]]  # the source's [SEP] predicts y_1
    if T > 1:  # y_1 .. y_{T-1} are fed (nothing is predicted from the last token)
        fed, fed_pad = y[:, :-1], y_pad[:, :-1]
        causal = torch.ones(T - 1, T - 1, dtype=torch.bool, device=dev).tril()
        mask = torch.cat([src_pad[which][:, None, :].expand(N, T - 1, S), causal[None] & fed_pad[:, None, :]], 2)
        pos = src_len[which][:, None] + torch.arange(T - 1, device=dev)
        tcaches = [{"k": c["k"].index_select(0, which), "v": c["v"].index_select(0, which)} for c in caches]
        queries.append(model.hidden_states(fed, torch.ones_like(fed), None, position_ids=pos, attn_mask=mask[:, None],
                                           caches=tcaches))
    hq = torch.cat(queries, 1)  # hq[:, t] predicts y[:, t]
    if memory is not None:
        memory = tuple(m.index_select(0, which) for m in memory)
    # What the copy head's continuation/coverage read: the target tokens fed so far, latest first.
    seq = torch.cat([torch.full((N, 1), pad, dtype=torch.long, device=dev), y], 1)  # column 0 plays the [SEP]
    history = target_history(seq, torch.zeros(N, dtype=torch.long, device=dev),
                             torch.arange(T, device=dev).expand(N, T), T)
    logp = model.log_probs(hq, memory, history)
    tok = logp.gather(2, y[:, :, None]).squeeze(2)
    return tok.masked_fill(~y_pad, 0.0).sum(1)


def rewards(tok, hyps: list[list[int]], refs: list[list[int]], metric: str = "rouge_l") -> list[float]:
    """The study's per-example score (in [0, 1]) of each decoded hypothesis against its decoded reference."""
    return study_per_example([tok.decode(h) for h in hyps], [tok.decode(r) for r in refs])[metric].tolist()
