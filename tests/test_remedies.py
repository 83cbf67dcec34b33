"""The field's remedies (issue 23) against independent truth: RAML's edit-count distribution
(chi-square against its closed form) and its edits, the word-level oracle's decay, its μ = inf limit
(baseline bit for bit) and its Gumbel draw (chi-square), minimum risk training's risk and gradient
(hand computation, finite differences, α → 0 and S = 1 limits), and SCST's advantage (the study's
scorer on decoded texts) and its sign at a model that has learnt the reference."""

import math
import random

import pytest
import torch

from exposure_cli.batching import collate, encode_examples
from exposure_cli.data import Pair
from exposure_cli.decode.beam import decode_texts, sample_ids
from exposure_cli.methods import StepContext, get_method
from exposure_cli.methods import sequence_level as sl
from exposure_cli.methods.mrt import expected_risk
from exposure_cli.methods.raml import admissible_ids
from exposure_cli.methods.scst import advantages
from exposure_cli.methods.word_oracle import gumbel_argmax
from exposure_cli.metrics import study_per_example
from exposure_cli.model import ModelConfig, UniLM
from exposure_cli.tokenizers import CharTokenizer
from exposure_cli.tokenizers.base import SPECIALS
from stats import chi_square_p

pytestmark = pytest.mark.usefixtures("one_thread")

PAIRS = [Pair("甲乙丙丁", "一种方法"), Pair("戊己庚辛壬", "二者研究"), Pair("子丑寅", "方法"),
         Pair("卯辰巳午未申", "研究一种")]


def tokenizer(extra="") -> CharTokenizer:
    return CharTokenizer.build([p.source + p.target for p in PAIRS] + [extra])


def batch_of(tok, pairs=PAIRS, max_target=8):
    return collate(encode_examples(tok, pairs, 16, max_target), tok.pad_id)


def ctx(tok=None, seed=0, epoch=0, max_len=8):
    return StepContext(0, 10, torch.Generator().manual_seed(seed), random.Random(seed), epoch=epoch, tokenizer=tok,
                       max_len=max_len)


def tiny_model(tok, dtype=torch.float64, seed=0, dropout=0.0, hidden=16):
    torch.manual_seed(seed)
    m = UniLM(ModelConfig(vocab_size=len(tok), hidden=hidden, layers=2, heads=2, max_positions=64, dropout=dropout))
    return m.to(dtype).train()


# --- RAML --------------------------------------------------------------------------------------

def closed_form(n, V, tau):
    """q(e) ∝ C(n, e) · exp(−e/τ) · (V − 1)^(e − e/τ), in plain floats."""
    w = [math.comb(n, e) * math.exp(-e / tau) * (V - 1) ** (e - e / tau) for e in range(n + 1)]
    return [x / sum(w) for x in w]


@pytest.mark.parametrize("tau", [0.85, 2.0])
def test_raml_edit_count_follows_its_closed_form(tau):
    tok = CharTokenizer(SPECIALS + [f"c{i}" for i in range(40)] + ["[unused1]"])  # V = 40 admissible
    assert len(admissible_ids(tok.tokens)) == 40
    n = 10
    example = ([2, 5, 6, 3] + list(range(10, 10 + n)) + [3], [0] * 4 + [1] * (n + 1))
    batch = collate([example] * 3000)
    raml = get_method("raml", {"tau": tau})
    _, drawn = raml.sample_targets(batch, raml.admissible(ctx(tok)), torch.Generator().manual_seed(0))
    counts = torch.bincount(drawn, minlength=n + 1)
    q = closed_form(n, 40, tau)
    p = chi_square_p(counts, q)
    print(f"tau {tau}: mean e {drawn.double().mean():.2f}, chi-square p {p:.3g}")
    assert p > 1e-3


def test_raml_edits_are_e_distinct_admissible_substitutions_inside_the_target():
    tok = tokenizer("[x]")
    batch = batch_of(tok)
    batch = collate([(ids, seg) for ids, seg in encode_examples(tok, PAIRS, 16, 8)] * 50, tok.pad_id)
    batch.input_ids[0, -2] = tok.unk_id if batch.pad_mask[0, -1] else batch.input_ids[0, -2]
    raml = get_method("raml", {"tau": 3.0})  # a high τ: many edits
    c = ctx(tok)
    adm = set(raml.admissible(c).tolist())
    new, drawn = raml.sample_targets(batch, raml.admissible(c), c.generator)
    tgt = (batch.segment_ids == 1) & batch.pad_mask
    last = tgt.cumsum(1) == tgt.sum(1, keepdim=True)  # the final [SEP]
    changed = new != batch.input_ids
    assert torch.equal(changed.sum(1), drawn)  # Hamming distance = e
    assert not (changed & ~(tgt & ~last)).any()  # only target tokens, never the source, [SEP] or padding
    assert set(new[changed].tolist()) <= adm and not adm & {tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id}
    assert int(drawn.max()) > 1
    # the method trains on the sampled target: labels are the next inputs
    out = raml.corrupt(batch, ctx(tok))
    sel = batch.labels != -100
    assert torch.equal(out.labels[:, :-1][sel[:, :-1]], out.input_ids[:, 1:][sel[:, :-1]])
    assert torch.equal(out.labels == -100, batch.labels == -100)


# --- word-level oracle ----------------------------------------------------------------------------

def test_word_oracle_decay_by_hand():
    m = get_method("word_oracle")  # μ = 12
    assert m.prob(0) == pytest.approx(1 / 13)
    assert m.prob(12) == pytest.approx(math.e / (12 + math.e))
    assert m.prob(24) == pytest.approx(math.e ** 2 / (12 + math.e ** 2))
    assert get_method("word_oracle", {"mu": 1.0}).prob(3) == pytest.approx(1 - 1 / (1 + math.e ** 3))
    assert get_method("word_oracle", {"mu": float("inf")}).prob(100) == 0.0


def test_word_oracle_at_mu_inf_is_baseline_bit_for_bit():
    """With dropout on, a first pass would draw dropout masks and change the second pass's: equal
    losses, gradients and random state after the step prove pass 1 was skipped."""
    tok = tokenizer()
    batch = batch_of(tok)
    results = []
    for name, params in [("baseline", {}), ("word_oracle", {"mu": float("inf")}), ("word_oracle", {"mu": 12.0})]:
        model = tiny_model(tok, torch.float32, dropout=0.1)
        torch.manual_seed(5)
        loss, _ = get_method(name, params).loss(model, batch, ctx(tok, epoch=3))
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()], torch.get_rng_state()))
    (b_loss, b_grads, b_rng), (o_loss, o_grads, o_rng), (x_loss, _, x_rng) = results
    assert torch.equal(o_loss, b_loss) and torch.equal(o_rng, b_rng)
    assert all(torch.equal(a, b) for a, b in zip(o_grads, b_grads))
    assert not torch.equal(x_rng, b_rng) and not torch.equal(x_loss, b_loss)  # a finite μ does run pass 1


def test_word_oracle_gumbel_draw_matches_the_softmax():
    logits = torch.tensor([2.0, 0.5, -1.0, 1.0, 0.0, -3.0], dtype=torch.float64)
    logp = torch.log_softmax(logits, 0)
    draws = gumbel_argmax(logp.expand(20000, 6), torch.Generator().manual_seed(0))
    p = chi_square_p(torch.bincount(draws, minlength=6), logp.exp())
    print(f"chi-square p {p:.3g}")
    assert p > 1e-3


def test_word_oracle_feeds_its_draws_where_the_coin_says():
    """At p = 1 (μ tiny, late epoch) every target input after the first is the pass-1 pick, which is
    an argmax with noise: none."""
    tok = tokenizer()
    batch = batch_of(tok)
    model = tiny_model(tok)
    m = get_method("word_oracle", {"mu": 1e-3, "noise": "none"})
    assert m.prob(1) == 1.0
    loss, logs = m.loss(model, batch, ctx(tok, epoch=1))
    with torch.no_grad():
        pred = model(batch.input_ids, batch.segment_ids, batch.pad_mask).argmax(-1)
    ids = batch.input_ids.clone()
    tgt = (batch.segment_ids == 1) & batch.pad_mask
    ids[:, 1:][tgt[:, 1:]] = pred[:, :-1][tgt[:, 1:]]
    assert logs["oracle_replaced"] == 1.0
    assert loss.item() == pytest.approx(model.target_loss(batch, input_ids=ids).item(), rel=1e-12)


# --- minimum risk training --------------------------------------------------------------------------

def test_expected_risk_and_gradient_on_three_candidates_by_hand():
    l = torch.tensor([-2.0, -3.0, -5.0], dtype=torch.float64, requires_grad=True)
    cost = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    alpha = 0.5
    risk = expected_risk(l, cost, torch.zeros(3, dtype=torch.long), alpha)
    w = [math.exp(-1.0), math.exp(-1.5), math.exp(-2.5)]
    q = [x / sum(w) for x in w]
    by_hand = q[0] * 0.2 + q[1] * 0.5 + q[2] * 0.9
    assert risk.item() == pytest.approx(by_hand, rel=1e-14)
    (g,) = torch.autograd.grad(risk.sum(), l)
    hand_grad = [alpha * qi * (ci - by_hand) for qi, ci in zip(q, [0.2, 0.5, 0.9])]  # ∂R/∂l_i = α Q_i (c_i − R)
    assert g.tolist() == pytest.approx(hand_grad, rel=1e-12)
    h = 1e-6
    for i in range(3):
        d = torch.zeros(3, dtype=torch.float64)
        d[i] = h
        fd = (expected_risk(l.detach() + d, cost, torch.zeros(3, dtype=torch.long), alpha)
              - expected_risk(l.detach() - d, cost, torch.zeros(3, dtype=torch.long), alpha)) / (2 * h)
        assert fd.item() == pytest.approx(hand_grad[i], rel=1e-6)
    # two groups are two independent sets
    two = expected_risk(torch.tensor([-2.0, -3.0, -5.0, 0.0], dtype=torch.float64),
                        torch.tensor([0.2, 0.5, 0.9, 0.4], dtype=torch.float64), torch.tensor([0, 0, 0, 1]), alpha)
    assert two.tolist() == pytest.approx([by_hand, 0.4])


def full_forward_log_prob(model, src, y):
    """log p(y | x) from one full forward over [CLS] source [SEP] y, the MLM head at every position."""
    ids = torch.tensor([src + y])
    seg = torch.tensor([[0] * len(src) + [1] * len(y)])
    logp = torch.log_softmax(model(ids, seg, torch.ones_like(ids, dtype=torch.bool)), -1)[0]
    return sum(logp[len(src) - 1 + t, tok] for t, tok in enumerate(y))


def test_sequence_log_probs_match_full_forwards():
    tok = tokenizer()
    batch = batch_of(tok)
    model = tiny_model(tok)
    cands = [(0, [9, 10, 3]), (0, [11, 3]), (2, [12, 13, 14, 15, 3]), (3, [9])]
    ours = sl.sequence_log_probs(model, batch, cands)
    src = sl.sources(batch)
    for (b, y), v in zip(cands, ours.tolist()):
        assert v == pytest.approx(full_forward_log_prob(model, src[b], y).item(), rel=1e-10)


def test_sequence_log_probs_with_the_copy_pointer_match_one_full_pass_per_candidate():
    """Shared source pass + target pass against the model's own full teacher-forced pass over each
    `[CLS] source [SEP] y` (copy continuation and coverage read the target history)."""
    tok = tokenizer()
    batch = batch_of(tok)
    torch.manual_seed(0)
    model = UniLM(ModelConfig(vocab_size=len(tok), hidden=16, layers=2, heads=2, max_positions=64, dropout=0.0,
                              copy=True, copy_continuation=2, copy_coverage=True)).double().train()
    with torch.no_grad():
        model.cls.copy.gate.bias.fill_(-2.0)  # the pointer carries real weight
        model.cls.copy.coverage.fill_(0.5)  # and coverage (it starts at 0)
    src = sl.sources(batch)
    # spans copied from the source, repeats and junk: continuation and coverage both fire
    cands = [(0, src[0][1:4] + [3]), (1, [11, 3]), (1, src[1][2:5] + src[1][2:4]), (2, [12]),
             (3, [13] + src[3][1:3] + [13, 14, 3])]
    ours = sl.sequence_log_probs(model, batch, cands)
    for (b, y), v in zip(cands, ours.tolist()):
        one = collate([(src[b] + y, [0] * len(src[b]) + [1] * len(y))])
        full = model.target_log_probs(one).gather(1, one.labels[one.labels != -100][:, None]).sum()
        assert v == pytest.approx(full.item(), rel=1e-10)


def test_mrt_risk_gradient_matches_finite_differences():
    tok = tokenizer()
    batch = batch_of(tok)
    model = tiny_model(tok)
    mrt = get_method("mrt", {"samples": 3, "alpha": 0.3, "weight": 1.0})

    def risk():
        loss, logs = mrt.loss(model, batch, ctx(tok, seed=1, max_len=5))  # same seed: same candidates
        return loss, logs

    loss, logs = risk()
    assert loss.item() == pytest.approx(float(logs["risk"]), rel=1e-12)
    loss.backward()
    params = list(model.parameters())
    g = torch.Generator().manual_seed(3)
    direction = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]
    # Row [PAD] of the embedding takes no gradient from lookups (nn.Embedding's padding_idx), but
    # untrained samples do hold [PAD] tokens: keep that row out of the comparison.
    direction[0][tok.pad_id] = 0
    analytic = sum((p.grad * d).sum() for p, d in zip(params, direction)).item()
    h = 1e-5
    with torch.no_grad():
        for p, d in zip(params, direction):
            p.add_(h * d)
    up, _ = risk()
    with torch.no_grad():
        for p, d in zip(params, direction):
            p.sub_(2 * h * d)
    down, _ = risk()
    assert analytic == pytest.approx((up.item() - down.item()) / (2 * h), rel=1e-4)
    assert abs(analytic) > 1e-6


def test_mrt_limits():
    tok = tokenizer()
    batch = batch_of(tok)
    base_model = tiny_model(tok)
    ce = base_model.target_loss(batch)
    ce.backward()
    base_grads = [p.grad.clone() for p in base_model.parameters()]

    # α → 0: Q is uniform over each set, the risk its mean cost, and its gradient vanishes
    model = tiny_model(tok)
    mrt = get_method("mrt", {"samples": 4, "alpha": 1e-9, "weight": 1.0})
    c = ctx(tok, seed=2, max_len=5)
    cands, refs = mrt.candidates(model, batch, ctx(tok, seed=2, max_len=5))
    cost = 1 - study_per_example([tok.decode(y) for _, y in cands], [tok.decode(refs[b]) for b, _ in cands])["rouge_l"]
    mean_cost = [cost[[i for i, (b, _) in enumerate(cands) if b == k]].mean() for k in range(len(refs))]
    loss, _ = mrt.loss(model, batch, c)
    assert loss.item() == pytest.approx(sum(mean_cost) / len(mean_cost), rel=1e-7)
    loss.backward()
    assert max(p.grad.abs().max().item() for p in model.parameters()) < 1e-7
    assert any(len([1 for b, _ in cands if b == k]) > 2 for k in range(len(refs)))  # real sets, not singletons

    # S = 1 without the reference: one candidate, Q = 1, no risk gradient: the step is MLE's, scaled
    model = tiny_model(tok)
    mrt = get_method("mrt", {"samples": 1, "reference": False, "weight": 0.25})
    loss, logs = mrt.loss(model, batch, ctx(tok, seed=3, max_len=5))
    loss.backward()
    for p, g in zip(model.parameters(), base_grads):
        torch.testing.assert_close(p.grad, 0.75 * g, rtol=1e-12, atol=1e-15)
    drawn = sample_ids(model.eval(), sl.sources(batch), 1, 5, tok.sep_id, generator=torch.Generator().manual_seed(3))
    rouge = study_per_example([tok.decode(ys[0]) for ys in drawn], [tok.decode(r) for r in sl.references(batch)])
    assert float(logs["risk"]) == pytest.approx(1 - rouge["rouge_l"].mean(), rel=1e-12)


# --- SCST -------------------------------------------------------------------------------------------

def test_scst_advantage_is_the_study_scorers_reward_difference():
    tok = tokenizer()
    batch = batch_of(tok)
    model = tiny_model(tok)
    scst = get_method("scst", {"samples": 3, "gamma": 1.0})
    loss, logs = scst.loss(model, batch, ctx(tok, seed=4, max_len=6))
    # independent: the samples from the decoder with the same stream, greedy texts from decode_texts
    drawn = sample_ids(model.eval(), sl.sources(batch), 3, 6, tok.sep_id, generator=torch.Generator().manual_seed(4))
    model.train()
    greedy = decode_texts(model, tok, [p.source for p in PAIRS], 1, 16, 6)
    refs = [p.target for p in PAIRS]
    r_greedy = study_per_example(greedy, refs)["rouge_l"]
    expected, logp = [], []
    for b, ys in enumerate(drawn):
        r = study_per_example([tok.decode(y) for y in ys], [refs[b]] * len(ys))["rouge_l"]
        expected.append((r - r_greedy[b]).tolist())
        logp += [full_forward_log_prob(model, sl.sources(batch)[b], y) for y in ys]
    best = sl.greedy(model, batch, 6, tok.sep_id)
    ours = advantages(tok, drawn, best, sl.references(batch))
    assert [x for row in ours for x in row] == pytest.approx([x for row in expected for x in row], abs=1e-15)
    a = torch.tensor([x for row in expected for x in row], dtype=torch.float64)
    assert loss.item() == pytest.approx(-(a * torch.stack(logp)).mean().item(), rel=1e-10)
    assert any(x != 0 for row in expected for x in row)


def test_scst_gives_no_sample_a_positive_advantage_once_greedy_is_the_reference():
    tok = tokenizer()
    pairs = PAIRS[:2]
    batch = batch_of(tok, pairs)
    model = tiny_model(tok, torch.float32, hidden=32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    refs = sl.references(batch)
    for step in range(300):
        opt.zero_grad()
        model.target_loss(batch).backward()
        opt.step()
        if step % 25 == 24 and sl.greedy(model, batch, 8, tok.sep_id) == refs:
            break
    best = sl.greedy(model, batch, 8, tok.sep_id)
    assert best == refs  # the model has learnt the references
    drawn = sl.sample(model, batch, 8, 3.0, 8, tok.sep_id, torch.Generator().manual_seed(0))
    adv = advantages(tok, drawn, best, refs)
    others = [a for ys, row, r in zip(drawn, adv, refs) for y, a in zip(ys, row) if y != r]
    assert others and all(a <= 0 for a in others)
    assert any(a < 0 for a in others)
    assert all(a == 0 for ys, row, r in zip(drawn, adv, refs) for y, a in zip(ys, row) if y == r)
