"""The CPU profile's model options: pre-LN blocks, the copy (pointer) head and its continuation bonus."""

import pytest
import torch

from exposure_cli.batching import collate
from exposure_cli.decode.beam import generate_ids
from exposure_cli.errors import UserError
from exposure_cli.model import NO_TOKEN, CopyHead, ModelConfig, UniLM, target_history
from exposure_cli.spec import spec_from_dict

def study_beam_search(model, src, beam, max_len, sep_id):
    """(tokens, score) of the pipeline's cached study search for one source."""
    h = generate_ids(model, [src], beam, max_len, sep_id)[0][0]
    return h.tokens, h.score


EXAMPLES = [([2, 5, 6, 7, 3, 6, 7, 3], [0, 0, 0, 0, 0, 1, 1, 1]), ([2, 8, 9, 3, 9, 3], [0, 0, 0, 0, 1, 1])]


def make(**kw) -> UniLM:
    torch.manual_seed(0)
    return UniLM(ModelConfig(vocab_size=12, hidden=32, layers=2, heads=2, dropout=0.0, **kw))


def train(model: UniLM, steps: int = 60) -> tuple[float, float]:
    batch = collate(EXAMPLES)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(steps):
        loss = model.target_loss(batch)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    return first, loss.item()


def test_pre_ln_keeps_parameter_names_changes_forward_and_trains():
    post, pre = make(), make(pre_ln=True)
    assert list(post.state_dict()) == list(pre.state_dict())
    pre.load_state_dict(post.state_dict())
    batch = collate(EXAMPLES)
    with torch.no_grad():
        a = post(batch.input_ids, batch.segment_ids, batch.pad_mask)
        b = pre(batch.input_ids, batch.segment_ids, batch.pad_mask)
    assert not torch.allclose(a, b)
    first, last = train(pre)
    assert last < 0.1 * first
    pre.eval()
    assert study_beam_search(pre, [2, 5, 6, 7, 3], 2, 5, 3)[0] == [6, 7, 3]


def test_log_probs_without_copy_is_log_softmax_and_loss_unchanged():
    m = make()
    h = torch.randn(3, 4, 32)
    assert m.source_memory(h, None, None, None) is None
    assert torch.allclose(m.log_probs(h), torch.log_softmax(m.logits(h), -1))


def test_copy_head_adds_only_its_parameters_normalises_and_trains():
    plain, copy = make(), make(copy=True)
    extra = set(copy.state_dict()) - set(plain.state_dict())
    assert extra and all(k.startswith("cls.copy.") for k in extra)
    batch = collate(EXAMPLES)
    with torch.no_grad():
        h = copy.hidden_states(batch.input_ids, batch.segment_ids, batch.pad_mask)
        memory = copy.source_memory(h, batch.input_ids, batch.segment_ids, batch.pad_mask)
        p = copy.log_probs(h, memory).exp()
    assert torch.allclose(p.sum(-1), torch.ones(p.shape[:2]), atol=1e-4)
    # The pointer never points at padding: row 1 is padded at positions 6 and 7.
    assert not memory[2][1, 6:].any() and memory[2][1, :4].all()
    first, last = train(copy)
    assert last < 0.1 * first
    copy.eval()
    assert study_beam_search(copy, [2, 5, 6, 7, 3], 2, 5, 3)[0] == [6, 7, 3]
    assert study_beam_search(copy, [2, 8, 9, 3], 1, 5, 3)[0] == [9, 3]


def test_copy_loss_matches_per_position_log_probs():
    m = make(copy=True)
    batch = collate(EXAMPLES)
    with torch.no_grad():
        loss = m.target_loss(batch, reduction="none")
        h = m.hidden_states(batch.input_ids, batch.segment_ids, batch.pad_mask)
        logp = m.log_probs(h, m.source_memory(h, batch.input_ids, batch.segment_ids, batch.pad_mask))
    sel = batch.labels != -100
    expect = -logp[sel].gather(1, batch.labels[sel][:, None])[:, 0]
    assert torch.allclose(loss, expect, atol=1e-5)


def test_spec_accepts_profile_options():
    spec = spec_from_dict({"name": "x", "model": {"pre_ln": True, "copy": True}})
    assert spec.model.pre_ln and spec.model.copy


def test_target_history_by_hand():
    # [CLS] a b [SEP] | a b [SEP]: the source's [SEP] (position 3) predicts the first target token
    # with nothing fed yet; position 5 has fed "a b".
    ids = torch.tensor([[2, 5, 6, 3, 5, 6, 3]])
    hist = target_history(ids, torch.tensor([3]), torch.tensor([[3, 4, 5]]), 3)
    assert hist.tolist() == [[[NO_TOKEN] * 3, [5, NO_TOKEN, NO_TOKEN], [6, 5, NO_TOKEN]]]


def _pointer_only(**kw) -> UniLM:
    """A copy model whose pointer scores come from the continuation/coverage terms alone, gate ≈ 0."""
    m = make(copy=True, **kw)
    head = m.cls.copy
    with torch.no_grad():
        for p in (head.query.weight, head.query.bias, head.gate.weight):
            p.zero_()
        head.gate.bias.fill_(-40.0)  # g ≈ 4e-18
    return m


def _pointer_p(m: UniLM, src: list[int], history: list[int]) -> torch.Tensor:
    ids = torch.tensor([src])
    seg, pad = torch.zeros_like(ids), torch.ones_like(ids, dtype=torch.bool)
    with torch.no_grad():
        h = m.hidden_states(ids, seg, pad)
        return m.log_probs(h[:, -1:], m.source_memory(h, ids, seg, pad), torch.tensor([[history]])).exp()[0, 0]


# [CLS] a b c d x b c [SEP]; the target so far is "a b c" (history latest first: c b a).
SRC, HIST = [2, 5, 6, 7, 8, 9, 6, 7, 3], [7, 6, 5]


def _assert_p(p, weights):
    z = sum(weights.values())
    for tok, w in weights.items():
        assert p[tok].item() == pytest.approx(w / z, rel=1e-4), tok
    assert p.sum().item() == pytest.approx(1.0, abs=1e-5)


def test_copy_continuation_bonus_by_hand():
    """p is the softmax of the bonuses: d follows "a b c" (1 + 2 + 4), [SEP] follows "x b c" (1 + 2)."""
    m = _pointer_only(copy_continuation=3)
    with torch.no_grad():
        m.cls.copy.continuation.copy_(torch.tensor([1.0, 2.0, 4.0]) / CopyHead.GAIN)
    e = torch.e
    _assert_p(_pointer_p(m, SRC, HIST), {8: e ** 7, 3: e ** 3, 2: 1, 5: 1, 6: 2, 7: 2, 9: 1})


def test_copy_coverage_by_hand():
    """Coverage adds its weight at every source position whose token the target already holds."""
    m = _pointer_only(copy_continuation=3, copy_coverage=True)
    with torch.no_grad():
        m.cls.copy.continuation.copy_(torch.tensor([1.0, 2.0, 4.0]) / CopyHead.GAIN)
        m.cls.copy.coverage.fill_(-1.5 / CopyHead.GAIN)
    e, c = torch.e, torch.e ** -1.5
    _assert_p(_pointer_p(m, SRC, HIST), {8: e ** 7, 3: e ** 3, 2: 1, 5: c, 6: 2 * c, 7: 2 * c, 9: 1})
    # An empty history (the first target token) leaves the pointer uniform over the 9 positions.
    _assert_p(_pointer_p(m, SRC, []), {2: 1, 3: 1, 5: 1, 6: 2, 7: 2, 8: 1, 9: 1})


def test_copy_continuation_and_coverage_loss_matches_per_position_log_probs_and_trains():
    m = make(copy=True, copy_continuation=2, copy_coverage=True)
    with torch.no_grad():  # large enough to matter
        m.cls.copy.continuation.copy_(torch.tensor([3.0, 5.0]) / CopyHead.GAIN)
        m.cls.copy.coverage.fill_(-2.0 / CopyHead.GAIN)
    batch = collate(EXAMPLES)
    with torch.no_grad():
        loss = m.target_loss(batch, reduction="none")
        h = m.hidden_states(batch.input_ids, batch.segment_ids, batch.pad_mask)
        memory = m.source_memory(h, batch.input_ids, batch.segment_ids, batch.pad_mask)
        L = batch.input_ids.shape[1]
        first = (batch.segment_ids == 0).logical_and(batch.pad_mask).sum(1) - 1
        hist = target_history(batch.input_ids, first, torch.arange(L).expand(2, L), L)
        logp = m.log_probs(h, memory, hist)
        plain = m.log_probs(h, memory, torch.full_like(hist, NO_TOKEN))
    sel = batch.labels != -100
    labels = batch.labels[sel][:, None]
    expect = -logp[sel].gather(1, labels)[:, 0]
    assert torch.allclose(loss, expect, atol=1e-5)
    assert not torch.allclose(loss, -plain[sel].gather(1, labels)[:, 0], atol=1e-3)  # the bonus is used
    with pytest.raises(ValueError, match="history"):
        m.log_probs(h, memory)
    first_loss, last_loss = train(m)
    assert last_loss < 0.1 * first_loss


def test_copy_continuation_and_coverage_need_copy():
    with pytest.raises(UserError, match="model.copy_continuation"):
        spec_from_dict({"name": "x", "model": {"copy_continuation": 2}})
    with pytest.raises(UserError, match="model.copy_continuation"):
        spec_from_dict({"name": "x", "model": {"copy": True, "copy_continuation": -1}})
    with pytest.raises(UserError, match="model.copy_coverage"):
        spec_from_dict({"name": "x", "model": {"copy_coverage": True}})
    m = spec_from_dict({"name": "x", "model": {"copy": True, "copy_continuation": 3, "copy_coverage": True}}).model
    assert m.copy_continuation == 3 and m.copy_coverage
