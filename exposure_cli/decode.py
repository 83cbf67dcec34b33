"""Beam search over the target of a UniLM, the study's way (bert4keras 0.5.8).

At each step the global top-k of (beam × vocabulary) is kept; when the best of those ends in
[SEP] it is returned at once; otherwise candidates ending in [SEP] are dropped and the beam
shrinks. A hypothesis' score is Σ log(p + 1e-12). Beam 1 is greedy decoding.
"""

from __future__ import annotations

import torch

from .tokenizer import CharTokenizer


@torch.no_grad()
def study_beam_search(model, src_ids: list[int], beam: int, max_len: int, sep_id: int,
                      device="cpu") -> tuple[list[int], float]:
    """One example, recomputing the whole sequence at every step. Returns (target ids, score)."""
    src = torch.tensor(src_ids, device=device)[None]
    out = torch.empty((1, 0), dtype=torch.long, device=device)
    scores = torch.zeros(1, device=device)
    k = beam
    for step in range(max_len):
        n = out.shape[0]
        ids = torch.cat([src.expand(n, -1), out], 1)
        seg = torch.cat([torch.zeros_like(src).expand(n, -1), torch.ones_like(out)], 1)
        pad = torch.ones_like(ids, dtype=torch.bool)
        h = model.hidden_states(ids, seg, pad)
        memory = model.source_memory(h[:, : src.shape[1]], ids, seg, pad)
        logp = torch.log(model.log_probs(h[:, -1:], memory)[:, 0].exp() + 1e-12)
        cand = (scores[:, None] + logp).flatten()
        top = torch.topk(cand, k)
        V = logp.shape[1]
        out = torch.cat([out[top.indices // V], (top.indices % V)[:, None]], 1)
        scores = top.values
        best = int(scores.argmax())
        if out[best, -1] == sep_id:
            return out[best].tolist(), float(scores[best])
        alive = out[:, -1] != sep_id
        if not alive.all():
            out, scores = out[alive], scores[alive]
            k = int(alive.sum())
    best = int(scores.argmax())
    return out[best].tolist(), float(scores[best])


def decode_texts(model, tok: CharTokenizer, sources: list[str], beam: int, max_source: int, max_len: int,
                 device="cpu", progress=None) -> list[str]:
    """Predicted target text for each source."""
    was_training = model.training
    model.eval()
    preds = []
    try:
        for s in sources:
            src, _ = tok.encode_pair(s, None, max_source, 0)
            ids, _ = study_beam_search(model, src, beam, max_len, tok.sep_id, device)
            preds.append(tok.decode(ids))
            if progress is not None:
                progress()
    finally:
        model.train(was_training)
    return preds
