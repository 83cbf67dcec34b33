"""The CPU profile's model options: pre-LN blocks and the copy (pointer) head."""

import torch

from exposure_cli.batching import collate
from exposure_cli.decode import generate_ids
from exposure_cli.model import ModelConfig, UniLM
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
