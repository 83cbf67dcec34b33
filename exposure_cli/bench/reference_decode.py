"""SLOW reference beam searches: one example at a time, the whole sequence recomputed at every step.

Not for the pipeline. They are the plain, obviously-right versions the tests compare the batched,
cached decoder of `decode/beam.py` against (identical tokens and scores), and the baseline of
`exposure bench decode`. Semantics (scores, n-best, length penalty, n-gram blocking) are the ones
documented in `decode/beam.py`, written out independently: nothing here is imported from the decoder,
and the copy pointer's target history is rebuilt from the tokens fed. Only the model itself (its
hidden states and next-token distribution) is shared.
"""

from __future__ import annotations

import math

import torch

LOG_EPS = 1e-12  # the study's per-token score is log(p + 1e-12)
NO_TOKEN = -1  # what an empty slot of the copy pointer's target history holds (model.py's convention)


def _history(out: torch.Tensor, width: int) -> torch.Tensor:
    """(n, 1, width): the target tokens fed so far, latest first, NO_TOKEN-padded."""
    n, T = out.shape
    hist = torch.full((n, 1, width), NO_TOKEN, dtype=torch.long, device=out.device)
    for k in range(min(T, width)):
        hist[:, 0, k] = out[:, T - 1 - k]
    return hist


def _full_step(model, src: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """log(p + 1e-12) of the next token after each row of `out`, recomputing everything."""
    n = out.shape[0]
    ids = torch.cat([src.expand(n, -1), out], 1)
    seg = torch.cat([torch.zeros_like(src).expand(n, -1), torch.ones_like(out)], 1)
    pad = torch.ones_like(ids, dtype=torch.bool)
    h = model.hidden_states(ids, seg, pad)
    memory = model.source_memory(h[:, : src.shape[1]], ids, seg, pad)
    p = model.log_probs(h[:, -1:], memory, _history(out, out.shape[1])).float().exp()
    return torch.log(p + LOG_EPS)[:, 0]


def _banned(prefix: list[int], n: int) -> set[int]:
    """Every token t such that prefix + [t] ends with an n-gram already in prefix."""
    if n <= 0:
        return set()
    grams = {tuple(prefix[i:i + n]) for i in range(len(prefix) - n + 1)}
    tail = tuple(prefix[len(prefix) - n + 1:]) if n > 1 else ()
    return {g[-1] for g in grams if g[:-1] == tail} if len(prefix) >= n - 1 else set()


def _block(logp: torch.Tensor, out: torch.Tensor, n: int) -> torch.Tensor:
    if n:
        logp = logp.clone()
        for r, row in enumerate(out.tolist()):
            for tok in _banned(row, n):
                logp[r, tok] = -math.inf
    return logp


@torch.no_grad()
def study_beam_search(model, src_ids: list[int], beam: int, max_len: int, sep_id: int, device="cpu", *,
                      n_best: int = 1, no_repeat_ngram_size: int = 0) -> list[tuple[list[int], float]]:
    """The study's beam search (bert4keras 0.5.8) for one example; [(target ids, score)], answer first."""
    src = torch.tensor(src_ids, device=device)[None]
    out = torch.empty((1, 0), dtype=torch.long, device=device)
    scores = torch.zeros(1, device=device)
    aside: list[tuple[list[int], float]] = []
    k = beam
    for step in range(max_len):
        logp = _block(_full_step(model, src, out), out, no_repeat_ngram_size)
        cand = (scores[:, None] + logp).flatten()
        top = torch.topk(cand, k)
        V = logp.shape[1]
        out = torch.cat([out[top.indices // V], (top.indices % V)[:, None]], 1)
        scores = top.values
        best = int(scores.argmax())
        if out[best, -1] == sep_id:
            aside += [(out[i].tolist(), float(scores[i])) for i in range(len(scores))
                      if i != best and out[i, -1] == sep_id]
            return _nbest((out[best].tolist(), float(scores[best])), aside, n_best)
        alive = out[:, -1] != sep_id
        aside += [(out[i].tolist(), float(scores[i])) for i in range(len(scores)) if not alive[i]]
        if not alive.all():
            out, scores = out[alive], scores[alive]
            k = int(alive.sum())
    best = int(scores.argmax())
    aside += [(out[i].tolist(), float(scores[i])) for i in range(len(scores)) if i != best]
    return _nbest((out[best].tolist(), float(scores[best])), aside, n_best)


def _nbest(answer, aside, n_best):
    return [answer] + sorted(aside, key=lambda h: -h[1])[: n_best - 1]


@torch.no_grad()
def standard_beam_search(model, src_ids: list[int], beam: int, max_len: int, sep_id: int, device="cpu", *,
                         n_best: int = 1, length_penalty: float = 0.0,
                         no_repeat_ngram_size: int = 0) -> list[tuple[list[int], float]]:
    """Textbook beam search with a pool of finished hypotheses, for one example; [(ids, score)] best first."""
    src = torch.tensor(src_ids, device=device)[None]

    def lp(n):  # GNMT: ((5 + len) / 6) ** alpha
        return ((5.0 + n) / 6.0) ** length_penalty

    live: list[tuple[list[int], float]] = [([], 0.0)]
    pool: list[tuple[float, list[int], float]] = []  # (normalized, ids, score)
    for step in range(max_len):
        out = torch.tensor([p for p, _ in live], dtype=torch.long, device=device).reshape(len(live), step)
        logp = _block(_full_step(model, src, out), out, no_repeat_ngram_size)
        scores = torch.tensor([s for _, s in live], dtype=torch.float32, device=device)
        cand = (scores[:, None] + logp).flatten()
        V = logp.shape[1]
        top = torch.topk(cand, min(2 * beam, cand.numel()))
        new = []
        for rank, (v, i) in enumerate(zip(top.values.tolist(), top.indices.tolist())):
            ids = live[i // V][0] + [i % V]
            if i % V == sep_id:
                if rank < beam:
                    pool.append((v / lp(len(ids)), ids, v))
            elif len(new) < beam:
                new.append((ids, v))
            if len(new) == beam:
                break
        pool = sorted(pool, key=lambda h: -h[0])[:beam]
        live = new
        if step == max_len - 1:
            pool = sorted(pool + [(s / lp(len(p)), p, s) for p, s in live], key=lambda h: -h[0])
            break
        if not live:
            break
        if len(pool) >= beam:
            worst = pool[-1][0]
            if all(max(s / lp(len(p) + 1), s / lp(max_len)) <= worst for p, s in live):
                break
    return [(ids, s) for _, ids, s in pool[:n_best]]
