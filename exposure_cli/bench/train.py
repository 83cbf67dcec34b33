"""`exposure bench train`: the cost of a training step, per method and against Hugging Face.

Every registered method trains its own copy of the same initial model on the same batch (a real
CSL batch when the training split is present, else a synthetic one), under bf16 autocast, with the
training loop's step: corrupt → loss → zero_grad → backward → clip → AdamW step. One warm-up step
each, then `steps` rounds in which every contestant times one step in turn (interleaved, so drift
in a shared machine's load hits all alike); the median counts.

The peer is transformers' `BertForMaskedLM` of the same size, with our initial weights, fed the
same input ids, segment ids, labels and the same UniLM mask as a boolean (B, 1, L, L) tensor (a
4-D mask is used as given by transformers 5; SDPA reads True as "may attend"), bf16 autocast too.
It runs its MLM head at every position, as that class does; ours runs it at target positions only.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from ..batching import Batch, collate
from ..methods import StepContext, available, get_method
from ..model import ModelConfig, UniLM, unilm_mask
from ..spec import DecodeSpec, ModelSpec, TrainSpec
from ..build import SCRATCH_SIZE as SCRATCH
from ..tokenizers import CharTokenizer
from ..tokenizers.base import SPECIALS

GRAD_CLIP = TrainSpec().grad_clip  # the training loop's default
# Non-default settings worth timing beside every method's defaults.
VARIANTS = [("gradient_penalty", {"backward": "perturbation"})]


def bench_batch(batch_size: int, data: str | Path | None, seed: int = 0) -> tuple[Batch, CharTokenizer, str]:
    """(batch, tokenizer, description): the first examples of the training split `data`, or a
    synthetic batch when `data` is None. A missing file is an error, not a silent fallback."""
    m = ModelSpec()
    if data is not None:
        from ..data import read_pairs

        pairs = read_pairs(str(data))
        tok = CharTokenizer.build(t for p in pairs for t in (p.source, p.target))
        ex = [tok.encode_pair(p.source, p.target, m.source_len(), m.max_target_len) for p in pairs[:batch_size]]
        return collate(ex, tok.pad_id), tok, f"CSL {data}, first {len(ex)} examples"
    g = torch.Generator().manual_seed(seed)
    vocab, ex = 5000, []
    for _ in range(batch_size):
        s = int(torch.randint(150, m.source_len() + 1, (1,), generator=g))
        t = int(torch.randint(10, m.max_target_len, (1,), generator=g))
        src = torch.randint(5, vocab, (s,), generator=g).tolist()
        tgt = torch.randint(5, vocab, (t,), generator=g).tolist()
        ex.append(([2] + src + [3] + tgt + [3], [0] * (s + 2) + [1] * (t + 1)))
    # A character vocabulary of the same size (CJK characters), for the methods that decode or avoid specials.
    tok = CharTokenizer(SPECIALS + [chr(0x4E00 + i) for i in range(vocab - len(SPECIALS))])
    return collate(ex, tok.pad_id), tok, "synthetic"


class _Contestant:
    def __init__(self, name, model, step_fn):
        self.name, self.model, self.step_fn = name, model, step_fn
        self.opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
        self.times: list[float] = []

    def step(self, record: bool) -> None:
        t0 = time.perf_counter()
        loss = self.step_fn()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), GRAD_CLIP)
        self.opt.step()
        if record:
            self.times.append(time.perf_counter() - t0)


def hf_model(model: UniLM):
    """transformers' BertForMaskedLM of the same size with the same weights (transformers imported here)."""
    from transformers import BertConfig, BertForMaskedLM

    c = model.config
    cfg = BertConfig(vocab_size=c.vocab_size, hidden_size=c.hidden, num_hidden_layers=c.layers,
                     num_attention_heads=c.heads, intermediate_size=c.ffn, max_position_embeddings=c.max_positions,
                     type_vocab_size=c.type_vocab_size, hidden_dropout_prob=c.dropout,
                     attention_probs_dropout_prob=c.dropout, layer_norm_eps=c.layer_norm_eps, pad_token_id=c.pad_id,
                     hidden_act="gelu", tie_word_embeddings=True)
    hf = BertForMaskedLM(cfg, attn_implementation="sdpa") if _accepts_attn(BertForMaskedLM) else BertForMaskedLM(cfg)
    hf.config._attn_implementation = "sdpa"
    missing, unexpected = hf.load_state_dict(model.state_dict(), strict=False)
    missing = [k for k in missing if not k.endswith(("position_ids", "decoder.weight", "decoder.bias"))]
    if missing or unexpected:
        raise RuntimeError(f"weights do not map onto BertForMaskedLM: missing {missing}, unexpected {unexpected}")
    return hf


def _accepts_attn(cls) -> bool:
    import inspect

    return "attn_implementation" in inspect.signature(cls.__init__).parameters


def hf_logits(hf, batch: Batch) -> torch.Tensor:
    mask = unilm_mask(batch.segment_ids, batch.pad_mask)
    return hf(input_ids=batch.input_ids, token_type_ids=batch.segment_ids, attention_mask=mask).logits


def bench_train(batch_size: int = 16, steps: int = 5, data: str | Path | None = "data/csl/train.tsv",
                methods: list[str] | None = None, hidden: int | None = None, layers: int | None = None,
                heads: int | None = None, hf: bool = True, seed: int = 0, threads: int | None = None,
                bf16: bool = True) -> dict:
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _bench(batch_size, steps, data, methods, hidden, layers, heads, hf, seed, bf16)
    finally:
        torch.set_num_threads(before)


def _bench(batch_size, steps, data, methods, hidden, layers, heads, hf, seed, bf16) -> dict:
    m = ModelSpec()
    batch, tok, source = bench_batch(batch_size, data, seed)
    vocab = len(tok)
    cfg = ModelConfig(vocab_size=vocab, hidden=hidden or SCRATCH["hidden"], layers=layers or SCRATCH["layers"],
                      heads=heads or SCRATCH["heads"], max_positions=m.max_len, dropout=m.dropout)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)
    chosen = [(n, {}) for n in (methods or available())]
    if methods is None:
        chosen += VARIANTS
    if "baseline" not in (methods or available()):
        chosen = [("baseline", {}), *chosen]
    total_steps = steps + 1

    contestants = []
    names = []
    for name, params in chosen:
        torch.manual_seed(seed)
        model = UniLM(cfg).train()
        method = get_method(name, params)
        name = method.label()
        names.append(name)
        model.double_backward = method.needs_double_backward
        gen = torch.Generator().manual_seed(seed)
        state = {"step": 0}

        def step_fn(model=model, method=method, gen=gen, state=state):
            ctx = StepContext(state["step"], total_steps, gen, None, tokenizer=tok, max_len=DecodeSpec().max_len)
            b = method.corrupt(batch, ctx)
            with autocast:
                loss, _ = method.loss(model, b, ctx)
            state["step"] += 1
            return loss

        contestants.append(_Contestant(name, model, step_fn))
    if hf:
        torch.manual_seed(seed)
        peer = hf_model(UniLM(cfg)).train()
        mask = unilm_mask(batch.segment_ids, batch.pad_mask)

        def hf_step(peer=peer):
            with autocast:
                return peer(input_ids=batch.input_ids, token_type_ids=batch.segment_ids, attention_mask=mask,
                            labels=batch.labels).loss

        contestants.append(_Contestant("hf", peer, hf_step))

    for c in contestants:  # warm-up
        c.step(record=False)
    for _ in range(steps):
        for c in contestants:
            c.step(record=True)

    med = {c.name: statistics.median(c.times) for c in contestants}
    base = med["baseline"]
    out = {
        "batch": source, "batch_size": int(batch.input_ids.shape[0]), "seq_len": int(batch.input_ids.shape[1]),
        "tokens": batch.n_tokens, "target_tokens": int((batch.labels != -100).sum()), "vocab": vocab,
        "model": {"hidden": cfg.hidden, "layers": cfg.layers, "heads": cfg.heads}, "steps": steps,
        "threads": torch.get_num_threads(), "precision": "bf16" if bf16 else "fp32",
        "step_seconds": {n: round(t, 4) for n, t in med.items()},
        "step_ratio": {n: round(med[n] / base, 3) for n in names},
        "tokens_per_s": round(batch.n_tokens / base, 1),
    }
    if hf:
        out["hf_tokens_per_s"] = round(batch.n_tokens / med["hf"], 1)
        out["ratio_vs_hf"] = round(med["hf"] / base, 3)
    return out
