"""The UniLM: its attention mask from first principles, and its forward pass against transformers."""

import torch

from exposure_cli.batching import collate
from exposure_cli.model import ModelConfig, UniLM, unilm_mask


def _example_batch():
    # Two examples of different lengths: [CLS] s s [SEP] t t [SEP] and [CLS] s [SEP] t [SEP] + padding.
    ex = [([2, 10, 11, 3, 12, 13, 3], [0, 0, 0, 0, 1, 1, 1]), ([2, 14, 3, 15, 3], [0, 0, 0, 1, 1])]
    return collate(ex)


def test_mask_matches_the_unilm_rule_position_by_position():
    b = _example_batch()
    m = unilm_mask(b.segment_ids, b.pad_mask)[:, 0]
    for e in range(2):
        n = int(b.pad_mask[e].sum())
        seg = b.segment_ids[e].tolist()
        for i in range(m.shape[1]):
            for j in range(m.shape[2]):
                if j >= n:
                    expected = False  # padding is seen by no one
                elif seg[j] == 0:
                    expected = True  # source keys are seen by every row, padding rows included
                else:
                    expected = i < n and seg[i] == 1 and j <= i  # a target sees earlier targets
                assert bool(m[e, i, j]) == expected, (e, i, j)


def test_no_source_position_sees_the_target_and_no_target_sees_the_future():
    b = _example_batch()
    m = unilm_mask(b.segment_ids, b.pad_mask)[:, 0]
    src = (b.segment_ids == 0) & b.pad_mask
    tgt = b.segment_ids == 1
    assert not (m & src[:, :, None] & tgt[:, None, :]).any()
    later = torch.triu(torch.ones(m.shape[1], m.shape[1], dtype=torch.bool), 1)
    assert not (m & tgt[:, :, None] & later[None]).any()
    assert not (m & ~b.pad_mask[:, None, :]).any()


def test_changing_a_later_target_token_leaves_earlier_outputs_unchanged():
    torch.manual_seed(0)
    model = UniLM(ModelConfig(vocab_size=20, hidden=32, layers=2, heads=2, dropout=0.0)).eval()
    b = _example_batch()
    ids2 = b.input_ids.clone()
    ids2[0, 5] = 17  # the second target token of example 0
    with torch.no_grad():
        h1 = model.hidden_states(b.input_ids, b.segment_ids, b.pad_mask)
        h2 = model.hidden_states(ids2, b.segment_ids, b.pad_mask)
    assert torch.allclose(h1[0, :5], h2[0, :5], atol=1e-6)
    assert not torch.allclose(h1[0, 5], h2[0, 5], atol=1e-4)
    # Changing padding of example 1 changes nothing real.
    ids3 = b.input_ids.clone()
    ids3[1, 5:] = 9
    with torch.no_grad():
        h3 = model.hidden_states(ids3, b.segment_ids, b.pad_mask)
    assert torch.allclose(h1[1, :5], h3[1, :5], atol=1e-6)


def test_forward_equals_transformers_bert_for_masked_lm_with_the_same_weights():
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    c = ModelConfig(vocab_size=30, hidden=32, layers=2, heads=4, max_positions=16, dropout=0.0)
    ours = UniLM(c).eval()
    hf = BertForMaskedLM(BertConfig(vocab_size=30, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                    intermediate_size=128, max_position_embeddings=16, type_vocab_size=2,
                                    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                    attn_implementation="eager")).eval()
    missing, unexpected = hf.load_state_dict(ours.state_dict(), strict=False)
    # Every one of our parameters has its BERT name; HF's extras are the pooler-free MLM decoder tie.
    assert not unexpected
    assert all(k.startswith("cls.predictions.decoder") or "position_ids" in k for k in missing), missing
    hf.tie_weights()
    b = _example_batch()
    mask4d = unilm_mask(b.segment_ids, b.pad_mask)
    additive = torch.zeros(mask4d.shape).masked_fill(~mask4d, torch.finfo(torch.float32).min)
    with torch.no_grad():
        ref = hf(input_ids=b.input_ids, token_type_ids=b.segment_ids, attention_mask=additive).logits
        got = ours(b.input_ids, b.segment_ids, b.pad_mask)
    real = b.pad_mask
    assert torch.allclose(got[real], ref[real], atol=1e-4), (got[real] - ref[real]).abs().max()


def test_target_loss_counts_only_target_positions():
    torch.manual_seed(0)
    model = UniLM(ModelConfig(vocab_size=20, hidden=32, layers=1, heads=2, dropout=0.0)).eval()
    b = _example_batch()
    # Labels: example 0 predicts t t [SEP] from positions 3,4,5; example 1 predicts t [SEP] from 2,3.
    assert b.labels[0].tolist() == [-100, -100, -100, 12, 13, 3, -100]
    assert b.labels[1].tolist() == [-100, -100, 15, 3, -100, -100, -100]
    with torch.no_grad():
        logp = torch.log_softmax(model(b.input_ids, b.segment_ids, b.pad_mask), -1)
        expected = -torch.stack([logp[0, 3, 12], logp[0, 4, 13], logp[0, 5, 3], logp[1, 2, 15], logp[1, 3, 3]]).mean()
        assert torch.allclose(model.target_loss(b), expected, atol=1e-5)


def test_dropout_mask_keeps_one_minus_p_and_follows_the_seed():
    from exposure_cli.model import dropout_mask

    torch.manual_seed(0)
    a = dropout_mask((64, 1000, 33), 0.1, "cpu")
    torch.manual_seed(0)
    b = dropout_mask((64, 1000, 33), 0.1, "cpu")
    assert torch.equal(a, b) and a.shape == (64, 1000, 33)
    keep = a.float().mean().item()
    assert abs(keep - 0.9) < 0.002  # 2.1M draws: the binomial std is 0.0002
    # Each row is 33,000 independent draws: its keep share has the binomial standard deviation
    # sqrt(0.9 · 0.1 / 33,000) = 0.00165; reused or correlated bits would make it smaller or larger.
    rows = a.float().mean((1, 2))
    assert 0.0012 < rows.std().item() < 0.0021


def test_plain_attention_path_equals_the_fused_one_without_dropout():
    torch.manual_seed(0)
    model = UniLM(ModelConfig(vocab_size=20, hidden=32, layers=2, heads=4, dropout=0.0)).train()
    b = _example_batch()
    with torch.no_grad():
        fused = model(b.input_ids, b.segment_ids, b.pad_mask)
        model.double_backward = True  # in training, routes attention through AttentionBias
        plain = model(b.input_ids, b.segment_ids, b.pad_mask)
    assert torch.allclose(fused[b.pad_mask], plain[b.pad_mask], atol=1e-5)


def test_attention_dropout_zero_leaves_attention_probabilities_alone_in_training():
    """model.attention_dropout: 0 (bert4keras 0.5.8, the paper profiles) means two training-mode
    passes with the hidden dropout off are identical, on the plain path (double backward) and on the
    fused one; > 0 makes them differ on both, and null keeps BERT's (the hidden dropout's value)."""
    b = _example_batch()
    for attention_dropout, same in [(0.0, True), (0.3, False)]:
        torch.manual_seed(0)
        model = UniLM(ModelConfig(vocab_size=20, hidden=32, layers=2, heads=4, dropout=0.0,
                                  attention_dropout=attention_dropout)).train()
        for double_backward in (False, True):
            model.double_backward = double_backward
            with torch.no_grad():
                a, c = (model(b.input_ids, b.segment_ids, b.pad_mask) for _ in range(2))
            assert torch.equal(a, c) == same, (attention_dropout, double_backward)
        # the fused kernel's own dropout (what CUDA takes), called directly with the boolean mask
        attn, x = model.bert.encoder.layer[0].attention.self, torch.randn(2, 7, 32)
        mask = unilm_mask(b.segment_ids, b.pad_mask)
        with torch.no_grad():
            assert torch.equal(attn(x, mask), attn(x, mask)) == same
    assert ModelConfig(vocab_size=20, dropout=0.2).attention_p == 0.2


def test_rows_give_the_full_forward_at_those_positions_and_fill_the_caches_alike():
    """`hidden_states(rows=...)` (the decoder computes the last layer's output only at [SEP]) is the
    full forward pass taken at those positions, post-LN and pre-LN, and leaves the same keys/values."""
    torch.manual_seed(0)
    for pre_ln in (False, True):
        model = UniLM(ModelConfig(vocab_size=30, hidden=32, layers=2, heads=2, dropout=0.0, pre_ln=pre_ln)).eval()
        ids = torch.randint(4, 30, (5, 9))
        pad = torch.ones_like(ids, dtype=torch.bool)
        pad[1, 6:] = False
        rows = torch.tensor([[8], [5], [0], [3], [8]])
        full_caches, row_caches = [{}, {}], [{}, {}]
        full = model.hidden_states(ids, torch.zeros_like(ids), pad, caches=full_caches)
        part = model.hidden_states(ids, torch.zeros_like(ids), pad, caches=row_caches, rows=rows)
        assert part.shape == (5, 1, 32)
        torch.testing.assert_close(part[:, 0], full[torch.arange(5), rows[:, 0]], rtol=0, atol=1e-6)
        for a, b in zip(full_caches, row_caches):
            assert torch.equal(a["k"], b["k"]) and torch.equal(a["v"], b["v"])
