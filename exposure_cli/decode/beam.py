"""Beam search over the target of a UniLM: a batched search engine over a step callback, and the
cached UniLM step that feeds it.

The engine (`beam_search`) knows nothing about models. It asks a callback
`step(state: StepState) -> log_probs (E, K, V)` for the next-token log-probabilities of every live
hypothesis ("slot") of every live example, and keeps the bookkeeping: scores, prefixes, which
examples are finished. The same code therefore runs the UniLM (`UniLMStep`, below) and the
article's two-step worked example (`demo.worked_example_step`, used by the tests and `exposure demo`).

Scores. A hypothesis' score is Σ log(p + 1e-12) over its tokens, the final [SEP] included, as in
the study. `tokens` of a finished hypothesis end with [SEP].

Strategies.
- `study` (default; bert4keras 0.5.8 `beam_search`, the study's): at each step keep the global
  top-k of (live beam × vocabulary) of the example; if the best of those ends in [SEP], return it
  at once; otherwise discard the candidates that ended in [SEP] and go on with the rest, so that
  example's beam shrinks and never grows back; at `max_len` tokens return the best unfinished one.
  Beam 1 is greedy decoding. With `n_best` > 1 the answer comes first, followed by the hypotheses
  the rule set aside (candidates that ended in [SEP] but were not the best at their step, and at
  the length limit the other unfinished ones), best score first.
- `standard` (textbook, as in fairseq / Hugging Face with an exact stopping rule): each step takes
  the top 2k candidates; one ending in [SEP] among the first k goes to a pool of finished
  hypotheses, the best k others stay live. Finished hypotheses are ranked by
  score / lp(len) with the GNMT length penalty lp(len) = ((5 + len) / 6) ** length_penalty, len
  counting the generated tokens including the final [SEP] (length_penalty 0, the default, is the
  plain sum, as the study's score). The search of an example stops when the pool holds k
  hypotheses and no live hypothesis can still beat the worst of them (score only decreases, so
  its bound is max over the lengths it could still reach of score / lp); at `max_len` the live
  ones join the pool as unfinished. Returns the pool's `n_best` best (n_best ≤ beam).
- `no_repeat_ngram_size` n > 0 forbids (log-prob −inf) any token that would repeat an n-gram
  already in the hypothesis' target (both strategies).

The UniLM step encodes the source once per example: in a UniLM a source position sees only the
source, so its keys/values in every layer are fixed for the whole search. Each later step runs only
the new target tokens. The beams of one example share one key/value cache laid out as a tree:
columns [0, S) hold the (right-padded) source, then each step appends one column per slot; a
boolean mask lets a slot see the real source columns plus the columns of its own ancestors and
itself, so beams never have to be copied or reordered, and padding is never attended. The cache is
preallocated for beam × max_len target columns (model.py writes new keys/values in place), so a
step costs no copy of the source's keys/values. Examples are
batched; a finished one is dropped from the batch (its cache rows removed) and its result is fixed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..model import take_rows
from ..registry import Registry
from ..tokenizers import Tokenizer

LOG_EPS = 1e-12
ENCODE_ROWS = 1024  # source positions encoded per chunk (UniLMStep._encode)
# MKL's sgemm takes another path below 4 rows, which rounds differently: the encoder never splits
# a product into pieces that small, so its numbers stay those of one call over the whole batch.
MIN_ROWS = 4


@dataclass
class Hypothesis:
    tokens: list[int]  # generated target ids; a finished hypothesis ends with [SEP]
    score: float  # Σ log(p + 1e-12)
    finished: bool
    normalized: float | None = None  # `standard`: score / lp(len), the ranking score


@dataclass
class StepState:
    """What a step callback sees. E live examples × K slots; slots past an example's beam are empty."""

    step: int  # target tokens already in each prefix (0 on the first call)
    examples: list[int]  # ids of the live examples, in batch order
    keep: list[int] | None  # rows of the previous call's batch that are still live (None on the first call)
    parents: torch.Tensor | None  # (E, K) slot of the previous call each slot extends (0 for empty slots)
    last: torch.Tensor | None  # (E, K) the token each slot appended last (0 for empty slots)
    valid: torch.Tensor  # (E, K) True for real slots
    prefixes: list[list[list[int]]]  # per live example, per real slot, the target tokens so far


@dataclass
class StepTrace:
    """One example's step, for `trace` (used by `exposure demo`)."""

    step: int
    example: int
    candidates: list[tuple[list[int], float]]  # the kept top candidates, best first
    action: str  # "continue" | "return" | "length limit" | "done"
    dropped: list[tuple[list[int], float]] = field(default_factory=list)  # set aside this step


def length_penalty_factor(length: int, alpha: float) -> float:
    """GNMT's lp(len) = ((5 + len) / 6) ** alpha."""
    return ((5.0 + length) / 6.0) ** alpha


def banned_tokens(prefix: list[int], n: int) -> list[int]:
    """Tokens that would complete an n-gram already present in `prefix`."""
    if n <= 0 or len(prefix) + 1 < n:
        return []
    if n == 1:
        return list(set(prefix))
    head = tuple(prefix[len(prefix) - n + 1:])
    return [prefix[i + n - 1] for i in range(len(prefix) - n + 1) if tuple(prefix[i:i + n - 1]) == head]


def check_options(strategy: str, beam: int, n_best: int, no_repeat_ngram_size: int, max_len: int) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy: expected one of {', '.join(STRATEGIES.names())}, got {strategy!r}")
    if beam < 1 or max_len < 1 or n_best < 1 or no_repeat_ngram_size < 0:
        raise ValueError("beam, max_len and n_best must be ≥ 1, no_repeat_ngram_size ≥ 0")
    if strategy == "standard" and n_best > beam:
        raise ValueError(f"n_best ({n_best}) must be at most the beam ({beam}) for the standard strategy")


class _Example:
    __slots__ = ("live", "k", "aside", "pool", "result", "parents")

    def __init__(self, beam: int):
        self.live: list[tuple[list[int], float]] = [([], 0.0)]
        self.k = beam  # study: the current beam (shrinks)
        self.aside: list[tuple[list[int], float, bool]] = []  # study: set-aside hypotheses
        self.pool: list[Hypothesis] = []  # standard: finished hypotheses
        self.result: list[Hypothesis] | None = None
        self.parents: list[int] = [0]  # slot of the previous step each live hypothesis extends


def beam_search(step: Callable[[StepState], torch.Tensor], n_examples: int, beam: int, max_len: int, sep_id: int,
                *, strategy: str = "study", n_best: int = 1, length_penalty: float = 0.0,
                no_repeat_ngram_size: int = 0, on_done: Callable[[int], None] | None = None,
                trace: Callable[[StepTrace], None] | None = None) -> list[list[Hypothesis]]:
    """Beam search for `n_examples` examples at once; returns each example's hypotheses, best first."""
    check_options(strategy, beam, n_best, no_repeat_ngram_size, max_len)
    rule = STRATEGIES.get(strategy)()
    exs = [_Example(beam) for _ in range(n_examples)]
    live_ids = list(range(n_examples))
    keep: list[int] | None = None
    parents_rows: list[list[int]] = [[0] for _ in live_ids]
    for t in range(max_len):
        if not live_ids:
            break
        K = max(len(exs[i].live) for i in live_ids)
        E = len(live_ids)
        lives = [exs[i].live for i in live_ids]

        def rows(values, fill):  # one (E, K) tensor from per-example lists, padded to K slots
            return torch.tensor([v + [fill] * (K - len(v)) for v in values])

        # One tensor per field for the batch: building them row by row cost a copy per example.
        valid = rows([[True] * len(live) for live in lives], False)
        scores = rows([[s for _, s in live] for live in lives], -math.inf).float()
        last = rows([[p[-1] for p, _ in live] for live in lives], 0) if t > 0 else None
        parents = rows(parents_rows, 0) if t > 0 else None
        prefixes = [[p for p, _ in live] for live in lives]
        state = StepState(t, list(live_ids), keep, parents, last, valid, prefixes)
        logp = step(state).float()
        scores = scores.to(logp.device)  # the bookkeeping is built on the host, the model's step may be on a GPU
        V = logp.shape[-1]
        if no_repeat_ngram_size:
            rows, cols = [], []
            for r, pre in enumerate(prefixes):
                for s, p in enumerate(pre):
                    for tok in banned_tokens(p, no_repeat_ngram_size):
                        rows.append(r * K + s)
                        cols.append(tok)
            if rows:
                logp = logp.reshape(E * K, V).clone()
                logp[rows, cols] = -math.inf
                logp = logp.reshape(E, K, V)
        cand = (scores[:, :, None] + logp).reshape(E, K * V)
        kk = min(rule.width([exs[i] for i in live_ids], beam), K * V)
        top = torch.topk(cand, kk, dim=1)
        values, indices = top.values.tolist(), top.indices.tolist()
        new_live_ids, new_keep, new_parents = [], [], []
        for r, i in enumerate(live_ids):
            ex = exs[i]
            pre = prefixes[r]
            cands = [(pre[j // V] + [j % V], v, j // V) for v, j in zip(values[r], indices[r])]
            rule.update(ex, cands, Step(t, beam, max_len, sep_id, n_best, length_penalty, i, trace))
            if ex.result is None:
                new_live_ids.append(i)
                new_keep.append(r)
                new_parents.append(ex.parents)
            elif on_done is not None:
                on_done(i)
        keep, live_ids, parents_rows = new_keep, new_live_ids, new_parents
    return [ex.result or [] for ex in exs]


@dataclass
class Step:
    """What a strategy's update needs to know of the step besides the candidates."""

    t: int
    beam: int
    max_len: int
    sep_id: int
    n_best: int
    length_penalty: float
    example: int
    trace: Callable[[StepTrace], None] | None


class Strategy:
    """How one example's beam moves on, given the step's top candidates (tokens, score, parent slot),
    best first. `width` is how many candidates per example the engine takes."""

    name = ""

    def width(self, live: list[_Example], beam: int) -> int:
        raise NotImplementedError

    def update(self, ex: _Example, cands, s: Step) -> None:
        raise NotImplementedError


STRATEGIES: Registry[type[Strategy]] = Registry("decode strategy", Strategy, family="strategies")


@STRATEGIES.register()
class Study(Strategy):
    """bert4keras 0.5.8's search, the study's (module docstring)."""

    name = "study"

    def width(self, live, beam):
        return max(ex.k for ex in live)

    def update(self, ex, cands, s):
        cands = cands[: ex.k]
        best_tokens, best_score, _ = cands[0]
        if best_tokens[-1] == s.sep_id:
            aside = ex.aside + [(p, sc, True) for p, sc, _ in cands[1:] if p[-1] == s.sep_id]
            ex.result = _study_result((best_tokens, best_score, True), aside, s.n_best)
            if s.trace:
                s.trace(StepTrace(s.t, s.example, [(p, sc) for p, sc, _ in cands], "return"))
            return
        alive = [c for c in cands if c[0][-1] != s.sep_id]
        dropped = [(p, sc) for p, sc, _ in cands if p[-1] == s.sep_id]
        ex.aside += [(p, sc, True) for p, sc in dropped]
        ex.k = len(alive)
        if s.t == s.max_len - 1:
            rest = ex.aside + [(p, sc, False) for p, sc, _ in alive[1:]]
            ex.result = _study_result((alive[0][0], alive[0][1], False), rest, s.n_best)
            if s.trace:
                s.trace(StepTrace(s.t, s.example, [(p, sc) for p, sc, _ in cands], "length limit", dropped))
            return
        ex.live = [(p, sc) for p, sc, _ in alive]
        ex.parents = [slot for _, _, slot in alive]
        if s.trace:
            s.trace(StepTrace(s.t, s.example, [(p, sc) for p, sc, _ in cands], "continue", dropped))


def _study_result(answer, aside, n_best: int) -> list[Hypothesis]:
    out = [Hypothesis(answer[0], answer[1], answer[2])]
    if n_best > 1:
        rest = sorted(aside, key=lambda h: -h[1])  # stable: ties keep the order they were found in
        out += [Hypothesis(p, s, f) for p, s, f in rest[: n_best - 1]]
    return out


@STRATEGIES.register()
class Standard(Strategy):
    """A pool of finished hypotheses with GNMT's length penalty (module docstring)."""

    name = "standard"

    def width(self, live, beam):
        return 2 * beam

    def update(self, ex, cands, s):
        beam, alpha = s.beam, s.length_penalty
        live, parents, dropped = [], [], []
        for rank, (p, sc, slot) in enumerate(cands):
            if p[-1] == s.sep_id:
                if rank < beam:
                    ex.pool.append(Hypothesis(p, sc, True, sc / length_penalty_factor(len(p), alpha)))
                    dropped.append((p, sc))
            elif len(live) < beam:
                live.append((p, sc))
                parents.append(slot)
            if len(live) == beam:
                break
        ex.pool.sort(key=lambda h: -h.normalized)  # stable
        del ex.pool[beam:]
        action = "continue"
        if s.t == s.max_len - 1:
            ex.pool += [Hypothesis(p, sc, False, sc / length_penalty_factor(len(p), alpha)) for p, sc in live]
            ex.pool.sort(key=lambda h: -h.normalized)
            action = "length limit"
        elif not live or (len(ex.pool) >= beam and all(
                _bound(sc, len(p), s.max_len, alpha) <= ex.pool[-1].normalized for p, sc in live)):
            action = "done"
        if action != "continue":
            ex.result = ex.pool[:s.n_best]
        else:
            ex.live, ex.parents = live, parents
        if s.trace:
            s.trace(StepTrace(s.t, s.example, [(p, sc) for p, sc, _ in cands], action, dropped))


def _bound(score: float, length: int, max_len: int, alpha: float) -> float:
    """The best normalized score a live hypothesis could still reach (its score can only fall)."""
    return max(score / length_penalty_factor(length + 1, alpha), score / length_penalty_factor(max_len, alpha))


# ------------------------------------------------------------------------------------ the model


def log_probs(model, hidden: torch.Tensor, memory=None, history=None) -> torch.Tensor:
    """log(p + 1e-12), the study's per-token score, in fp32, from final hidden states (B, T, H).

    p is the model's next-token distribution (`UniLM.log_probs`: the MLM head's softmax, mixed
    with the copy pointer over the source when the model has one).
    """
    logp = model.log_probs(hidden, memory, history).float()  # a new tensor: the ops below may work in place
    return logp.exp_().add_(LOG_EPS).log_()


class UniLMStep:
    """The step callback for a UniLM over a batch of sources, with a key/value cache (see module doc)."""

    def __init__(self, model, sources: list[list[int]], device, pad_id: int = 0, new_columns: int | None = None):
        """`new_columns`: an upper bound on the target tokens (slots × steps) the search will feed, e.g.
        beam × max_len; with it the cache is preallocated and written in place instead of re-concatenated."""
        self.model, self.sources, self.device, self.pad_id = model, sources, torch.device(device), pad_id
        self.new_columns = new_columns
        self.caches: list[dict] | None = None

    def _encode(self, ids: torch.Tensor, pad: torch.Tensor):
        """Encode the right-padded sources (E, S), filling the key/value caches. Returns the final
        hidden state at each source's [SEP] (E, 1, H), which predicts the first target token, and
        what the copy pointer reads of the source (None without a copy head).

        A few examples at a time (about ENCODE_ROWS positions): a chunk's activations stay in the
        CPU's caches, where the whole batch's would not. Without a copy head nothing reads the last
        layer's output at source positions other than [SEP], so it is computed there only (`rows`).
        Both give the same numbers as one call over the batch, bit for bit, because every matrix
        product keeps at least MIN_ROWS rows (see there); in training mode the dropout masks are
        drawn chunk by chunk, so they differ from one call's (the same distribution)."""
        m, (E, S) = self.model, ids.shape
        sep = (self.src_len - 1)[:, None]
        chunks = max(1, min(-(-E * S // ENCODE_ROWS), E // MIN_ROWS))
        bounds = [E * i // chunks for i in range(chunks + 1)]  # as even as they can be
        self.caches = [{} for _ in m.bert.encoder.layer]
        hs, memories = [], []
        for lo, hi in zip(bounds, bounds[1:]):
            x, p, at = ids[lo:hi], pad[lo:hi], sep[lo:hi]
            seg, part = torch.zeros_like(x), [{} for _ in m.bert.encoder.layer]
            only_sep = not m.config.copy and hi - lo >= MIN_ROWS  # the pointer reads every source position
            # Source positions see every real source position; padding rows too (their output is unused).
            h = m.hidden_states(x, seg, p, position_ids=torch.arange(S, device=x.device).expand_as(x),
                                attn_mask=p[:, None, None, :], caches=part, rows=at if only_sep else None)
            if not only_sep:
                memories.append(m.source_memory(h, x, seg, p))
                h = take_rows(h, at)
            hs.append(h)
            for c, new in zip(self.caches, part):
                if "k_buf" not in c:
                    k, cols = new["k"], S + (self.new_columns or 0)
                    c["k_buf"] = k.new_empty(E, k.shape[1], cols, k.shape[3])
                    c["v_buf"] = k.new_empty(E, k.shape[1], cols, k.shape[3])
                c["k_buf"][lo:hi, :, :S], c["v_buf"][lo:hi, :, :S] = new["k"], new["v"]
        for c in self.caches:
            c["n"] = S
            if not self.new_columns:  # no preallocation: later steps concatenate
                c["k"], c["v"] = c.pop("k_buf"), c.pop("v_buf")
        memory = tuple(torch.cat(ts) for ts in zip(*memories)) if m.config.copy else None
        return torch.cat(hs), memory

    def __call__(self, state: StepState) -> torch.Tensor:
        m, dev = self.model, self.device
        if state.step == 0:
            srcs = [self.sources[i] for i in state.examples]
            S = max(len(s) for s in srcs)
            ids = torch.full((len(srcs), S), self.pad_id, dtype=torch.long)
            for r, s in enumerate(srcs):
                ids[r, : len(s)] = torch.tensor(s)
            ids = ids.to(dev)
            self.src_len = torch.tensor([len(s) for s in srcs], device=dev)
            pad = torch.arange(S, device=dev)[None, :] < self.src_len[:, None]
            h, self.memory = self._encode(ids, pad)  # the memory is computed once
            self.visible = pad[:, None, :]  # (E, K=1, C): the cache columns each slot may see
            # Each slot's target tokens fed so far, latest first (copy continuation and coverage).
            self.history = torch.empty((len(srcs), 1, 0), dtype=torch.long, device=dev)
            return log_probs(m, h, self.memory, self.history)
        if len(state.keep) < self.visible.shape[0]:  # finished examples leave the batch
            keep = torch.tensor(state.keep, device=dev)
            for c in self.caches:
                for name in ("k", "v", "k_buf", "v_buf"):
                    if name in c:
                        c[name] = c[name].index_select(0, keep)
            self.visible, self.src_len = self.visible.index_select(0, keep), self.src_len.index_select(0, keep)
            if self.memory is not None:
                self.memory = tuple(t.index_select(0, keep) for t in self.memory)
            self.history = self.history.index_select(0, keep)
        parents, last = state.parents.to(dev), state.last.to(dev)
        E, K = last.shape
        older = self.history.gather(1, parents[:, :, None].expand(E, K, self.history.shape[2]))
        self.history = torch.cat([last[:, :, None], older], 2)
        C = self.visible.shape[2]
        vis = self.visible.gather(1, parents[:, :, None].expand(E, K, C))
        vis = torch.cat([vis, torch.eye(K, dtype=torch.bool, device=dev).expand(E, K, K)], dim=2)
        pos = (self.src_len - 1 + state.step)[:, None].expand(E, K)
        h = m.hidden_states(last, torch.ones_like(last), None, position_ids=pos, attn_mask=vis[:, None],
                            caches=self.caches)
        self.visible = vis
        return log_probs(m, h, self.memory, self.history)


@torch.inference_mode()
def generate_ids(model, sources: list[list[int]], beam: int, max_len: int, sep_id: int, device="cpu", *,
                 strategy: str = "study", n_best: int = 1, length_penalty: float = 0.0,
                 no_repeat_ngram_size: int = 0, batch_size: int = 32, pad_id: int = 0,
                 progress: Callable[[], None] | None = None) -> list[list[Hypothesis]]:
    """Hypotheses (best first) for each source id list ([CLS] source [SEP]), in input order.

    Sources are sorted by length and cut into batches of `batch_size`, so little compute goes to
    padding.
    """
    check_options(strategy, beam, n_best, no_repeat_ngram_size, max_len)
    longest = max((len(s) for s in sources), default=0)
    if longest + max_len - 1 > model.config.max_positions:
        raise ValueError(f"a source of {longest} positions and max_len {max_len} need {longest + max_len - 1} "
                         f"positions; the model has {model.config.max_positions}")
    order = sorted(range(len(sources)), key=lambda i: -len(sources[i]))
    out: list[list[Hypothesis] | None] = [None] * len(sources)
    done = (lambda _: progress()) if progress is not None else None
    for b in range(0, len(order), batch_size):
        idx = order[b: b + batch_size]
        step = UniLMStep(model, [sources[i] for i in idx], device, pad_id, new_columns=beam * max_len)
        res = beam_search(step, len(idx), beam, max_len, sep_id, strategy=strategy, n_best=n_best,
                          length_penalty=length_penalty, no_repeat_ngram_size=no_repeat_ngram_size, on_done=done)
        for i, r in zip(idx, res):
            out[i] = r
    return out  # type: ignore[return-value]


def draw_tokens(logp: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """One token per row of `logp` (..., V): a draw from softmax(logp / temperature), or the argmax
    at temperature 0 (greedy)."""
    if temperature == 0:
        return logp.argmax(-1)
    probs = torch.softmax(logp.float() / temperature, -1)
    flat = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator)
    return flat.view(probs.shape[:-1])


@torch.inference_mode()
def sample_ids(model, sources: list[list[int]], n_samples: int, max_len: int, sep_id: int, device="cpu", *,
               temperature: float = 1.0, generator: torch.Generator | None = None, batch_size: int = 32,
               pad_id: int = 0) -> list[list[list[int]]]:
    """`n_samples` independent samples from the model's full next-token distribution for each source
    id list ([CLS] source [SEP]), in input order: per source, n_samples token lists, each ending with
    [SEP] unless it reached `max_len` tokens. No gradient; the model is used in the mode it is in.

    The samples of a source are the slots of one `UniLMStep`: the source is encoded once and its
    keys/values shared, each slot sees the source and its own earlier tokens (slot k's parent is slot
    k, except at the first step where all extend the source's [SEP]). A source leaves the batch
    when all its samples have ended; an ended sample's later tokens are drawn but discarded.
    Tokens come from `draw_tokens` with `generator` (on `device`).
    """
    if n_samples < 1 or max_len < 1 or temperature < 0:
        raise ValueError("n_samples and max_len must be ≥ 1, temperature ≥ 0")
    longest = max((len(s) for s in sources), default=0)
    if longest + max_len - 1 > model.config.max_positions:
        raise ValueError(f"a source of {longest} positions and max_len {max_len} need {longest + max_len - 1} "
                         f"positions; the model has {model.config.max_positions}")
    order = sorted(range(len(sources)), key=lambda i: -len(sources[i]))
    out: list[list[list[int]]] = [[] for _ in sources]
    for b in range(0, len(order), batch_size):
        idx = order[b: b + batch_size]
        for i, samples in zip(idx, _sample_batch(model, [sources[i] for i in idx], n_samples, max_len, sep_id,
                                                 device, temperature, generator, pad_id)):
            out[i] = samples
    return out


def _sample_batch(model, sources, S, max_len, sep_id, device, temperature, generator, pad_id):
    dev = torch.device(device)
    step = UniLMStep(model, sources, dev, pad_id, new_columns=S * max_len)
    E = len(sources)
    samples = [[[] for _ in range(S)] for _ in range(E)]
    live = list(range(E))  # examples still in the step's batch
    logp = step(StepState(0, live, None, None, None, torch.ones(E, 1, dtype=torch.bool), []))
    tokens = draw_tokens(logp.expand(E, S, logp.shape[-1]), temperature, generator)  # (E, S)
    running = torch.ones(E, S, dtype=torch.bool, device=dev)
    for t in range(1, max_len + 1):
        # One read of the step's tokens and flags for the whole batch, not one per row.
        for i, toks, ons in zip(live, tokens.tolist(), running.tolist()):
            for s, (tok, on) in enumerate(zip(toks, ons)):
                if on:
                    samples[i][s].append(tok)
        running &= tokens != sep_id
        if t == max_len:
            break
        keep = [r for r, on in enumerate(running.any(1).tolist()) if on]
        if not keep:
            break
        rows = torch.tensor(keep, device=dev)
        tokens, running = tokens.index_select(0, rows), running.index_select(0, rows)
        live = [live[r] for r in keep]
        E = len(live)
        parents = torch.zeros(E, S, dtype=torch.long) if t == 1 else torch.arange(S).expand(E, S)
        state = StepState(t, live, keep, parents, tokens.cpu(), torch.ones(E, S, dtype=torch.bool), [])
        tokens = draw_tokens(step(state), temperature, generator)
    return samples


def decode_options(d) -> dict:
    """A spec's `decode` section as options for `decode_texts` / `decode_hypotheses`."""
    return {"strategy": d.strategy, "length_penalty": d.length_penalty,
            "no_repeat_ngram_size": d.no_repeat_ngram_size, "batch_size": d.batch_size}


def decode_hypotheses(model, tok: Tokenizer, sources: list[str], beam: int, max_source: int, max_len: int,
                      device="cpu", progress=None, **options) -> list[list[Hypothesis]]:
    """Like `decode_texts`, but every hypothesis (n-best) with its tokens and score."""
    was_training = model.training
    model.eval()
    try:
        src = [tok.encode_pair(s, None, max_source, 0)[0] for s in sources]
        return generate_ids(model, src, beam, max_len, tok.sep_id, device, pad_id=tok.pad_id, progress=progress,
                            **options)
    finally:
        model.train(was_training)


def decode_texts(model, tok: Tokenizer, sources: list[str], beam: int, max_source: int, max_len: int,
                 device="cpu", progress=None, **options) -> list[str]:
    """Predicted target text (the best hypothesis) for each source.

    `options`: strategy ("study" | "standard"), n_best, length_penalty, no_repeat_ngram_size, batch_size.
    """
    hyps = decode_hypotheses(model, tok, sources, beam, max_source, max_len, device, progress, **options)
    return [tok.decode(h[0].tokens) if h else "" for h in hyps]


def decode_spec(model, tok: Tokenizer, spec, sources: list[str], beam: int, device="cpu", progress=None,
                **overrides) -> list[list[Hypothesis]]:
    """Every hypothesis of each source as a run's spec decodes it: its source length, max_len and
    `decode` options (`overrides` replace some, e.g. n_best). Test decoding, `diagnose` and
    `generate` call this; the dev decode of model selection stays greedy with its own options."""
    return decode_hypotheses(model, tok, sources, beam, spec.model.source_len(), spec.decode.max_len, device,
                             progress, **{**decode_options(spec.decode), **overrides})
