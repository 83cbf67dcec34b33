"""Methods against independent truth: random replacement's shares and pools, the gradient penalty
against torch.autograd.grad and finite differences, the zero-strength limits of scheduled sampling
and FGM, a spec with every method end to end, and the training-step benchmark."""

import json
import math
import random

import pytest
import torch
import torch.nn.functional as F
import yaml
from typer.testing import CliRunner

from exposure_cli.batching import collate
from exposure_cli.cli import app
from exposure_cli.data import read_pairs
from exposure_cli.errors import UserError
from exposure_cli.methods import StepContext, available, get_method, validate_method
from exposure_cli.model import ModelConfig, UniLM, target_history
from exposure_cli.spec import MethodSpec, method_label

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_thread")


def ctx(step=0, total=10, seed=0, label_smoothing=0.0):
    return StepContext(step, total, torch.Generator().manual_seed(seed), random.Random(seed), label_smoothing)


def tiny_model(dtype=torch.float64, vocab=40, seed=0, hidden=16, layers=2, **options):
    torch.manual_seed(seed)
    m = UniLM(ModelConfig(vocab_size=vocab, hidden=hidden, layers=layers, heads=2, max_positions=64, dropout=0.0,
                          **options))
    return m.to(dtype).train()


def tiny_batch(n=4, vocab=40, seed=0, copying=False):
    """n random examples; with `copying` each target is a span of its source, so a copy pointer's
    continuation and coverage terms fire."""
    g = torch.Generator().manual_seed(seed)
    ex = []
    for _ in range(n):
        s, t = int(torch.randint(3, 9, (1,), generator=g)), int(torch.randint(2, 6, (1,), generator=g))
        src = torch.randint(5, vocab, (s,), generator=g).tolist()
        tgt = torch.randint(5, vocab, (t,), generator=g).tolist()
        if copying:
            start = int(torch.randint(0, max(1, s - t + 1), (1,), generator=g))
            tgt = (src[start:] + tgt)[:t]
        ex.append(([2] + src + [3] + tgt + [3], [0] * (s + 2) + [1] * (t + 1)))
    return collate(ex)


def chi_square(observed: torch.Tensor, expected: torch.Tensor) -> tuple[float, int]:
    """Pearson's statistic and its degrees of freedom over bins expected to hold at least 5."""
    keep = expected >= 5
    o, e = observed[keep].double(), expected[keep].double()
    e = e * o.sum() / e.sum()
    return ((o - e) ** 2 / e).sum().item(), int(keep.sum()) - 1


def chi2_999(df: int) -> float:
    """The chi-square distribution's 0.999 quantile, Wilson-Hilferty's approximation (within 1% of
    scipy.stats.chi2.ppf for df ≥ 9: 28.06 vs 27.88 at 9, 59.80 vs 59.70 at 30): a correct sampler
    exceeds it once in a thousand seeds; the seeds here are fixed."""
    a = 2 / (9 * df)
    return df * (1 - a + 3.0902 * a ** 0.5) ** 3


# --- registry ---------------------------------------------------------------------------------

def test_registry_lists_every_method_and_validates_params():
    assert available() == ["adversarial", "baseline", "gradient_penalty", "mrt", "raml", "random_replace",
                           "scheduled_sampling", "scst", "word_oracle"]
    assert validate_method("random_replace", {"prob": 1, "ratio": 0.2}) == {"prob": 1.0, "ratio": 0.2}
    bad = [("random_replace", {"rate": 0.1}, "methods.random_replace.rate: unknown parameter"),
           ("random_replace", {"ratio": "lots"}, "methods.random_replace.ratio: expected a number"),
           ("random_replace", {"pool": "vocab"}, "methods.random_replace.pool: expected one of target, sequence"),
           ("gradient_penalty", {"scope": "all"}, "methods.gradient_penalty.scope: expected one of"),
           ("scheduled_sampling", {"max_prob": 1.5}, "methods.scheduled_sampling.max_prob: expected a number in"),
           ("adversarial", {"norm": 2}, "methods.adversarial.norm: expected a string"),
           ("raml", {"tau": 0}, "methods.raml.tau: expected a number in"),
           ("word_oracle", {"mu": -1}, "methods.word_oracle.mu: expected a number in"),
           ("mrt", {"samples": 9}, "methods.mrt.samples: expected a number in"),
           ("scst", {"reward": "cider"}, "methods.scst.reward: expected one of rouge_l, bleu")]
    for name, params, msg in bad:
        with pytest.raises(UserError, match="^" + msg.replace(".", r"\.")) as e:
            validate_method(name, params)
        assert "\n" not in str(e.value)
    assert get_method("scheduled_sampling", {"schedule": "linear"}).label() == "scheduled_sampling(schedule=linear)"


# --- random replacement ----------------------------------------------------------------------

def distinct_token_batch(n, seed=0):
    """Examples whose tokens are all distinct except [SEP], so a draw rarely equals what it replaces."""
    g = torch.Generator().manual_seed(seed)
    ex = []
    for _ in range(n):
        s, t = int(torch.randint(150, 201, (1,), generator=g)), int(torch.randint(20, 31, (1,), generator=g))
        toks = (torch.randperm(3000, generator=g)[: s + t] + 10).tolist()
        ex.append(([2] + toks[:s] + [3] + toks[s:] + [3], [0] * (s + 2) + [1] * (t + 1)))
    return collate(ex)


def test_random_replace_shares_pool_and_untouched_positions():
    """Over 10,000 examples: corrupted share 0.5, replaced share 0.3 of candidates, draws from the pool.

    Measured two ways. (1) The method's own decisions (`decide`, the hook corrupt() uses). (2) From
    the output alone: with every token of an example distinct except [SEP], a replacement leaves the
    token unchanged only when the draw hits the same position (or the other [SEP]), with probability
    1/n or 2/n, n ≈ 200; the expected visible share is therefore ratio · (1 − E[q]), computed exactly
    below. A corrupted example shows no change only with probability ≈ 0.7^31 ≈ 2e-5.
    """
    batch = distinct_token_batch(10_000)
    m = get_method("random_replace", {"pool": "sequence"})
    corrupted, replaced, _ = m.decide(batch, torch.Generator().manual_seed(1))
    out = m.corrupt(batch, ctx(seed=1))  # the same seed: the same decisions
    cand = (batch.segment_ids == 1) & batch.pad_mask
    assert abs(corrupted.float().mean().item() - 0.5) < 0.02
    assert abs(replaced[corrupted].sum().item() / cand[corrupted].sum().item() - 0.3) < 0.02
    changed = out.input_ids != batch.input_ids
    assert not (changed & ~replaced).any()  # every change is a replacement decision

    # (2) observed, independent of decide()
    seen = changed.any(1)
    assert abs(seen.float().mean().item() - 0.5) < 0.02
    n = batch.pad_mask.sum(1, keepdim=True).float()
    q = torch.where(batch.input_ids == 3, 2 / n, 1 / n)  # chance a draw equals the token it replaces
    expected = 0.3 * (1 - q[cand & seen[:, None]].mean().item())
    assert abs(changed[seen].sum().item() / cand[seen].sum().item() - expected) < 0.02

    # every replacement is a token of the same example; source, padding and labels untouched
    srt = batch.input_ids.masked_fill(~batch.pad_mask, -1).sort(1).values
    pos = torch.searchsorted(srt, out.input_ids).clamp_max(srt.shape[1] - 1)
    assert (srt.gather(1, pos) == out.input_ids)[changed].all()
    assert torch.equal(out.input_ids[~cand], batch.input_ids[~cand])
    assert torch.equal(out.labels, batch.labels) and torch.equal(out.segment_ids, batch.segment_ids)


def test_random_replace_target_pool_draws_only_target_tokens():
    batch = distinct_token_batch(2000, seed=3)
    out = get_method("random_replace", {"prob": 1.0, "ratio": 0.5}).corrupt(batch, ctx(seed=2))
    cand = (batch.segment_ids == 1) & batch.pad_mask
    changed = out.input_ids != batch.input_ids
    assert changed.sum() > 10_000
    srt = batch.input_ids.masked_fill(~cand, -1).sort(1).values  # the example's target tokens and [SEP]
    pos = torch.searchsorted(srt, out.input_ids).clamp_max(srt.shape[1] - 1)
    assert (srt.gather(1, pos) == out.input_ids)[changed].all()
    assert torch.equal(out.input_ids[~cand], batch.input_ids[~cand])
    # the pool includes the final [SEP]: some target tokens become [SEP]
    assert (out.input_ids[changed] == 3).any()


@pytest.mark.parametrize("pool", ["target", "sequence"])
def test_random_replace_draws_uniformly_over_the_pool(pool):
    """Every candidate replaced (prob = ratio = 1) in 3,000 examples of one shape, [CLS] 20 source
    tokens [SEP] 9 target tokens [SEP], the 29 a fresh permutation each time: each replacement is
    traced back to the position of the example holding its token, and those positions are counted
    against the pool's uniform distribution by position (chi-square). `target`: the 10 segment-1
    positions, 1/10 each; `sequence`: all 32, 1/32 each, except that both [SEP]s are one bin (2/32)."""
    g = torch.Generator().manual_seed(5)
    ex = []
    for _ in range(3000):
        toks = (torch.randperm(29, generator=g) + 10).tolist()
        ex.append(([2] + toks[:20] + [3] + toks[20:] + [3], [0] * 22 + [1] * 10))
    batch = collate(ex)
    out = get_method("random_replace", {"prob": 1.0, "ratio": 1.0, "pool": pool}).corrupt(batch, ctx(seed=7))
    cand = (batch.segment_ids == 1) & batch.pad_mask
    B, L = batch.input_ids.shape
    where = torch.full((B, 39), -1).scatter_(1, batch.input_ids, torch.arange(L).expand(B, L).contiguous())
    where[:, 3] = L - 1  # [SEP]: the final one's bin
    source_of = where.gather(1, out.input_ids)[cand]
    assert (source_of >= 0).all()  # every replacement is a token of its example
    observed = torch.bincount(source_of, minlength=L)
    n = int(cand.sum())
    if pool == "target":
        expected = torch.zeros(L)
        expected[22:] = n / 10
    else:
        expected = torch.full((L,), n / 32)
        expected[21], expected[L - 1] = 0, 2 * n / 32
    assert observed[expected == 0].sum() == 0  # nothing outside the pool
    stat, df = chi_square(observed, expected)
    assert df == (9 if pool == "target" else 30), df
    assert stat < chi2_999(df), stat


# --- gradient penalty ------------------------------------------------------------------------

def independent_ce(model, batch, e):
    """Mean target cross-entropy from full-sequence logits and a hand-written log-softmax gather."""
    h = model.hidden_states(None, batch.segment_ids, batch.pad_mask, inputs_embeds=e)
    logp = torch.log_softmax(model.logits(h), -1)
    sel = batch.labels != -100
    return -logp[sel].gather(1, batch.labels[sel][:, None]).mean()


@pytest.mark.parametrize("scope", ["inputs", "embedding_rows"])
def test_gradient_penalty_value_matches_autograd(scope):
    model, batch = tiny_model(), tiny_batch()
    model.double_backward = True
    loss, logs = get_method("gradient_penalty", {"scope": scope}).loss(model, batch, ctx())

    e = model.word_embeddings.weight.detach()[batch.input_ids].requires_grad_()
    ce = independent_ce(model, batch, e)
    (g,) = torch.autograd.grad(ce, e)
    rows = g.pow(2).sum().item()
    assert g[~batch.pad_mask].abs().max() == 0  # padding rows' gradients are exactly zero
    expected = rows
    if scope == "embedding_rows":
        # the output head's use of E alone: the same head, with E replaced by a separate leaf W
        W = model.word_embeddings.weight.detach().clone().requires_grad_()
        h = model.hidden_states(None, batch.segment_ids, batch.pad_mask, inputs_embeds=e.detach())
        sel = batch.labels != -100
        logits = F.linear(model.cls.predictions.transform(h[sel]), W, model.cls.predictions.bias)
        (gW,) = torch.autograd.grad(F.cross_entropy(logits, batch.labels[sel]), W)
        frob = gW.pow(2).sum().item()
        assert float(logs["penalty_output"]) == pytest.approx(frob, rel=1e-10)
        assert frob > 0.01 * rows  # the term is not negligible, so the check means something
        expected = rows + frob
    assert float(logs["ce"]) == pytest.approx(ce.item(), rel=1e-12)
    assert float(logs["penalty"]) == pytest.approx(expected, rel=1e-10)
    assert loss.item() == pytest.approx(ce.item() + 0.5 * expected, rel=1e-12)


# csl.yaml's model and loss: the copy pointer with both terms, pre-LN blocks, label smoothing 0.1
SHIPPED = {"copy": True, "copy_continuation": 3, "copy_coverage": True, "pre_ln": True}


@pytest.mark.parametrize("scope,settings", [("inputs", "plain"), ("embedding_rows", "plain"),
                                            ("inputs", "shipped"), ("embedding_rows", "shipped")])
def test_gradient_penalty_gradient_matches_finite_differences(scope, settings):
    shipped = settings == "shipped"
    model = tiny_model(**(SHIPPED if shipped else {}))
    batch = tiny_batch(copying=shipped)
    smoothing = 0.1 if shipped else 0.0
    model.double_backward = True
    method = get_method("gradient_penalty", {"epsilon": 5.0, "scope": scope})  # a penalty big enough to matter
    model.zero_grad()
    method.loss(model, batch, ctx(label_smoothing=smoothing))[0].backward()
    params = dict(model.named_parameters())
    picks = [("bert.embeddings.word_embeddings.weight", (7, 3)), ("bert.encoder.layer.0.attention.self.query.weight", (1, 2)),
             ("bert.encoder.layer.1.intermediate.dense.weight", (5, 4)), ("bert.embeddings.LayerNorm.weight", (6,)),
             ("cls.predictions.transform.dense.weight", (0, 9)), ("cls.predictions.bias", (12,))]
    if shipped:
        picks += [("bert.encoder.layer.1.output.LayerNorm.weight", (3,)), ("cls.copy.gate.weight", (0, 5)),
                  ("cls.copy.query.weight", (2, 7)), ("cls.copy.continuation", (0,)), ("cls.copy.continuation", (1,)),
                  ("cls.copy.coverage", ())]
    for name, idx in picks:
        p, h = params[name], 1e-5
        assert p.grad[idx] != 0, name  # each pick takes part in the loss
        orig = p[idx].item()
        p.data[idx] = orig + h
        up = method.loss(model, batch, ctx(label_smoothing=smoothing))[0].item()
        p.data[idx] = orig - h
        down = method.loss(model, batch, ctx(label_smoothing=smoothing))[0].item()
        p.data[idx] = orig
        fd = (up - down) / (2 * h)
        assert p.grad[idx].item() == pytest.approx(fd, rel=1e-6, abs=1e-9), name


def test_gradient_penalty_under_bf16_follows_the_fp32_gradient_and_trains():
    """The plain-ops attention path under bf16 autocast: the penalty's gradient points where the
    fp32 one does (cosine > 0.95), and training lowers both the loss and the penalty it is told to."""
    model, batch = tiny_model(torch.float32, hidden=32), tiny_batch(8)
    model.double_backward = True
    gp = get_method("gradient_penalty", {"epsilon": 5.0})
    grads = {}
    for key, on in (("bf16", True), ("fp32", False)):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=on):
            loss, _ = gp.loss(model, batch, ctx())
        loss.backward()
        grads[key] = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    assert F.cosine_similarity(grads["bf16"], grads["fp32"], dim=0) > 0.95
    gp = get_method("gradient_penalty")
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses, pens = [], []
    for _ in range(40):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, logs = gp.loss(model, batch, ctx())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        pens.append(float(logs["penalty"]))
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < 0.5 * losses[0]
    assert pens[-1] < pens[0]


# --- zero-strength limits and the extra passes -----------------------------------------------

def baseline_loss_and_grads(model, batch):
    model.zero_grad()
    loss, _ = get_method("baseline").loss(model, batch, ctx())
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def test_scheduled_sampling_at_p0_and_fgm_at_eps0_reproduce_the_baseline():
    model, batch = tiny_model(torch.float32), tiny_batch()
    base, base_grads = baseline_loss_and_grads(model, batch)

    ss = get_method("scheduled_sampling", {"schedule": "constant", "max_prob": 0.0})
    model.zero_grad()
    loss, logs = ss.loss(model, batch, ctx())
    loss.backward()
    assert logs["ss_replaced"] == 0
    assert torch.equal(loss.detach(), base)
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), base_grads))

    fgm = get_method("adversarial", {"epsilon": 0.0, "weight": 0.7})
    model.zero_grad()
    loss, logs = fgm.loss(model, batch, ctx())
    loss.backward()
    assert logs["ce"] == base.item() and logs["adv"] == base.item()  # the adversarial pass is the clean one
    assert torch.equal(loss.detach(), base + 0.7 * base)
    for p, g in zip(model.parameters(), base_grads):
        torch.testing.assert_close(p.grad, 1.7 * g, rtol=1e-5, atol=1e-7)


def test_scheduled_sampling_at_p1_feeds_the_first_pass_predictions():
    model, batch = tiny_model(), tiny_batch()
    ss = get_method("scheduled_sampling", {"schedule": "constant", "max_prob": 1.0})
    loss, logs = ss.loss(model, batch, ctx())
    # independent: full-sequence logits on gold inputs, argmax, shifted one right onto segment 1
    with torch.no_grad():
        pred = model(batch.input_ids, batch.segment_ids, batch.pad_mask).argmax(-1)
    ids = batch.input_ids.clone()
    tgt = (batch.segment_ids == 1) & batch.pad_mask
    ids[:, 1:][tgt[:, 1:]] = pred[:, :-1][tgt[:, 1:]]
    assert logs["ss_replaced"] == 1.0
    assert loss.item() == pytest.approx(model.target_loss(batch, input_ids=ids).item(), rel=1e-12)


def test_scheduled_sampling_at_an_intermediate_probability_replaces_that_share():
    """p = 0.3 over 600 examples: the replaced share of the candidate positions is 0.3 (± 4σ), the
    mixed input is the gold one with pass 1's argmax (from full-sequence logits, computed here)
    shifted in at exactly the replaced positions, and the share of candidates seen to change where
    that argmax differs from gold is 0.3 too (read from the output alone)."""
    model, batch = tiny_model(), tiny_batch(600, seed=4)
    ss = get_method("scheduled_sampling", {"schedule": "constant", "max_prob": 0.3})
    mixed, replaced = ss.mix(model, batch, ss.prob(0, 10), torch.Generator().manual_seed(3))
    with torch.no_grad():
        pred = model(batch.input_ids, batch.segment_ids, batch.pad_mask).argmax(-1)
    cand = torch.zeros_like(replaced)
    cand[:, 1:] = (batch.labels != -100)[:, :-1]  # the inputs right after a target-predicting position
    assert torch.equal(cand, (batch.segment_ids == 1) & batch.pad_mask)
    assert not (replaced & ~cand).any()
    n = int(cand.sum())
    sigma = (0.3 * 0.7 / n) ** 0.5
    assert abs(replaced.sum().item() / n - 0.3) < 4 * sigma
    expected = batch.input_ids.clone()
    expected[:, 1:] = torch.where(replaced[:, 1:], pred[:, :-1], batch.input_ids[:, 1:])
    assert torch.equal(mixed, expected)
    differs = torch.zeros_like(cand)
    differs[:, 1:] = pred[:, :-1] != batch.input_ids[:, 1:]
    visible = cand & differs
    assert visible.sum() > 0.8 * n
    assert abs((mixed != batch.input_ids)[visible].float().mean().item() - 0.3) < 4 * (0.21 / int(visible.sum())) ** 0.5
    loss, logs = ss.loss(model, batch, ctx(seed=3))
    assert logs["ss_prob"] == 0.3 and logs["ss_replaced"] == replaced.sum().item() / n
    assert loss.item() == pytest.approx(model.target_loss(batch, input_ids=expected).item(), rel=1e-12)


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_scheduled_sampling_samples_from_the_tempered_softmax(temperature):
    """`predict: sample`: one example repeated 4,000 times, every input replaced (p = 1): at each
    target position the drawn tokens' counts match softmax(logits / T) of that position, computed
    here from full-sequence logits (chi-square). The output bias is spread out so that T matters:
    at T = 0.5 and 2 the tempered distributions are far from the untempered one."""
    model = tiny_model()
    with torch.no_grad():
        model.cls.predictions.bias.copy_(torch.randn(40, generator=torch.Generator().manual_seed(1)) * 2)
    one = tiny_batch(1, seed=6)
    batch = collate([(one.input_ids[0].tolist(), one.segment_ids[0].tolist())] * 4000)
    ss = get_method("scheduled_sampling", {"schedule": "constant", "max_prob": 1.0, "predict": "sample",
                                           "temperature": temperature})
    mixed, replaced = ss.mix(model, batch, 1.0, torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits = model(one.input_ids, one.segment_ids, one.pad_mask)[0].double()
    positions = torch.nonzero(replaced[0]).flatten().tolist()
    assert len(positions) >= 3 and replaced.all(0)[positions].all()
    total, df = 0.0, 0
    for t in positions:
        observed = torch.bincount(mixed[:, t], minlength=40)
        expected = torch.softmax(logits[t - 1] / temperature, -1) * 4000
        stat, d = chi_square(observed, expected)
        total, df = total + stat, df + d
        untempered, _ = chi_square(observed, torch.softmax(logits[t - 1], -1) * 4000)
        assert untempered > chi2_999(d), t  # the test can tell T from 1
    assert total < chi2_999(df), (total, df)


def test_scheduled_sampling_predicts_with_the_copy_pointer():
    """Pass 1 uses the model's whole distribution: with the pointer made dominant, its guesses are
    source tokens, not the MLM head's argmax."""
    torch.manual_seed(0)
    model = UniLM(ModelConfig(vocab_size=40, hidden=16, layers=2, heads=2, max_positions=64, dropout=0.0,
                              copy=True, copy_continuation=2, copy_coverage=True)).to(torch.float64).train()
    with torch.no_grad():
        model.cls.copy.gate.bias.fill_(-5.0)  # p_gen ≈ 0.007: the pointer decides
    batch = tiny_batch()
    ss = get_method("scheduled_sampling", {"schedule": "constant", "max_prob": 1.0})
    loss, logs = ss.loss(model, batch, ctx())
    # independent: every position's distribution from full hidden states, argmax, shifted one right
    L = batch.input_ids.shape[1]
    with torch.no_grad():
        h = model.hidden_states(batch.input_ids, batch.segment_ids, batch.pad_mask)
        first = (batch.segment_ids == 0).logical_and(batch.pad_mask).sum(1) - 1
        history = target_history(batch.input_ids, first, torch.arange(L).expand(len(first), L), L)
        memory = model.source_memory(h, batch.input_ids, batch.segment_ids, batch.pad_mask)
        pred = model.log_probs(h, memory, history).argmax(-1)
        mlm_only = model.logits(h).argmax(-1)
    tgt = (batch.segment_ids == 1) & batch.pad_mask
    assert not torch.equal(pred[:, :-1][tgt[:, 1:]], mlm_only[:, :-1][tgt[:, 1:]])  # the pointer matters here
    ids = batch.input_ids.clone()
    ids[:, 1:][tgt[:, 1:]] = pred[:, :-1][tgt[:, 1:]]
    assert logs["ss_replaced"] == 1.0
    assert loss.item() == pytest.approx(model.target_loss(batch, input_ids=ids).item(), rel=1e-12)


def test_scheduled_sampling_schedules():
    def p(schedule, f, **kw):
        return get_method("scheduled_sampling", {"schedule": schedule, "max_prob": 0.5, **kw}).prob(int(f * 100), 100)

    assert p("linear", 0) == 0 and p("linear", 0.5) == 0.25 and p("linear", 1) == 0.5
    assert p("exponential", 0) == 0 and p("exponential", 1, k=3.0) == pytest.approx(0.5 * (1 - math.exp(-3)))
    assert p("inverse_sigmoid", 0.3, c=0.3) == pytest.approx(0.25) and p("inverse_sigmoid", 1) == pytest.approx(0.5 / (1 + math.exp(-5)))
    assert p("constant", 0) == 0.5


@pytest.mark.parametrize("norm", ["batch", "example", "position"])
def test_fgm_moves_uphill_by_epsilon_times_the_gradient_norm(norm):
    """To first order, CE(e + ε g/‖g‖) − CE(e) = ε Σ‖g‖²/‖g‖ over each normalised group."""
    model, batch = tiny_model(), tiny_batch()
    eps = 1e-5
    _, logs = get_method("adversarial", {"epsilon": eps, "norm": norm}).loss(model, batch, ctx())
    e = model.word_embeddings.weight.detach()[batch.input_ids].requires_grad_()
    (g,) = torch.autograd.grad(independent_ce(model, batch, e), e)
    dims = {"batch": (0, 1, 2), "example": (1, 2), "position": (2,)}[norm]
    rise = (g.pow(2).sum(dims) / g.pow(2).sum(dims).sqrt().clamp_min(1e-300)).sum().item()
    assert float(logs["adv"] - logs["ce"]) / eps == pytest.approx(rise, rel=1e-3)


# --- end to end ------------------------------------------------------------------------------

def test_a_spec_with_every_method_runs_end_to_end(tmp_path, prepared_data):
    CSL = prepared_data / "csl"
    spec = {
        "name": "methods-e2e",
        "data": {"train": str(CSL / "train.tsv"), "dev": str(CSL / "dev.tsv"), "test": str(CSL / "test.tsv"),
                 "train_limit": 24, "test_limit": 2},
        "model": {"layers": 1, "hidden": 32, "heads": 2, "max_len": 64, "max_target_len": 12, "dropout": 0.0},
        "train": {"epochs": 1, "batch_size": 12, "lr": 1e-3, "seeds": [0], "dev_size": 2, "log_every": 1},
        "decode": {"beams": [1], "max_len": 4},
        # the warm-started ones first: the runner still trains baseline before them
        "methods": [{"mrt": {"samples": 2}}, {"scst": {"samples": 2, "reward": "bleu"}},
                    "baseline", {"random_replace": {"pool": "sequence"}}, {"random_replace": {"ratio": 0.2}},
                    "gradient_penalty", {"gradient_penalty": {"scope": "embedding_rows"}},
                    {"scheduled_sampling": {"schedule": "linear", "max_prob": 0.5}},
                    {"adversarial": {"epsilon": 0.5, "norm": "example"}}, "raml", {"word_oracle": {"mu": 1.0}}],
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    res = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    rows = json.loads((tmp_path / "out" / "summary.json").read_text())["rows"]
    assert [r["method"] for r in rows] == [
        "mrt(samples=2)", "scst(samples=2, reward=bleu)",
        "baseline", "random_replace(pool=sequence)", "random_replace(ratio=0.2)", "gradient_penalty",
        "gradient_penalty(scope=embedding_rows)", "scheduled_sampling(schedule=linear, max_prob=0.5)",
        "adversarial(epsilon=0.5, norm=example)", "raml", "word_oracle(mu=1.0)"]
    out = tmp_path / "out"
    log = (out / "gradient_penalty" / "seed0" / "train.jsonl").read_text().splitlines()
    assert "penalty" in json.loads(log[0])
    for name, key in [("mrt-samples=2", "risk"), ("scst-samples=2-reward=bleu", "rl"), ("word_oracle-mu=1.0", "oracle_prob")]:
        assert key in json.loads((out / name / "seed0" / "train.jsonl").read_text().splitlines()[0])
    base = json.loads((out / "baseline" / "seed0" / "metrics.json").read_text())
    for name in ("mrt-samples=2", "scst-samples=2-reward=bleu"):
        warm = json.loads((out / name / "seed0" / "metrics.json").read_text())["warm_start"]
        assert warm == {"from": str(out / "baseline" / "seed0"), "train_seconds": base["train_seconds"],
                        "train_cpu_seconds": base["train_cpu_seconds"], "dev_seconds": base["dev_seconds"],
                        "epochs": base["epochs"]}


def test_a_warm_started_method_starts_from_its_baselines_best_weights(tmp_path, prepared_data):
    from exposure_cli.runner.grid import make_tasks, stages
    from exposure_cli.spec import spec_from_dict
    from exposure_cli.train import prepare_run, run_one

    CSL = prepared_data / "csl"
    spec = spec_from_dict({
        "name": "warm", "data": {"train": str(CSL / "train.tsv"), "dev": str(CSL / "dev.tsv"),
                                 "test": str(CSL / "test.tsv"), "train_limit": 12, "test_limit": 2},
        "model": {"layers": 1, "hidden": 16, "heads": 2, "max_len": 64, "max_target_len": 8, "dropout": 0.0},
        "train": {"epochs": 1, "batch_size": 12, "seeds": [0, 1], "dev_size": 2}, "decode": {"beams": [1], "max_len": 4},
        "methods": ["scst", "baseline", "mrt"]})
    tasks = make_tasks(spec, tmp_path, torch.device("cpu"), 1)
    first, second = stages(tasks)
    assert [(t.label, t.seed) for t in first] == [("baseline", 0), ("baseline", 1)]
    assert {(t.label, t.seed, t.init_from) for t in second} == {
        (m, s, str(tmp_path / "baseline" / f"seed{s}")) for m in ("scst", "mrt") for s in (0, 1)}
    # without the baseline's best.pt the run fails with a reason, and nothing is trained
    res = run_one(spec, spec.methods[0], 0, tmp_path / "scst" / "seed0", torch.device("cpu"),
                  init_from=tmp_path / "baseline" / "seed0")
    assert "warm start" in res["failed"]["reason"] and not (tmp_path / "scst" / "seed0" / "train.jsonl").exists()
    run_one(spec, spec.methods[1], 0, tmp_path / "baseline" / "seed0", torch.device("cpu"))
    best = torch.load(tmp_path / "baseline" / "seed0" / "best.pt", weights_only=True)["model"]
    run = prepare_run(spec, spec.methods[2], 0, tmp_path / "mrt" / "seed0", torch.device("cpu"),
                      init_from=tmp_path / "baseline" / "seed0")
    assert all(torch.equal(v, best[k]) for k, v in run.model.state_dict().items())
    cold = prepare_run(spec, spec.methods[1], 0, tmp_path / "cold" / "seed0", torch.device("cpu"))
    assert not all(torch.equal(v, best[k]) for k, v in cold.model.state_dict().items())
    # a finished warm-started run records its start; decoded again after damage, it still does
    d = tmp_path / "scst" / "seed0"
    (d / "failed.json").unlink()
    first = run_one(spec, spec.methods[0], 0, d, torch.device("cpu"), init_from=tmp_path / "baseline" / "seed0")
    assert first["warm_start"]["from"] == str(tmp_path / "baseline" / "seed0")
    with open(d / "predictions.beam1.tsv", "a", encoding="utf-8") as f:
        f.write("damage\n")
    again = run_one(spec, spec.methods[0], 0, d, torch.device("cpu"), init_from=tmp_path / "baseline" / "seed0")
    assert again["warm_start"] == first["warm_start"] and again["test"] == first["test"]


def warm_spec(CSL, **mrt):
    from exposure_cli.spec import spec_from_dict

    return spec_from_dict({
        "name": "warm", "data": {"train": str(CSL / "train.tsv"), "dev": str(CSL / "dev.tsv"),
                                 "test": str(CSL / "test.tsv"), "train_limit": 12, "test_limit": 2},
        "model": {"layers": 1, "hidden": 16, "heads": 2, "max_len": 64, "max_target_len": 8, "dropout": 0.0},
        "train": {"epochs": 1, "batch_size": 12, "seeds": [0], "dev_size": 2, "lr": 1e-3},
        "decode": {"beams": [1], "max_len": 4}, "methods": ["baseline", {"mrt": {"samples": 2, **mrt}}]})


@pytest.mark.parametrize("method", ["mrt", "scst"])
def test_a_fine_tuning_runs_at_its_own_rate_and_labels_it(tmp_path, prepared_data, method):
    from exposure_cli.train import prepare_run, run_one

    spec = warm_spec(prepared_data / "csl")
    assert "failed" not in run_one(spec, spec.methods[0], 0, tmp_path / "baseline" / "seed0", torch.device("cpu"))
    rates = {}
    for params in ({}, {"lr": 3e-5}):
        ms = MethodSpec(method, params)
        run = prepare_run(spec, ms, 0, tmp_path / method_label(ms) / "seed0", torch.device("cpu"),
                          init_from=tmp_path / "baseline" / "seed0")
        rates[method_label(ms)] = [g["initial_lr"] for g in run.opt.param_groups]
    assert rates == {method: [1e-3], f"{method}(lr=3e-05)": [3e-5]}


@pytest.mark.parametrize("keep", [True, False])
def test_keep_start_makes_the_start_a_selection_candidate(tmp_path, prepared_data, keep):
    from exposure_cli.train import run_one

    spec = warm_spec(prepared_data / "csl", keep_start=keep)
    start = tmp_path / "baseline" / "seed0"
    base = run_one(spec, spec.methods[0], 0, start, torch.device("cpu"))
    # a start no fine-tuned epoch can beat on dev: with the start a candidate, selection keeps it
    ck = torch.load(start / "best.pt", weights_only=True)
    ck["dev"]["bleu"] = 101.0
    torch.save(ck, start / "best.pt")
    d = tmp_path / "mrt" / "seed0"
    d.mkdir(parents=True)
    (d / "train.jsonl").write_text('{"step": 99, "loss": 1.0}\n')  # a process killed before its first checkpoint
    res = run_one(spec, spec.methods[1], 0, d, torch.device("cpu"), init_from=start)
    log = [json.loads(line) for line in (d / "train.jsonl").read_text().splitlines()]
    assert all(e.get("step") != 99 for e in log)  # its lines are dropped: that work was redone
    dev = [e for e in log if "dev" in e]
    if keep:
        assert res["best_epoch"] == 0 and res["dev_bleu"] == 101.0 and res["test"] == base["test"]
        assert dev[0]["epoch"] == 0 and dev[0]["dev"]["bleu"] == 101.0 and dev[0]["start"] == str(start)
        assert [e["best"] for e in dev] == [True, False]
    else:
        assert res["best_epoch"] == 1 and [e["epoch"] for e in dev] == [1]


def test_a_warm_started_method_needs_its_starting_method_in_the_spec(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "methods": ["raml", {"mrt": {"alpha": 0.01}}]}))
    res = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2
    assert "methods[1].mrt: starts from the baseline run of its seed (warm start); add baseline to methods" in res.output


def test_a_bad_method_parameter_stops_the_run_with_its_key_path(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "methods": ["baseline", {"gradient_penalty": {"epsilon": "big"}}]}))
    res = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2
    assert "methods[1].gradient_penalty.epsilon: expected a number, got 'big'" in res.output
    assert not (tmp_path / "out").exists()


# --- benchmark -------------------------------------------------------------------------------

def test_hf_peer_gets_the_same_computation():
    """With our weights and our UniLM mask, BertForMaskedLM computes our logits: the peer is fair."""
    from exposure_cli.bench.train import hf_logits, hf_model

    model, batch = tiny_model(torch.float32).eval(), tiny_batch()
    hf = hf_model(model).eval()
    assert sum(p.numel() for p in hf.parameters()) == model.num_parameters()
    ours = model(batch.input_ids, batch.segment_ids, batch.pad_mask)
    with torch.no_grad():
        theirs = hf_logits(hf, batch)
    torch.testing.assert_close(theirs[batch.pad_mask], ours.detach()[batch.pad_mask], rtol=1e-4, atol=1e-4)


def test_bench_train_json_is_consistent_with_its_own_timings(prepared_data):
    res = runner.invoke(app, ["bench", "train", "--json", "--batch-size", "3", "--steps", "1", "--hidden", "32",
                              "--layers", "1", "--heads", "2", "--data", str(prepared_data / "csl/train.tsv")])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert set(out["step_ratio"]) == set(available()) | {"gradient_penalty(backward=perturbation)"}
    sec = out["step_seconds"]
    for name, ratio in out["step_ratio"].items():
        assert ratio == pytest.approx(sec[name] / sec["baseline"], rel=0.02)  # seconds are rounded to 1e-4
    assert out["tokens_per_s"] == pytest.approx(out["tokens"] / sec["baseline"], rel=0.02)
    assert out["ratio_vs_hf"] == pytest.approx(sec["hf"] / sec["baseline"], rel=0.02)
    # the batch is the split's first 3 examples: [CLS] source[:222] [SEP] title[:31] [SEP] each
    pairs = read_pairs(prepared_data / "csl/train.tsv")[:3]
    expected = sum(min(len("".join(p.source.split())), 222) + min(len("".join(p.target.split())), 31) + 3
                   for p in pairs)
    assert out["tokens"] == expected


def test_bench_train_refuses_a_missing_split_and_an_unknown_method():
    res = runner.invoke(app, ["bench", "train", "--data", "/nonexistent/train.tsv", "--no-hf"])
    assert res.exit_code == 2 and "/nonexistent/train.tsv: split not found" in res.output
    bad = runner.invoke(app, ["bench", "train", "--method", "baselin"])
    assert bad.exit_code == 2 and "--method: unknown method 'baselin'" in bad.output and "did you mean 'baseline'" in bad.output
    res = runner.invoke(app, ["bench", "train", "--json", "--synthetic", "--batch-size", "2", "--steps", "1",
                              "--hidden", "16", "--layers", "1", "--heads", "2", "--method", "baseline", "--no-hf"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["batch"] == "synthetic"


def test_gradient_penalty_perturbation_gradient_approximates_the_exact_one(shared_data):
    # Independent truth: the exact double-backward gradient, fp64, on real CSL examples at a
    # realistic batch size (the approximation is first order in ε‖g‖, and g, the gradient of a
    # batch-mean loss, is small only when the batch has hundreds of target tokens, as in training).
    from exposure_cli.bench.train import bench_batch

    batch, tok, _ = bench_batch(16, shared_data / "raw/clge/csl/val.tsv")
    vocab = len(tok)
    exact = get_method("gradient_penalty")
    approx = get_method("gradient_penalty", {"backward": "perturbation"})
    assert exact.needs_double_backward and not approx.needs_double_backward
    grads, logs = {}, {}
    for key, method in [("exact", exact), ("approx", approx), ("baseline", get_method("baseline"))]:
        torch.manual_seed(0)
        model = UniLM(ModelConfig(vocab_size=vocab, hidden=32, layers=2, heads=2, dropout=0.0)).double()
        model.double_backward = method.needs_double_backward
        loss, logs[key] = method.loss(model, batch, ctx())
        loss.backward()
        grads[key] = torch.cat([p.grad.flatten() for p in model.parameters()])
    penalty_part = grads["exact"] - grads["baseline"]
    err = (grads["approx"] - grads["exact"]).norm()
    print(f"error / penalty part {err / penalty_part.norm():.4f}, error / gradient {err / grads['exact'].norm():.4f}")
    assert err <= 0.15 * penalty_part.norm()  # the penalty's own gradient, within 15%
    assert err <= 0.03 * grads["exact"].norm()  # the step taken, within 3%
    assert (grads["approx"] - grads["baseline"]).norm() > 0.5 * penalty_part.norm()  # not just baseline
    assert float(logs["approx"]["penalty"]) == pytest.approx(float(logs["exact"]["penalty"]), rel=1e-10)
    assert float(logs["approx"]["ce"]) == pytest.approx(float(logs["exact"]["ce"]), rel=1e-12)


def test_gradient_penalty_perturbation_rejects_the_scripted_scope():
    with pytest.raises(UserError, match="methods.gradient_penalty.backward: perturbation supports only scope: inputs"):
        validate_method("gradient_penalty", {"backward": "perturbation", "scope": "embedding_rows"}, "methods")
