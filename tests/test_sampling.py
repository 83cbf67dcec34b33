"""The cached decoder's sampling hook (decode.sample_ids) against independent truth: the model's
teacher-forced probabilities of the first two tokens (chi-square), and greedy decoding at
temperature 0."""


import pytest
import torch

from exposure_cli.decode.beam import generate_ids, sample_ids
from exposure_cli.model import ModelConfig, UniLM
from stats import chi_square_p

pytestmark = pytest.mark.usefixtures("one_thread")
SEP = 3

def peaky_model(copy=False, seed=0, vocab=9):
    """A tiny fp64 model whose next-token distributions are far from uniform and depend on the prefix
    (larger weights than BERT's init), so that a wrong conditioning shows in the frequencies."""
    torch.manual_seed(seed)
    m = UniLM(ModelConfig(vocab_size=vocab, hidden=16, layers=2, heads=2, max_positions=64, dropout=0.0, copy=copy,
                          copy_continuation=2 if copy else 0, copy_coverage=copy)).double().eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.dim() == 2:
                p.mul_(12.0)
    return m

def first_two_token_probs(model, src):
    """p(y1, y2) for every pair (and p(y1 = [SEP]) alone), from full teacher-forced forwards."""
    V = model.config.vocab_size
    L = len(src)

    def next_probs(prefix):
        ids = torch.tensor([src + prefix])
        seg = torch.tensor([[0] * L + [1] * len(prefix)])
        pad = torch.ones_like(ids, dtype=torch.bool)
        h = model.hidden_states(ids, seg, pad)
        memory = model.source_memory(h, ids, seg, pad)
        history = torch.tensor([[list(reversed(prefix))]]) if prefix else torch.empty(1, 1, 0, dtype=torch.long)
        return model.log_probs(h[:, -1:], memory, history).exp()[0, 0]

    with torch.no_grad():
        p1 = next_probs([])
        joint = {}
        for a in range(V):
            if a == SEP:
                joint[(a,)] = p1[a].item()
                continue
            p2 = next_probs([a])
            for b in range(V):
                joint[(a, b)] = (p1[a] * p2[b]).item()
    return joint

@pytest.mark.parametrize("copy,temperature", [(False, 1.0), (True, 1.0), (False, 0.7)])
def test_first_two_tokens_follow_the_teacher_forced_distribution(copy, temperature):
    model = peaky_model(copy)
    src = [2, 5, 6, 7, 8, 3]
    joint = first_two_token_probs(model, src)
    if temperature != 1.0:  # p^(1/T), renormalised, at each step
        joint = tempered(model, src, temperature)
    n = 6000
    gen = torch.Generator().manual_seed(0)
    (samples,) = sample_ids(model, [src], n, 2, SEP, temperature=temperature, generator=gen)
    keys = list(joint)
    counts = [0] * len(keys)
    index = {k: i for i, k in enumerate(keys)}
    for y in samples:
        counts[index[tuple(y[:2])]] += 1
    p = chi_square_p(counts, [joint[k] for k in keys])
    print(f"chi-square p {p:.3g}")
    assert p > 1e-3, p
    # not a vacuous test: the distribution is far from uniform
    assert max(joint.values()) > 5 * (1 / len(keys))

def tempered(model, src, T):
    V = model.config.vocab_size
    base = first_two_token_probs(model, src)
    p1 = torch.tensor([sum(v for k, v in base.items() if k[0] == a) for a in range(V)]) ** (1 / T)
    p1 = p1 / p1.sum()
    out = {}
    for a in range(V):
        if a == SEP:
            out[(a,)] = p1[a].item()
            continue
        row = torch.tensor([base[(a, b)] for b in range(V)])
        row = row / row.sum()
        row = row ** (1 / T)
        row = row / row.sum()
        for b in range(V):
            out[(a, b)] = (p1[a] * row[b]).item()
    return out

@pytest.mark.parametrize("copy", [False, True])
def test_temperature_zero_is_greedy_decoding(copy):
    model = peaky_model(copy, vocab=30)
    g = torch.Generator().manual_seed(0)
    sources = [[2] + torch.randint(5, 30, (int(n),), generator=g).tolist() + [SEP] for n in (3, 7, 5, 9)]
    greedy = [h[0].tokens for h in generate_ids(model, sources, 1, 10, SEP)]
    samples = sample_ids(model, sources, 3, 10, SEP, temperature=0.0, batch_size=3)
    assert all(ys == [g_] * 3 for ys, g_ in zip(samples, greedy))
    nearly = sample_ids(model, sources, 2, 10, SEP, temperature=1e-4, generator=torch.Generator().manual_seed(1))
    assert all(ys == [g_] * 2 for ys, g_ in zip(nearly, greedy))

def test_samples_end_at_sep_or_the_length_limit_and_need_no_gradient():
    model = peaky_model(vocab=30).train()
    sources = [[2, 5, 6, 3], [2, 7, 8, 9, 10, 3]]
    out = sample_ids(model, sources, 5, 6, SEP, generator=torch.Generator().manual_seed(0))
    assert [len(ys) for ys in out] == [5, 5]
    for ys in out:
        for y in ys:
            assert 1 <= len(y) <= 6 and (y[-1] == SEP or len(y) == 6) and SEP not in y[:-1]
    assert model.training  # used in the mode it is in
    with pytest.raises(ValueError, match="positions"):
        sample_ids(model, [[2] + [5] * 60 + [3]], 1, 8, SEP)
