"""`exposure diagnose`: on tiny models trained for a few seconds on a synthetic copy task, numbers that can
be checked by hand or against an independent computation: the teacher-forced NLL is the training
loss, k = 0 errors is the teacher-forced condition, the rescored output is the decoder's own score,
injections are a function of the seed, a model blind to its prefix has zero sensitivity, and the
article's worked example is one beam curse; then the command end to end and its one-line errors."""

import json
import math
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from exposure_cli import diagnose as dg
from exposure_cli import stats
from exposure_cli.batching import collate
from exposure_cli.cli import app
from exposure_cli.data import read_pairs
from exposure_cli.decode.beam import beam_search, decode_hypotheses, generate_ids
from exposure_cli.decode.demo import EXAMPLE_SEP, EXAMPLE_VOCAB, worked_example_step
from exposure_cli.metrics import study_per_example
from exposure_cli.model import UniLM
from exposure_cli.decode.predictions import write_hypotheses, write_predictions
from exposure_cli.registry import Registry
from exposure_cli.report.tables import markdown
from exposure_cli.spec import MethodSpec, spec_from_dict
from exposure_cli.train import write_run_spec
from tiny import SOURCE, TARGET

runner = CliRunner()
# conftest's tiny_trained models (tiny.py): [CLS] 160 [SEP] + 32 positions
DECODE_LEN = 12  # short, so that some outputs are cut off unfinished
N = 24  # dev examples diagnosed


pytestmark = pytest.mark.usefixtures("one_thread")


def _spec(**decode):
    return spec_from_dict({"name": "t", "model": {"layers": 2, "hidden": 64, "heads": 2, "max_len": SOURCE + 2 + TARGET,
                                                  "max_source_len": SOURCE, "max_target_len": TARGET},
                           "decode": {"max_len": DECODE_LEN, **decode}})


@pytest.fixture(scope="module")
def plain(tiny_trained):
    return tiny_trained(300)


@pytest.fixture(scope="module")
def copying(tiny_trained):
    """The CPU profile's head: a copy pointer whose continuation and coverage terms read the target fed."""
    return tiny_trained(200, copy=True, copy_continuation=3, copy_coverage=True, pre_ln=True)


@pytest.fixture(scope="module")
def pairs(synthetic_data):
    return read_pairs(synthetic_data / "dev.tsv")[:N]


def _run(model, tok, pairs, beams=(1, 2, 3), method="baseline"):
    """A RunData in memory, its outputs from the real decoder."""
    spec = _spec()
    sources, refs = [p.source for p in pairs], [p.target for p in pairs]
    outputs = {b: [hs[0] for hs in decode_hypotheses(model, tok, sources, b, SOURCE, DECODE_LEN)] for b in beams}
    preds = {b: [tok.decode(h.tokens) for h in hs] for b, hs in outputs.items()}
    return dg.RunData(None, method, 0, model, tok, spec, sources, refs, outputs, preds)


def test_teacher_forced_nll_is_the_training_loss_on_the_same_batch(plain, pairs):
    model, tok = plain
    ctx = dg.Context(_run(model, tok, pairs, beams=(1,)), dg.Options(beams=(1,), batch_size=1000))
    batch = collate([dg._pair(p, g) for p, g in zip(ctx.prompts, ctx.gold)], tok.pad_id)
    v = {k: r.value for k, r in dg.TeacherForced(ctx.opts).stats(ctx).items()}
    assert v["nll"] == pytest.approx(model.target_loss(batch).item(), abs=1e-6)
    with torch.no_grad():
        logp = model.target_log_probs(batch)
    labels = batch.labels[batch.labels != -100]
    assert v["acc"] == pytest.approx(100 * (logp.argmax(1) == labels).double().mean().item(), abs=1e-9)
    # the prompt is decode/beam.py's, the target the reference cut to decode.max_len with its [SEP]
    assert ctx.prompts[0] == tok.encode_pair(pairs[0].source, None, SOURCE, 0)[0]
    assert all(g[-1] == tok.sep_id and len(g) <= DECODE_LEN for g in ctx.gold)
    assert ctx.truncated == sum(len(tok.encode(p.target)) > DECODE_LEN - 1 for p in pairs) > 0


def test_zero_errors_is_the_teacher_forced_condition(plain, pairs):
    model, tok = plain
    opts = dg.Options(beams=(1,), errors=(0, 2))
    ctx = dg.Context(_run(model, tok, pairs, beams=(1,)), opts)
    tf = {k: r.value for k, r in dg.TeacherForced(opts).stats(ctx).items()}
    rob = {k: r.value for k, r in dg.Robustness(opts).stats(ctx).items()}
    for kind in dg.KINDS:
        assert rob[f"{kind}_k0_nll"] == rob[f"{kind}_k0_clean_nll"] == pytest.approx(tf["nll"], abs=1e-12)
        assert rob[f"{kind}_k0_acc"] == rob[f"{kind}_k0_clean_acc"] == pytest.approx(tf["acc"], abs=1e-12)
        # two injected errors do hurt this model
        assert rob[f"{kind}_k2_nll"] > rob[f"{kind}_k2_clean_nll"]


@pytest.mark.parametrize("which", ["plain", "copying"])
def test_the_score_of_an_output_is_the_decoders_own(which, request, pairs):
    model, tok = request.getfixturevalue(which)
    prompts = [tok.encode_pair(p.source, None, SOURCE, 0)[0] for p in pairs]
    found = [(prompts[i], h) for b in (1, 3)
             for i, hs in enumerate(generate_ids(model, prompts, b, DECODE_LEN, tok.sep_id, n_best=2)) for h in hs]
    hyps = [h for _, h in found]
    assert {h.finished for h in hyps} == {True, False}  # both kinds are covered
    scored = dg.score_targets(model, [p for p, _ in found], [h.tokens for h in hyps], batch_size=7, pad_id=tok.pad_id)
    for h, s in zip(hyps, scored):
        assert len(s.score) == len(h.tokens)  # a finished one's [SEP] term included, none for an unfinished one
        assert h.finished == (h.tokens[-1] == tok.sep_id)
        assert s.total == pytest.approx(h.score, abs=1e-4)
    # and the check each run makes on the outputs it keeps
    ctx = dg.Context(_run(model, tok, pairs, beams=(1, 3)), dg.Options(beams=(1, 3)))
    assert 0 < ctx.score_check() < 1e-4


def test_a_target_one_position_too_long_drops_its_unused_last_column(plain, pairs):
    """decode.max_len may fill every position: the prompt plus a full target is then one longer."""
    model, tok = plain
    longest = max(pairs, key=lambda p: len(p.source)).source
    prompt = [tok.cls_id] + tok.encode(longest)[:SOURCE] + [tok.sep_id]
    target = tok.encode(longest)[: TARGET] + [tok.sep_id]  # 33 tokens: 162 + 33 = 195 > 194
    assert len(prompt) + len(target) == model.config.max_positions + 1
    (s,) = dg.score_targets(model, [prompt], [target])
    (t,) = dg.score_targets(model, [prompt], [target[:-1]])  # the same predictions but the last
    assert len(s.score) == len(target) and np.allclose(s.score[:-1], t.score, atol=1e-5)


def test_injected_positions_and_tokens_depend_only_on_the_seed(plain, pairs):
    model, tok = plain
    gold = [5, 9, 11, 7, 30, 6, tok.sep_id]
    wrong = np.array([40, 41, 42, 43, 44, 45, 46])
    ordinary = np.array([i for i in range(len(tok)) if i not in dg.special_ids(tok)])
    pos, tokens = dg.injection_plan(gold, wrong, ordinary, seed=0, example=3, n_errors=3)
    again = dg.injection_plan(gold, wrong, ordinary, seed=0, example=3, n_errors=3)
    assert pos.tolist() == again[0].tolist() and tokens["random"].tolist() == again[1]["random"].tolist()
    assert pos.tolist() == sorted(set(pos.tolist())) and len(pos) == 3 and pos.max() < 6  # never the final [SEP]
    assert tokens["model"].tolist() == wrong[pos].tolist()
    assert all(r != gold[j] and r not in dg.special_ids(tok) for r, j in zip(tokens["random"], pos))
    two = dg.injection_plan(gold, wrong, ordinary, seed=0, example=3, n_errors=2)[0]
    assert set(two) < set(pos)  # fewer errors: a subset of the positions
    other = dg.injection_plan(gold, wrong, ordinary, seed=1, example=3, n_errors=3)
    assert (pos.tolist(), tokens["random"].tolist()) != (other[0].tolist(), other[1]["random"].tolist())
    assert len(dg.injection_plan(gold[:3], wrong, ordinary, 0, 3, n_errors=3)[0]) == 2  # only 2 candidates
    # the whole measure repeats exactly, and another seed measures something else
    run = _run(model, tok, pairs, beams=(1,))
    values = [{k: r.value for k, r in dg.Robustness(o).stats(dg.Context(run, o)).items()}
              for o in (dg.Options(seed=s, beams=(1,)) for s in (0, 0, 1))]
    assert values[0] == values[1] and values[0] != values[2]


def test_tokens_before_the_next_error_are_predicted_as_if_it_were_not_there(plain, pairs):
    """Why one corrupted pass serves every k: the causal mask hides later errors from earlier tokens."""
    model, tok = plain
    ctx = dg.Context(_run(model, tok, pairs, beams=(1,)), dg.Options(beams=(1,)))
    i = max(range(N), key=lambda i: len(ctx.gold[i]))
    g, clean = ctx.gold[i], ctx.clean()[i]
    pos, tokens = dg.injection_plan(g, clean.wrong, ctx.ordinary, 0, i, n_errors=3)
    three, one = (dg.score_targets(model, [ctx.prompts[i]], [g], [dg._inject(g, pos[:m], tokens["model"][:m])])[0]
                  for m in (3, 1))
    window = slice(pos[0] + 1, pos[1] + 1)  # after the first error, up to and including the second position
    assert np.allclose(three.nll[window], one.nll[window], atol=1e-6)
    assert not np.allclose(three.nll[pos[1] + 1:], one.nll[pos[1] + 1:], atol=1e-3)
    # so the two windows agree where they coincide: after the last of max(k) errors
    o = {w: dg.Options(beams=(1,), window=w) for w in ("next", "end")}
    v = {w: {k: r.value for k, r in dg.Robustness(o[w]).stats(dg.Context(ctx.run, o[w])).items()} for w in o}
    assert v["next"]["model_k3_acc"] == v["end"]["model_k3_acc"]
    assert v["next"]["random_k0_nll"] == v["end"]["random_k0_nll"]
    assert v["next"]["model_k1_nll"] != v["end"]["model_k1_nll"]


class PrefixBlind(UniLM):
    """Predicts from the source alone: every target input is replaced by [MASK] before the pass."""

    def target_log_probs(self, batch, *, inputs_embeds=None, input_ids=None):
        ids = batch.input_ids if input_ids is None else input_ids
        return super().target_log_probs(batch, input_ids=torch.where(batch.segment_ids == 1, 4, ids))


def test_a_model_that_ignores_its_prefix_has_zero_sensitivity(plain, pairs):
    model, tok = plain
    assert tok.mask_id == 4
    blind = PrefixBlind(model.config)
    blind.load_state_dict(model.state_dict())
    blind.eval()
    opts = dg.Options(beams=(1,))
    for m, zero in ((blind, True), (model, False)):
        rob = dg.Robustness(opts)
        v = {k: r.value for k, r in rob.stats(dg.Context(_run(m, tok, pairs, beams=(1,)), opts)).items()}
        d = rob.derive(v)
        for kind in dg.KINDS:
            if zero:
                assert d[f"{kind}_sensitivity"] == 0.0 and d[f"{kind}_sensitivity_nll"] == 0.0
                assert all(d[f"{kind}_drop_k{k}"] == 0.0 for k in opts.errors)
            else:  # the tiny model's accuracy barely moves, but its NLL does
                assert d[f"{kind}_sensitivity_nll"] > 0


def test_robustness_drops_are_those_of_a_hand_injected_corrupted_pass(plain, pairs):
    """The k = 1, 2, 3 drops and rises against each example scored alone, here: its gold target fed
    with the first k planned positions (the plan's positions; the model-made token rebuilt from the
    clean logits as the best non-special, non-gold one) replaced, full-sequence logits, and the
    tokens that see exactly k errors before them; pooled over examples. The sensitivity is
    numpy.polyfit's slope of those drops over k = 0…3."""
    model, tok = plain
    opts = dg.Options(beams=(1,))
    ctx = dg.Context(_run(model, tok, pairs, beams=(1,)), opts)
    rob = dg.Robustness(opts)
    v = {k: r.value for k, r in rob.stats(ctx).items()}
    d = rob.derive(v)
    special = dg.special_ids(tok)
    hits = {kind: {k: [0, 0, 0.0, 0.0, 0] for k in (1, 2, 3)} for kind in dg.KINDS}  # clean, corrupt, nll ×2, n

    def pass_(prompt, fed):
        ids = torch.tensor([prompt + fed])
        seg = torch.tensor([[0] * len(prompt) + [1] * len(fed)])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids, seg, torch.ones_like(ids, dtype=torch.bool))[0].double(), -1)
        return logp[len(prompt) - 1: len(prompt) - 1 + len(fed)]  # row j predicts target token j

    for i, source in enumerate(ctx.run.sources):
        prompt = [tok.cls_id] + tok.encode(source)[:SOURCE] + [tok.sep_id]
        gold = tok.encode(ctx.run.references[i])[: DECODE_LEN - 1] + [tok.sep_id]
        assert prompt == ctx.prompts[i] and gold == ctx.gold[i]
        clean = pass_(prompt, gold)
        others = clean.clone()
        others[:, special] = -math.inf
        others[torch.arange(len(gold)), gold] = -math.inf
        wrong = others.argmax(-1).numpy()
        pos, tokens = dg.injection_plan(gold, wrong, ctx.ordinary, opts.seed, i, 3)
        assert tokens["model"].tolist() == wrong[pos].tolist()
        for kind in dg.KINDS:
            fed = list(gold)
            for j, t in zip(pos, tokens[kind]):
                fed[j] = int(t)
            corrupt = pass_(prompt, fed)
            for j, g in enumerate(gold):
                k = sum(p < j for p in pos)  # errors among the inputs that predict token j
                if k:
                    h = hits[kind][k]
                    h[0] += int(clean[j].argmax() == g)
                    h[1] += int(corrupt[j].argmax() == g)
                    h[2] += -clean[j, g].item()
                    h[3] += -corrupt[j, g].item()
                    h[4] += 1
    for kind in dg.KINDS:
        drops = [0.0] + [100 * (h[0] - h[1]) / h[4] for h in hits[kind].values()]
        rises = [0.0] + [(h[3] - h[2]) / h[4] for h in hits[kind].values()]
        assert [d[f"{kind}_drop_k{k}"] for k in (0, 1, 2, 3)] == pytest.approx(drops, abs=1e-9), kind
        assert [v[f"{kind}_k{k}_nll"] - v[f"{kind}_k{k}_clean_nll"] for k in (0, 1, 2, 3)] == \
            pytest.approx(rises, abs=1e-5), kind
        assert d[f"{kind}_sensitivity"] == pytest.approx(np.polyfit([0, 1, 2, 3], drops, 1)[0], abs=1e-9)
        assert d[f"{kind}_sensitivity_nll"] == pytest.approx(np.polyfit([0, 1, 2, 3], rises, 1)[0], abs=1e-5)
        assert min(rises[1:]) > 0.01  # errors hurt: the check compares numbers that are not all zero


def test_slope_is_numpys_least_squares_fit():
    rng = np.random.default_rng(0)
    ks = [0, 1, 2, 5]
    ys = rng.normal(size=4)
    assert dg.slope(ks, list(ys)) == pytest.approx(np.polyfit(ks, ys, 1)[0], rel=1e-12)
    arrays = [rng.normal(size=7) for _ in ks]  # arrays work too: one fit per column
    assert np.allclose(dg.slope(ks, arrays), np.polyfit(ks, np.stack(arrays), 1)[0], rtol=1e-12)
    assert math.isnan(dg.slope([2], [1.0])) and math.isnan(dg.slope([1, 1], [1.0, 2.0]))


def test_the_articles_worked_example_is_one_beam_curse_and_one_model_error():
    """Target (a, b); greedy outputs it (0.6 · 0.55 = 0.33), beam 2 outputs (c, d) (0.4 · 0.9 = 0.36)."""
    out = {b: beam_search(worked_example_step, 1, b, 3, EXAMPLE_SEP)[0][0] for b in (1, 2)}
    assert [EXAMPLE_VOCAB[t] for t in out[2].tokens] == ["c", "d", "[SEP]"]
    ref = math.log(0.6 + 1e-12) + math.log(0.55 + 1e-12) + math.log(1 + 1e-12)
    text = {b: "".join(EXAMPLE_VOCAB[t] for t in out[b].tokens[:-1]) for b in (1, 2)}
    rouge = {b: study_per_example([text[b]], ["ab"])["rouge_l"] * 100 for b in (1, 2)}
    same = {b: [out[b].tokens == [1, 2, EXAMPLE_SEP]] for b in (1, 2)}
    s1 = {k: r.value for k, r in dg.search_stats([ref], [out[1].score], same[1]).items()}
    s2 = {k: r.value for k, r in dg.search_stats([ref], [out[2].score], same[2]).items()}
    assert (s1["exact"], s1["search"], s1["model"]) == (100.0, 0.0, 0.0)
    assert (s2["exact"], s2["search"], s2["model"]) == (0.0, 0.0, 100.0)
    assert s2["gap"] == pytest.approx(math.log(0.33 / 0.36), abs=1e-6) and math.isnan(s2["gap_search"])
    c = {k: r.value for k, r in dg.curse_stats([out[2].score], [out[1].score], rouge[2], rouge[1]).items()}
    assert (c["higher"], c["curse"]) == (100.0, 100.0)
    assert c["curse_drl"] == pytest.approx(-100.0, abs=1e-5)  # Rouge-L 0 against greedy's 99.999999
    # a search error: the reference scores higher than the output
    s = {k: r.value for k, r in dg.search_stats([-1.0, -5.0], [-2.0, -3.0], [False, False]).items()}
    assert (s["search"], s["model"], s["gap"], s["gap_search"]) == (50.0, 50.0, -0.5, 1.0)


def _result(method, seed, search):
    """A RunResult holding only a search-error share over 4 examples."""
    r = {"b1_search": dg.share(search)}
    return dg.RunResult(method, seed, Path(method) / f"seed{seed}", {"search": r},
                        {"search": {"b1_search": r["b1_search"].value}},
                        {"n_examples": 4, "values": {}, "checks": {}}, ["baseline", "other"])


def test_methods_average_their_seeds_and_differ_from_baseline_paired_by_seed_number(monkeypatch):
    """A share's den is all ones, so its linearised values are the raw 0/100 per example: the cells
    and the difference are stats' on the raw seeds × examples arrays, rows paired by seed number
    whatever the order the runs come in."""
    class OnlySearch(dg.SearchErrors):
        def columns(self):
            return super().columns()[:1]

    reg = Registry("diagnostic", dg.Diagnostic)
    reg.add("search", OnlySearch)
    monkeypatch.setattr(dg.base, "DIAGNOSTICS", reg)  # diagnostics() reads the registry there
    results = [_result("other", 0, [1, 0, 0, 0]), _result("baseline", 1, [1, 1, 1, 0]),
               _result("baseline", 0, [1, 1, 0, 0]), _result("other", 1, [1, 1, 0, 0])]
    opts = dg.Options(beams=(1,))
    agg = dg.aggregate(results, opts)
    assert list(agg["methods"]) == ["baseline", "other"]
    base, other = (agg["methods"][m]["values"]["search"]["b1_search"] for m in ("baseline", "other"))
    assert (base["mean"], base["per_seed"]) == (62.5, [75.0, 50.0])  # in the order the runs came
    assert (other["mean"], other["per_seed"]) == (37.5, [25.0, 50.0])
    raw = {("baseline", 0): [100, 100, 0, 0], ("baseline", 1): [100, 100, 100, 0],
           ("other", 0): [100, 0, 0, 0], ("other", 1): [100, 100, 0, 0]}
    want = stats.interval(np.array([raw[("baseline", 1)], raw[("baseline", 0)]], dtype=float))
    assert (base["lo"], base["hi"]) == (pytest.approx(want["lo"], abs=1e-6), pytest.approx(want["hi"], abs=1e-6))
    assert base["example_only"] is False
    d = agg["methods"]["other"]["vs_baseline"]["search"]["b1_search"]
    want = stats.difference(np.array([raw[("other", s)] for s in (0, 1)], dtype=float),
                            np.array([raw[("baseline", s)] for s in (0, 1)], dtype=float))
    crossed = stats.difference(np.array([raw[("other", s)] for s in (0, 1)], dtype=float),
                               np.array([raw[("baseline", s)] for s in (1, 0)], dtype=float))
    assert abs(crossed["hi"] - want["hi"]) > 1  # pairing matters here, so the check below can fail
    assert d["diff"] == -25.0 and d["seeds"] == [0, 1] and d["example_only"] is False
    assert (d["lo"], d["hi"]) == (pytest.approx(want["lo"], abs=1e-6), pytest.approx(want["hi"], abs=1e-6))
    assert d["significant"] == want["significant"] and d["mde"] == pytest.approx(want["mde"], abs=1e-6)
    md = "\n".join(markdown(mx) for mx in dg.matrices(agg, opts))
    assert "| baseline | 1 | 62.50 [" in md and "| other | 1 | -25.00 [" in md
    # one seed each: the interval counts the examples alone, is flagged and earns no *
    agg = dg.aggregate([_result("baseline", 0, [1, 1, 1, 1] * 5), _result("other", 0, [0, 0, 0, 0] * 5)], opts)
    d = agg["methods"]["other"]["vs_baseline"]["search"]["b1_search"]
    assert d["example_only"] and not d["significant"] and d["hi"] < 0 and d["mde"] is None
    assert agg["methods"]["other"]["values"]["search"]["b1_search"]["example_only"]
    assert "-100.00 [-100.00, -100.00]†" in "\n".join(markdown(mx) for mx in dg.matrices(agg, opts))


def test_a_ratio_with_unit_denominators_linearises_to_its_raw_values():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 40))
    rows = [dg.mean_where(xs, np.ones(40)) for xs in x]
    assert all(r.den.tolist() == [1.0] * 40 for r in rows)
    z = [dg.linearise(r.num, r.den) for r in rows]
    assert np.allclose(z, x, rtol=0, atol=1e-12)
    c = dg.cell(z, [r.value for r in rows])
    want = stats.interval(x)
    assert (c["mean"], c["lo"], c["hi"]) == tuple(pytest.approx(want[k], abs=1e-6) for k in ("mean", "lo", "hi"))


def test_the_mean_of_linearised_values_is_the_ratio_exactly():
    rng = np.random.default_rng(2)
    den = rng.integers(0, 20, size=(5, 60)).astype(float)  # some examples have nothing to average
    num = rng.normal(size=(5, 60)) * den + 3 * den
    z = dg.linearise(num, den)  # every row at once (the last axis is the examples)
    for zr, nr, dr in zip(z, num, den):
        assert zr.mean() == pytest.approx(dg.Ratio(nr, dr).value, rel=1e-13)
        assert np.allclose(dg.linearise(nr, dr), zr, rtol=0, atol=1e-12)
    assert np.isnan(dg.linearise([1.0, 2.0], [0.0, 0.0])).all()  # Σ den = 0: no value, no interval
    # and their spread is the ratio's: they are the jackknife's pseudo-values n·R − (n−1)·R(without i)
    # up to O(1/n), here 1/2,000 (the jackknife: an independent, resampling estimate of the same)
    den = rng.integers(1, 40, size=2000).astype(float)
    num = den * (0.6 + 0.2 * rng.normal(size=2000)) + 0.01 * den ** 2
    r, n = num.sum() / den.sum(), len(num)
    pseudo = n * r - (n - 1) * (num.sum() - num) / (den.sum() - den)
    z = dg.linearise(num, den)
    assert np.abs(z - pseudo).max() < 0.05 * np.abs(pseudo - r).max() and np.std(z - r) > 0.1


class _Linear(dg.Diagnostic):
    """Two ratios and statistics derived from them: one linear, one not."""

    name = "linear"

    def derive(self, v):
        return {"lin": 2.0 * v["a"] - 3.0 * v["b"] + 1.0, "quot": v["a"] / v["b"]}


def test_a_derived_statistic_linearises_through_its_gradient():
    rng = np.random.default_rng(3)
    den = {k: rng.integers(1, 9, size=50).astype(float) for k in "ab"}
    ratios = {k: dg.Ratio(rng.normal(loc=4, size=50) * den[k], den[k]) for k in "ab"}
    v = {k: r.value for k, r in ratios.items()}
    z = {k: dg.linearise(r.num, r.den) for k, r in ratios.items()}
    out = dg.linearised_derived(_Linear(dg.Options()), v, z)
    assert np.allclose(out["lin"], 2 * z["a"] - 3 * z["b"] + 1, rtol=0, atol=1e-8)
    assert out["lin"].mean() == pytest.approx(2 * v["a"] - 3 * v["b"] + 1, rel=1e-12)
    # a ratio of ratios: the delta method's analytic gradient (1/b, −a/b²)
    a, b = v["a"], v["b"]
    assert np.allclose(out["quot"], a / b + (z["a"] - a) / b - a / b ** 2 * (z["b"] - b), rtol=0, atol=1e-7)
    # the real sensitivity: per example, numpy's least-squares slope of the linearised drops over k
    opts = dg.Options(errors=(0, 1, 3))
    rob = dg.Robustness(opts)
    names = [f"{kind}_k{k}_{s}" for kind in dg.KINDS for k in opts.errors
             for s in ("acc", "nll", "clean_acc", "clean_nll")]
    toks = rng.integers(1, 12, size=30).astype(float)
    rs = {n: dg.Ratio(rng.uniform(0, 100, size=30) * toks, toks) for n in names}
    values = {n: r.value for n, r in rs.items()}
    values.update(rob.derive(values))
    res = dg.RunResult("baseline", 0, Path("."), {"robustness": rs}, {"robustness": values})
    lin = dg.linearised(res, [rob])["robustness"]
    for kind in dg.KINDS:
        drops = np.stack([lin[f"{kind}_k{k}_clean_acc"] - lin[f"{kind}_k{k}_acc"] for k in opts.errors])
        assert np.allclose(lin[f"{kind}_drop_k1"], drops[1], rtol=0, atol=1e-7)
        assert np.allclose(lin[f"{kind}_sensitivity"], np.polyfit(opts.errors, drops, 1)[0], rtol=0, atol=1e-7)
        assert lin[f"{kind}_sensitivity"].mean() == pytest.approx(values[f"{kind}_sensitivity"], abs=1e-9)


def test_ratio_differences_cover_the_truth_in_simulated_three_seed_experiments():
    """1,200 experiments, 3 seeds, 300 examples of 3–29 tokens each: a token-level rate whose
    per-token value is μ_m + (a seed effect shared by both methods) + (the method's own seed effect)
    + (the example's effect, shared by seeds, partly the method's own, and growing with length) +
    token noise. The truth is the population ratio E[Σ num]/E[Σ den] of the difference:
    Δμ + Δγ·var(len)/E[len] (length-weighted, so an unweighted mean per example would miss it).
    The method's own seed effect is about half the difference's variance: an interval on the seeds'
    mean (examples alone, as with one seed) under-covers. (Where seeds dominate more, stats'
    Satterthwaite interval itself covers ≈ 92% on 3 seeds, with or without a linearisation.) The
    method's own cells cover its own population ratio μ_1 + γ_1·var(len)/E[len] likewise."""
    rng = np.random.default_rng(4)
    e, s, n = 1200, 3, 300
    toks = rng.integers(3, 30, size=(e, 1, 1, n)).astype(float)  # the same test examples in every run
    mu, gamma = np.array([0.60, 0.62]), np.array([0.0, 0.004])
    rate = (mu[:, None, None] + gamma[:, None, None] * (toks - 16.0)
            + rng.normal(0, 0.01, (e, 1, s, 1)) + rng.normal(0, 0.01, (e, 2, s, 1))  # seeds: shared, own
            + rng.normal(0, 0.10, (e, 1, 1, n)) + rng.normal(0, 0.07, (e, 2, 1, n)))  # examples: shared, own
    num = toks * rate + np.sqrt(toks) * rng.normal(0, 0.45, (e, 2, s, n))
    truth = 0.02 + 0.004 * (27 ** 2 - 1) / 12 / 16.0  # var and mean of the uniform integer length 3…29
    z = dg.linearise(num, np.broadcast_to(toks, num.shape))
    covered = examples_only = cells = 0
    cell_truth = 0.62 + 0.004 * (27 ** 2 - 1) / 12 / 16.0
    for x in z:
        c = dg.cell(list(x[1]), [0.0] * s)
        cells += c["lo"] <= cell_truth <= c["hi"]
        d = dg.difference({k: x[1, k] for k in range(s)}, {k: x[0, k] for k in range(s)})
        covered += d["lo"] <= truth <= d["hi"]
        d = dg.difference({0: x[1].mean(0)}, {0: x[0].mean(0)})
        examples_only += d["lo"] <= truth <= d["hi"]
    assert 0.92 <= covered / e <= 0.975, covered / e
    assert examples_only / e < 0.9, examples_only / e  # the seeds matter here
    assert 0.92 <= cells / e <= 0.975, cells / e  # a method's own interval too


# ------------------------------------------------------------------------------ the command


def _write_run(out, model, tok, pairs, label, seed, beams=(1, 2, 3), dev=None):
    spec = replace(_spec(), methods=[MethodSpec("baseline"), MethodSpec("random_replace")])
    if dev is not None:
        spec.data.dev = str(dev)
    d = out / label / f"seed{seed}"
    write_run_spec(spec, MethodSpec(label), seed, d)
    tok.save(d)
    torch.save({"model": model.state_dict(), "config": asdict(model.config)}, d / "best.pt")
    sources, refs = [p.source for p in pairs], [p.target for p in pairs]
    for b in beams:
        best = [hs[0] for hs in decode_hypotheses(model, tok, sources, b, SOURCE, DECODE_LEN)]
        write_hypotheses(d / f"hypotheses.beam{b}.jsonl", best)
        write_predictions(d / f"predictions.beam{b}.tsv", sources, refs, [tok.decode(h.tokens) for h in best])
    (d / "metrics.json").write_text(json.dumps({"method": label, "seed": seed, "eval_seconds": 1.0}))
    return d


def test_diagnose_writes_every_run_and_the_comparison(plain, copying, pairs, tmp_path, synthetic_data):
    out = tmp_path / "out"
    dev = synthetic_data / "dev.tsv"
    runs = [_write_run(out, *plain, pairs, "baseline", 0, dev=dev),
            _write_run(out, *copying, pairs, "random_replace", 0, dev=dev)]
    (out / "random_replace" / "seed1").mkdir()  # unfinished: no metrics.json, skipped
    r = runner.invoke(app, ["diagnose", str(out), "--threads", "1", "--json"])
    assert r.exit_code == 0, r.output
    agg = json.loads(r.stdout)
    assert agg == json.loads((out / "diagnostics.json").read_text())
    assert list(agg["methods"]) == ["baseline", "random_replace"] and agg["n_examples"] == N
    rr = agg["methods"]["random_replace"]
    assert set(rr["values"]) == {"teacher_forced", "robustness", "search", "beam_curse"}
    assert {"model_sensitivity", "random_sensitivity"} <= set(rr["vs_baseline"]["robustness"])
    for d in runs:
        rec = json.loads((d / "diagnostics.json").read_text())
        assert rec["checks"]["decoder_score_max_abs_diff"] < 1e-4 and rec["n_examples"] == N
        assert len(rec["per_example"]["search"]["b2_search"]["num"]) == N
    md = (out / "diagnostics.md").read_text()
    for text in ("teacher forced", "robustness: model-made errors", "search errors vs model errors", "beam curse",
                 "difference to baseline"):
        assert text in md, text
    for name in dg.PLOTS:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({name})" in md
    r = runner.invoke(app, ["diagnose", str(out), "--threads", "1", "--beams", "1,2", "--errors", "0,1"])
    assert r.exit_code == 0 and "search err %" in r.output
    # another split is decoded first, with the run's decoder
    r = runner.invoke(app, ["diagnose", str(out), "--threads", "1", "--split", "dev", "--limit", "5", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["n_examples"] == 5 and json.loads(r.stdout)["split"] == "dev"


@pytest.mark.parametrize("args,message", [
    ([], "no finished run"),
    (["--beams", "1,x"], "--beams '1,x': expected comma-separated integers"),
    (["--split", "val"], "--split val: expected one of test, dev, train"),
])
def test_diagnose_without_a_finished_run_or_with_bad_options_is_one_line(tmp_path, args, message):
    (tmp_path / "baseline" / "seed0").mkdir(parents=True)
    r = runner.invoke(app, ["diagnose", str(tmp_path), *args])
    assert r.exit_code == 2 and message in r.output and len(r.output.strip().splitlines()) == 1, r.output


@pytest.mark.parametrize("missing", ["hypotheses.beam2.jsonl", "predictions.beam1.tsv", "best.pt", "vocab.txt"])
def test_a_run_with_a_missing_file_is_one_line_naming_it(plain, pairs, tmp_path, missing):
    d = _write_run(tmp_path, *plain, pairs[:3], "baseline", 0)
    (d / missing).unlink()
    r = runner.invoke(app, ["diagnose", str(tmp_path), "--threads", "1"])
    assert r.exit_code == 2, r.output
    assert (missing if missing != "best.pt" else "no finished checkpoint") in r.output
    assert len(r.output.strip().splitlines()) == 1, r.output


def test_diagnostics_are_a_registry():
    assert isinstance(dg.DIAGNOSTICS, Registry)
    assert set(dg.DIAGNOSTICS.names()) == {"teacher_forced", "robustness", "search", "beam_curse"}
    assert [d.name for d in dg.diagnostics(dg.Options())] == ["teacher_forced", "robustness", "search", "beam_curse"]
