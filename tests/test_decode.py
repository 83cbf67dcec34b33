"""Decoding: the batched, cached beam search gives exactly what the slow full-recompute reference
gives (tokens, and scores to 1e-5) on a small trained UniLM; the article's worked example; the
engine's bookkeeping; spec options; `exposure generate`, `demo` and `bench decode`. The trained
models are conftest's `tiny_trained` (no shared data)."""

import json
import math

import pytest
import torch
import yaml
from typer.testing import CliRunner

from exposure_cli.bench import reference_decode as ref
from exposure_cli.cli import app
from exposure_cli.data import read_pairs
from exposure_cli.decode.beam import UniLMStep, banned_tokens, beam_search, decode_texts, generate_ids
from exposure_cli.decode.demo import EXAMPLE_SEP, worked_example_step
from exposure_cli.errors import UserError
from exposure_cli.metrics import study_scores
from exposure_cli.spec import spec_from_dict
from tiny import SOURCE, TARGET

runner = CliRunner()
MAX_SOURCE, MAX_TARGET, MAX_LEN = SOURCE, TARGET, 32


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tiny_trained):
    """A 2 × 64 UniLM trained for 300 steps on the synthetic copy task: a peaked, non-trivial distribution."""
    return tiny_trained(300)


@pytest.fixture(scope="module")
def trained_copy(tiny_trained):
    """The same with the CPU profile's options: a copy pointer over the source with its continuation
    and coverage terms (whose target history the cached search must carry along each beam), and
    pre-LN blocks."""
    return tiny_trained(200, copy=True, copy_continuation=3, copy_coverage=True, pre_ln=True)


@pytest.fixture(scope="module")
def sources(trained, synthetic_data):
    """Dev sources cut to very different lengths (3 … 160 characters), so batches mix them."""
    _, tok = trained
    cuts = [3, 160, 20, 90, 8, 140, 45, 160, 1, 120]
    texts = [p.source[: cuts[i % len(cuts)]] for i, p in enumerate(read_pairs(synthetic_data / "dev.tsv")[:240])]
    return [tok.encode_pair(t, None, MAX_SOURCE, 0)[0] for t in texts]


def assert_same(ours, theirs, what):
    assert len(ours) == len(theirs), what
    for i, (hs, rs) in enumerate(zip(ours, theirs)):
        assert [h.tokens for h in hs] == [r[0] for r in rs], f"{what}, source {i}"
        for h, r in zip(hs, rs):
            # 1e-5, or 1e-6 relative for long sums: at |score| ≈ 80 one fp32 ulp is already 7.6e-6
            assert h.score == pytest.approx(r[1], abs=1e-5, rel=1e-6), f"{what}, source {i}"


# --------------------------------------------------------------------------- exactness

@pytest.mark.parametrize("model_name,beam,n,batch_size", [
    ("trained", 1, 240, 32), ("trained", 2, 160, 32), ("trained", 3, 120, 32), ("trained", 4, 50, 32),
    ("trained_copy", 1, 60, 16), ("trained_copy", 2, 40, 16), ("trained_copy", 3, 40, 16),
])
def test_study_search_matches_full_recompute(request, sources, model_name, beam, n, batch_size):
    model, tok = request.getfixturevalue(model_name)
    srcs = sources[:n]
    ours = generate_ids(model, srcs, beam, MAX_LEN, tok.sep_id, batch_size=batch_size)
    theirs = [ref.study_beam_search(model, s, beam, MAX_LEN, tok.sep_id) for s in srcs]
    assert_same(ours, theirs, f"{model_name}, study beam {beam}")
    lengths = {len(s) for s in srcs}
    assert min(lengths) <= 5 and max(lengths) == MAX_SOURCE + 2  # very different lengths, in the same batches


@pytest.mark.parametrize("beam,n,alpha", [(1, 60, 0.0), (2, 80, 0.0), (3, 60, 1.0), (4, 30, 0.6)])
def test_standard_search_matches_full_recompute(trained, sources, beam, n, alpha):
    model, tok = trained
    srcs = sources[:n]
    ours = generate_ids(model, srcs, beam, MAX_LEN, tok.sep_id, strategy="standard", length_penalty=alpha,
                        n_best=beam, batch_size=16)
    theirs = [ref.standard_beam_search(model, s, beam, MAX_LEN, tok.sep_id, n_best=beam, length_penalty=alpha)
              for s in srcs]
    assert_same(ours, theirs, f"standard beam {beam} α {alpha}")


def test_options_match_full_recompute(trained, sources):
    """n-best of the study search and n-gram blocking, against the reference too."""
    model, tok = trained
    srcs = sources[:40]
    ours = generate_ids(model, srcs, 3, MAX_LEN, tok.sep_id, n_best=3, no_repeat_ngram_size=2, batch_size=8)
    theirs = [ref.study_beam_search(model, s, 3, MAX_LEN, tok.sep_id, n_best=3, no_repeat_ngram_size=2) for s in srcs]
    assert_same(ours, theirs, "study n-best 3, no repeat 2")
    assert any(len(h) > 1 for h in ours)
    for hs in ours:
        for h in hs:
            body = h.tokens[:-1] if h.finished else h.tokens
            bigrams = list(zip(body, body[1:]))
            assert len(bigrams) == len(set(bigrams))
    ours = generate_ids(model, srcs[:20], 2, MAX_LEN, tok.sep_id, strategy="standard", no_repeat_ngram_size=1)
    theirs = [ref.standard_beam_search(model, s, 2, MAX_LEN, tok.sep_id, no_repeat_ngram_size=1) for s in srcs[:20]]
    assert_same(ours, theirs, "standard, no repeat 1")


def test_batching_does_not_change_results(trained, sources):
    """Alone, or padded next to much longer sources, in any batch size: the same output."""
    model, tok = trained
    srcs = sources[:30]
    a = generate_ids(model, srcs, 3, MAX_LEN, tok.sep_id, batch_size=30)
    b = generate_ids(model, srcs, 3, MAX_LEN, tok.sep_id, batch_size=1)
    assert_same(a, [[(h.tokens, h.score) for h in hs] for hs in b], "batch 30 vs 1")
    # the concatenating cache (no preallocation) gives the same as the preallocated one
    step = UniLMStep(model, srcs, "cpu", tok.pad_id)
    with torch.inference_mode():
        c = beam_search(step, len(srcs), 3, MAX_LEN, tok.sep_id)
    assert_same(a, [[(h.tokens, h.score) for h in hs] for hs in c], "preallocated vs concatenated cache")


@pytest.mark.parametrize("model_name", ["trained", "trained_copy"])
def test_encoding_in_chunks_gives_the_same_numbers(request, sources, model_name, monkeypatch):
    """The source is encoded a few examples at a time and, without a copy head, the last layer only
    at [SEP]: bit for bit what one call over the whole batch gives (scores compared with ==)."""
    from exposure_cli.decode import beam as decode
    model, tok = request.getfixturevalue(model_name)
    srcs = sources[:23]
    whole = generate_ids(model, srcs, 2, 8, tok.sep_id, n_best=2, batch_size=23)
    monkeypatch.setattr(decode, "ENCODE_ROWS", 1)  # as many chunks as MIN_ROWS allows: 5 of 4 or 5 examples
    chunked = generate_ids(model, srcs, 2, 8, tok.sep_id, n_best=2, batch_size=23)
    assert [[(h.tokens, h.score) for h in hs] for hs in chunked] == [[(h.tokens, h.score) for h in hs] for hs in whole]


def test_bf16_decoding_mostly_agrees_with_fp32(trained, synthetic_data):
    """bf16 rounds every activation to 8 bits of mantissa, so a near-tie between two tokens may
    flip; on a trained model most outputs must still be the fp32 ones, and the rest close to them."""
    model, tok = trained
    texts = [p.source for p in read_pairs(synthetic_data / "dev.tsv")[:60]]
    fp32 = decode_texts(model, tok, texts, 2, MAX_SOURCE, MAX_LEN)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = decode_texts(model, tok, texts, 2, MAX_SOURCE, MAX_LEN, batch_size=7)
    same = sum(a == b for a, b in zip(fp32, bf16))
    assert same >= 0.7 * len(texts), (same, len(texts))
    assert study_scores(bf16, fp32)["rouge_l"] > 80  # the others differ in a few characters
    model.train()
    calls = []
    decode_texts(model, tok, texts[:3], 1, MAX_SOURCE, MAX_LEN, progress=lambda: calls.append(1))
    assert model.training and len(calls) == 3  # mode restored, one progress tick per source
    model.eval()


# ------------------------------------------------------------------ the worked example


@pytest.mark.parametrize("strategy", ["study", "standard"])
def test_worked_example(strategy):
    """The article: beam 1 → (a, b) with p 0.33; beam 2 → (c, d) with p 0.36."""
    a, b, c, d = 1, 2, 3, 4
    (greedy,) = beam_search(worked_example_step, 1, 1, 32, EXAMPLE_SEP, strategy=strategy)
    (wide,) = beam_search(worked_example_step, 1, 2, 32, EXAMPLE_SEP, strategy=strategy, n_best=2)
    assert greedy[0].tokens == [a, b, EXAMPLE_SEP] and math.exp(greedy[0].score) == pytest.approx(0.33, abs=1e-6)
    assert wide[0].tokens == [c, d, EXAMPLE_SEP] and math.exp(wide[0].score) == pytest.approx(0.36, abs=1e-6)
    assert wide[1].tokens == [a, b, EXAMPLE_SEP] and math.exp(wide[1].score) == pytest.approx(0.33, abs=1e-6)


def test_worked_example_at_the_length_limit():
    """Cut at two tokens, the study search returns the best unfinished hypothesis: (c, d) again."""
    (r,) = beam_search(worked_example_step, 1, 2, 2, EXAMPLE_SEP)
    assert r[0].tokens == [3, 4] and not r[0].finished and math.exp(r[0].score) == pytest.approx(0.36)


def test_demo_command():
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    assert "beam 1 outputs (a, b) with p = 0.33" in result.output
    assert "beam 2 outputs (c, d) with p = 0.36" in result.output


# ---------------------------------------------------------------------- the engine


def table_step(table, V=4, sep=0):
    """A step callback over {prefix: {token: p}}; an unlisted prefix ends ([SEP] with p 1)."""
    def step(state):
        E, K = state.valid.shape
        out = torch.full((E, K, V), math.log(1e-12))
        for r, pre in enumerate(state.prefixes):
            for s, p in enumerate(pre):
                for t, q in table.get(tuple(p), {sep: 1.0}).items():
                    out[r, s, t] = math.log(q + 1e-12)
        return out
    return step


def test_finished_examples_leave_the_batch():
    seen = []
    lengths = [1, 3, 2]  # example i emits token 1 for lengths[i] steps, then [SEP]

    def step(state):
        seen.append((list(state.examples), state.keep))
        E, K = state.valid.shape
        out = torch.full((E, K, 3), math.log(1e-12))
        for r, i in enumerate(state.examples):
            out[r, :, 1 if state.step < lengths[i] else 0] = 0.0
        return out

    done = []
    res = beam_search(step, 3, 2, 10, 0, on_done=done.append)
    assert [h[0].tokens for h in res] == [[1, 0], [1, 1, 1, 0], [1, 1, 0]]
    assert seen == [([0, 1, 2], None), ([0, 1, 2], [0, 1, 2]), ([1, 2], [1, 2]), ([1], [0])]
    assert done == [0, 2, 1]


def test_study_search_shrinks_the_beam():
    # step 1: x (0.5), y (0.3), [SEP] (0.2) → with beam 3 the [SEP] candidate is discarded; beam becomes 2
    step = table_step({(): {1: 0.5, 2: 0.3, 0: 0.2}, (1,): {3: 0.9, 0: 0.1}, (2,): {3: 1.0},
                       (1, 3): {3: 1.0}, (2, 3): {3: 1.0}})
    (r,) = beam_search(step, 1, 3, 3, 0, n_best=5)
    assert r[0].tokens == [1, 3, 3] and not r[0].finished
    # set aside, best first: the other unfinished one (0.3) and the discarded [SEP] of step 1 (0.2);
    # (x, [SEP]) at 0.05 never made the top 2, so it was never a candidate
    assert [(h.tokens, h.finished) for h in r[1:]] == [([2, 3, 3], False), ([0], True)]
    assert r[2].score == pytest.approx(math.log(0.2))


def test_standard_length_penalty_prefers_longer():
    # [SEP] at once: 0.4; a then [SEP]: 0.6 × 0.6 = 0.36. Plain sums pick the short one,
    # length penalty 1 ranks by log p / ((5 + len) / 6): short −0.916/1 vs long −1.02/(7/6) = −0.876.
    step = table_step({(): {0: 0.4, 1: 0.6}, (1,): {0: 0.6, 2: 0.4}, (1, 2): {0: 0.01, 3: 0.99}})
    (plain,) = beam_search(step, 1, 2, 5, 0, strategy="standard")
    (long_,) = beam_search(step, 1, 2, 5, 0, strategy="standard", length_penalty=1.0)
    assert plain[0].tokens == [0]
    assert long_[0].tokens == [1, 0] and long_[0].normalized == pytest.approx(math.log(0.36) / (7 / 6))


def test_banned_tokens():
    assert banned_tokens([5, 6, 5], 2) == [6]
    assert sorted(banned_tokens([5, 6, 7], 1)) == [5, 6, 7]
    assert banned_tokens([5, 6], 3) == []
    assert banned_tokens([1, 2, 3, 1, 2], 3) == [3]


def test_bad_options():
    step = table_step({})
    with pytest.raises(ValueError, match="n_best"):
        beam_search(step, 1, 2, 5, 0, strategy="standard", n_best=3)
    with pytest.raises(ValueError, match="strategy"):
        beam_search(step, 1, 2, 5, 0, strategy="greedy")


# -------------------------------------------------------------------------- spec


@pytest.mark.parametrize("decode,msg", [
    ({"n_best": 0}, "decode.n_best"),
    ({"strategy": "standard", "beams": [1, 3], "n_best": 2}, "decode.n_best"),
    ({"no_repeat_ngram_size": -1}, "decode.no_repeat_ngram_size"),
    ({"length_penalty": "x"}, "decode.length_penalty"),
    ({"batch_size": 0}, "decode.batch_size"),
    ({"strategy": "greedy"}, "decode.strategy"),
    ({"max_len": 34}, "decode.max_len"),
])
def test_decode_spec_validation(decode, msg):
    with pytest.raises(UserError, match=msg):
        spec_from_dict({"name": "x", "decode": decode})


def test_decode_spec_defaults():
    d = spec_from_dict({"name": "x", "decode": {"length_penalty": 1, "n_best": 2}}).decode
    assert (d.strategy, d.length_penalty, d.n_best, d.no_repeat_ngram_size, d.max_len) == ("study", 1.0, 2, 0, 32)


# ---------------------------------------------------------------------- generate


@pytest.fixture
def run_dir(trained, tmp_path):
    model, tok = trained
    d = tmp_path / "run"
    d.mkdir()
    spec = spec_from_dict({"name": "t", "model": {"layers": 2, "hidden": 64, "heads": 2,
                                                   "max_len": MAX_SOURCE + 2 + MAX_TARGET}})
    (d / "spec.yaml").write_text(yaml.safe_dump({**spec.to_dict(), "run": {"method": {"baseline": {}}, "seed": 0}},
                                                allow_unicode=True))
    tok.save(d)
    from dataclasses import asdict
    torch.save({"model": model.state_dict(), "config": asdict(model.config), "epoch": 1}, d / "best.pt")
    return d


def test_generate_file_and_nbest(trained, run_dir, tmp_path, synthetic_data):
    model, tok = trained
    texts = [p.source for p in read_pairs(synthetic_data / "dev.tsv")[:5]]
    src = tmp_path / "in.txt"
    src.write_text("\n".join(texts) + "\n", encoding="utf-8")
    out = tmp_path / "out.txt"
    r = runner.invoke(app, ["generate", str(run_dir), "--beam", "2", "--input", str(src), "--output", str(out),
                            "--device", "cpu"])
    assert r.exit_code == 0, r.output
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines == decode_texts(model, tok, texts, 2, MAX_SOURCE, MAX_LEN)
    r = runner.invoke(app, ["generate", str(run_dir), "--beam", "3", "--n-best", "3", "--strategy", "standard"],
                      input="\n".join(texts[:2]) + "\n")
    assert r.exit_code == 0, r.output
    rows = r.stdout.splitlines()
    assert len(rows) == 2 and all(len(row.split("\t")) == 3 for row in rows)


def test_generate_without_checkpoint(run_dir):
    (run_dir / "best.pt").unlink()
    r = runner.invoke(app, ["generate", str(run_dir)], input="x\n")
    assert r.exit_code == 2
    assert "no finished checkpoint" in r.output and len(r.output.strip().splitlines()) == 1


# ------------------------------------------------------------------------- bench


def test_bench_decode_json():
    r = runner.invoke(app, ["bench", "decode", "--json", "--n", "2", "--naive-n", "1", "--beam", "2",
                            "--source-len", "16", "--max-len", "4"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    for key in ("ours_samples_per_s", "naive_samples_per_s", "hf_samples_per_s", "ratio_vs_naive", "ratio_vs_hf",
                "ours_flops_per_sample", "matmul_peak_gflops"):
        assert out[key] > 0
    assert 0 < out["share_of_peak"] < 1
    assert out["share_of_peak"] == pytest.approx(out["ours_flops_per_sample"] * out["ours_samples_per_s"] / 1e9
                                                 / out["matmul_peak_gflops"])
    import transformers
    assert out["hf_version"] == transformers.__version__
    assert (out["beam"], out["source_len"]) == (2, 16)


def test_decode_flops_match_a_hand_count():
    """One step (max_len 1) of a 1-layer model without a copy head over E = 4 sources of S positions:
    q, k, v everywhere and attention over the source, then, at [SEP] only (the decoder skips the
    rest), the attention output, the FFN and the MLM head."""
    from exposure_cli.bench.decode import decode_flops
    from exposure_cli.model import ModelConfig, UniLM
    E, S, H, F, V = 4, 10, 16, 48, 50
    model = UniLM(ModelConfig(vocab_size=V, hidden=H, layers=1, heads=2, intermediate=F, dropout=0.0)).eval()
    prompts = [[2] + [7] * (S - 2) + [3]] * E
    per_source = 3 * 2 * S * H * H + 2 * 2 * S * S * H  # q/k/v projections; scores and values of attention
    at_sep = 2 * H * H + 2 * 2 * H * F + 2 * H * H + 2 * H * V  # output projection, FFN, head transform, vocabulary
    assert decode_flops(model, prompts, beam=2, max_len=1, batch_size=E) == E * (per_source + at_sep)
