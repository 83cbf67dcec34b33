"""A UniLM: one BERT encoder over `[CLS] source [SEP] target [SEP]` with a seq2seq attention mask.

Module and parameter names follow Hugging Face's `BertForMaskedLM` (`bert.embeddings...`,
`bert.encoder.layer.N.attention.self.query...`, `cls.predictions...`), so a BERT checkpoint's
state dict loads into it and its weights load into transformers for comparison.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .pointer import NO_TOKEN, CopyHead, PointerConfig, source_memory, target_history, target_rows  # noqa: F401


@dataclass
class ModelConfig(PointerConfig):  # and the copy pointer's settings (pointer.py)
    vocab_size: int
    hidden: int = 256
    layers: int = 4
    heads: int = 4
    intermediate: int | None = None
    max_positions: int = 256
    type_vocab_size: int = 2
    dropout: float = 0.1
    # Dropout on attention probabilities; None = `dropout` (BERT's), 0 = none (bert4keras 0.5.8 has none).
    attention_dropout: float | None = None
    layer_norm_eps: float = 1e-12
    pad_id: int = 0
    # Pre-LN blocks (LayerNorm on each sublayer's input) instead of BERT's post-LN; same parameters.
    pre_ln: bool = False

    @property
    def ffn(self) -> int:
        return self.intermediate or 4 * self.hidden

    @property
    def attention_p(self) -> float:
        return self.dropout if self.attention_dropout is None else self.attention_dropout


def unilm_mask(segment_ids: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
    """Boolean (B, 1, L, L) mask, True where query i may attend to key j.

    A source position (segment 0) sees every source position; a target position (segment 1) sees
    every source position and the target positions up to itself; padding is seen by no one.
    Padding rows see the source, so no row is empty (an empty softmax row is NaN).
    """
    L = segment_ids.shape[1]
    pos = torch.arange(L, device=segment_ids.device)
    causal = pos[None, :] <= pos[:, None]  # (L, L): key j at or before query i
    src_key = (segment_ids == 0)[:, None, :]
    tgt_query = (segment_ids == 1)[:, :, None]
    allowed = (src_key | (tgt_query & causal[None])) & pad_mask[:, None, :]
    return allowed[:, None]


class BertEmbeddings(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden, padding_idx=c.pad_id)
        self.position_embeddings = nn.Embedding(c.max_positions, c.hidden)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden)
        self.LayerNorm = nn.LayerNorm(c.hidden, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, inputs_embeds, segment_ids, position_ids):
        x = inputs_embeds + self.position_embeddings(position_ids) + self.token_type_embeddings(segment_ids)
        return self.dropout(self.LayerNorm(x))


def dropout_mask(shape, p: float, device) -> torch.Tensor:
    """Bernoulli(1 - p) keep-mask drawn from 16 random bits per element.

    torch's bernoulli_ makes one RNG call per element and costs ~6× more here; 16 bits put the
    keep probability within 1/65536 of 1 - p, and the draw still follows torch's seeded RNG.
    """
    n = math.prod(shape)
    bits = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=device)
    bits = bits.view(torch.int16)[:n].view(shape)
    return bits >= round(p * 65536) - 32768


class AttentionBias:
    """The UniLM mask as an additive bias, for the attention written out in plain ops.

    The fused attention kernels have no dropout of their own on CPU (torch falls back to a slow
    path) and no double backward; this path has both, cheaply: the bias is built once per forward,
    and dropout masks come from `dropout_mask`. Scores and softmax are computed in fp32 (fp64
    stays fp64) whatever the compute dtype, as the fused kernels the other methods take on CUDA
    accumulate them: under bf16 a score of 30 would be off by up to 0.06, its probability by 6%.
    The probabilities then meet the values in the compute dtype, as in the fused kernels.
    """

    def __init__(self, mask: torch.Tensor, dtype: torch.dtype):
        self.dtype = dtype  # the compute dtype: that of the output
        wide = torch.promote_types(dtype, torch.float32)
        self.bias = torch.zeros(mask.shape, dtype=wide, device=mask.device).masked_fill(~mask, float("-inf"))

    def attend(self, q, k, v, dropout_p: float):
        wide = self.bias.dtype
        with torch.autocast(q.device.type, enabled=False):  # autocast would narrow the matmuls to bf16
            q, k, v = q.to(wide), k.to(wide), v.to(self.dtype)
            scores = torch.matmul(q, k.transpose(-1, -2)) * (q.shape[-1] ** -0.5) + self.bias
            probs = torch.softmax(scores, dim=-1).to(self.dtype)
            if dropout_p > 0:
                keep = dropout_mask(probs.shape, dropout_p, probs.device).to(self.dtype).mul_(1.0 / (1.0 - dropout_p))
                probs = probs * keep  # one multiply forward, one per backward order
            return torch.matmul(probs, v)


class BertSelfAttention(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.heads, self.head_dim = c.heads, c.hidden // c.heads
        self.query = nn.Linear(c.hidden, c.hidden)
        self.key = nn.Linear(c.hidden, c.hidden)
        self.value = nn.Linear(c.hidden, c.hidden)
        self.dropout_p = c.attention_p

    def split(self, x):
        B, L, _ = x.shape
        return x.view(B, L, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x, mask, cache: dict | None = None):
        q, k, v = self.split(self.query(x)), self.split(self.key(x)), self.split(self.value(x))
        if cache is not None and "k_buf" in cache:  # preallocated cache (decode/beam.py): write in place, no copy
            n, L = cache["n"], k.shape[2]
            cache["k_buf"][:, :, n:n + L] = k
            cache["v_buf"][:, :, n:n + L] = v
            cache["n"] = n + L
            k, v = cache["k_buf"][:, :, :n + L], cache["v_buf"][:, :, :n + L]
        elif cache is not None:  # incremental decoding: prepend the keys/values of earlier positions
            if "k" in cache:
                k = torch.cat([cache["k"], k], dim=2)
                v = torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        if isinstance(mask, AttentionBias):
            y = mask.attend(q, k, v, self.dropout_p if self.training else 0.0)
        else:  # dropout here only on CUDA: elsewhere training with dropout takes AttentionBias
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                               dropout_p=self.dropout_p if self.training else 0.0)
        B, H, L, D = y.shape
        return y.transpose(1, 2).reshape(B, L, H * D)


def take_rows(x: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
    """x (B, L, H) at the positions `rows` (B, R) of each sequence: (B, R, H); all of x if rows is None."""
    return x if rows is None else x.gather(1, rows[:, :, None].expand(-1, -1, x.shape[2]))


class _DenseOutput(nn.Module):
    """dense → dropout: the output projection of attention and of the FFN. Its LayerNorm is where
    transformers' names put it (`...output.LayerNorm`); `BertLayer` applies it, before the sublayer
    (pre-LN) or after the residual sum (post-LN)."""

    def __init__(self, c: ModelConfig, d_in: int):
        super().__init__()
        self.dense = nn.Linear(d_in, c.hidden)
        self.LayerNorm = nn.LayerNorm(c.hidden, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, h):
        return self.dropout(self.dense(h))


class BertSelfOutput(_DenseOutput):
    def __init__(self, c: ModelConfig):
        super().__init__(c, c.hidden)


class BertAttention(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.self = BertSelfAttention(c)
        self.output = BertSelfOutput(c)

    def forward(self, x, mask, cache=None, rows=None):
        """`rows`: project only these positions' attention outputs (`take_rows`); attention runs everywhere."""
        return self.output(take_rows(self.self(x, mask, cache), rows))


class BertIntermediate(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.dense = nn.Linear(c.hidden, c.ffn)

    def forward(self, x):
        return F.gelu(self.dense(x))


class BertOutput(_DenseOutput):
    def __init__(self, c: ModelConfig):
        super().__init__(c, c.ffn)


class BertLayer(nn.Module):
    """A transformer block: attention then the FFN, each with a residual. Post-LN (BERT's layout)
    normalises each residual sum; pre-LN (`pre_ln`) each sublayer's input. Same parameters either way."""

    def __init__(self, c: ModelConfig):
        super().__init__()
        self.attention = BertAttention(c)
        self.intermediate = BertIntermediate(c)
        self.output = BertOutput(c)
        self.pre_ln = c.pre_ln

    def mlp(self, x):
        return self.output(self.intermediate(x))

    def forward(self, x, mask, cache=None, rows=None):
        """`rows` (B, R): the block's output only at these positions of each sequence (B, R, H).
        Attention still runs at every position, exactly as without `rows` (and the keys/values
        reach `cache`); the output projection and the FFN, most of a block's work, only at `rows`."""
        ln_1, ln_2 = self.attention.output.LayerNorm, self.output.LayerNorm
        if self.pre_ln:
            x = take_rows(x, rows) + self.attention(ln_1(x), mask, cache, rows)
            return x + self.mlp(ln_2(x))
        x = ln_1(take_rows(x, rows) + self.attention(x, mask, cache, rows))
        return ln_2(x + self.mlp(x))


class BertEncoder(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(c) for _ in range(c.layers))

    def forward(self, x, mask, caches=None, rows=None):
        """`rows`: only these positions' final states are wanted (see `BertLayer.forward`); every
        layer but the last still runs everywhere, as later layers' keys and values need it."""
        last = len(self.layer) - 1
        for i, layer in enumerate(self.layer):
            x = layer(x, mask, caches[i] if caches is not None else None, rows if i == last else None)
        return x


class BertModel(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.embeddings = BertEmbeddings(c)
        self.encoder = BertEncoder(c)


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.dense = nn.Linear(c.hidden, c.hidden)
        self.LayerNorm = nn.LayerNorm(c.hidden, eps=c.layer_norm_eps)

    def forward(self, x):
        return self.LayerNorm(F.gelu(self.dense(x)))


class BertLMPredictionHead(nn.Module):
    def __init__(self, c: ModelConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.transform = BertPredictionHeadTransform(c)
        self.bias = nn.Parameter(torch.zeros(c.vocab_size))
        self._tied = [word_embeddings]  # a list, so the tied matrix is not registered twice

    def forward(self, x):
        return F.linear(self.transform(x), self._tied[0].weight, self.bias)


class BertOnlyMLMHead(nn.Module):
    def __init__(self, c: ModelConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.predictions = BertLMPredictionHead(c, word_embeddings)
        if c.copy:
            self.copy = CopyHead(c)


def plain_attention(device_type: str, training: bool, dropout: float, double_backward: bool) -> bool:
    """Whether attention runs in plain ops (`AttentionBias`) instead of PyTorch's fused SDPA: for a
    double backward (no fused kernel has one), and in training with dropout off CUDA (CPU SDPA has
    no fused dropout and falls back to a slow path); on CUDA, SDPA applies the dropout itself."""
    return training and (double_backward or (dropout > 0 and device_type != "cuda"))


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    t = x.device.type
    return torch.get_autocast_dtype(t) if torch.is_autocast_enabled(t) else x.dtype


class UniLM(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.bert = BertModel(config)
        self.cls = BertOnlyMLMHead(config, self.bert.embeddings.word_embeddings)
        self.apply(self._init_weights)
        # Paths that need a double backward (gradient penalty) set this to avoid the fused kernels.
        self.double_backward = False

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # BERT's initialisation: N(0, 0.02) weights, zero biases, unit LayerNorm.
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
            if isinstance(m, nn.Embedding) and m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    @classmethod
    def from_checkpoint(cls, path, device="cpu") -> "UniLM":
        """The model saved in a run's best.pt ({"model": state dict, "config": ModelConfig fields})."""
        from .errors import UserError
        from .fileio import torch_load

        ck = torch_load(path, "cpu")  # built and loaded on the CPU, then moved to `device` once
        try:
            model = cls(ModelConfig(**ck["config"]))
            model.load_state_dict(ck["model"])
        except (KeyError, TypeError, RuntimeError) as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"{path}: not a checkpoint of exposure's UniLM ({type(e).__name__}: {msg})") from None
        return model.to(device)

    @property
    def word_embeddings(self) -> nn.Embedding:
        return self.bert.embeddings.word_embeddings

    def hidden_states(self, input_ids=None, segment_ids=None, pad_mask=None, *, inputs_embeds=None,
                      position_ids=None, attn_mask=None, caches=None, rows=None):
        """Final-layer hidden states (B, L, H). `inputs_embeds` replaces the token lookup. `rows`
        (B, R): only those positions' final states are wanted, (B, R, H) is returned and the last
        layer does less work (`BertLayer.forward`); the caches still get every position's keys/values."""
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        B, L = inputs_embeds.shape[:2]
        if position_ids is None:
            position_ids = torch.arange(L, device=inputs_embeds.device).expand(B, L)
        if attn_mask is None:
            attn_mask = unilm_mask(segment_ids, pad_mask)
        x = self.bert.embeddings(inputs_embeds, segment_ids, position_ids)
        if plain_attention(x.device.type, self.training, self.config.attention_p, self.double_backward):
            attn_mask = AttentionBias(attn_mask, _compute_dtype(x))
        return self.bert.encoder(x, attn_mask, caches, rows)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.cls.predictions(hidden)

    def source_memory(self, hidden, input_ids, segment_ids, pad_mask):
        """What `log_probs` needs of the source: None without the copy head, else `pointer.source_memory`."""
        if not self.config.copy:
            return None
        return source_memory(self.cls.copy, self.config.copy_continuation, hidden, input_ids, segment_ids, pad_mask)

    def log_probs(self, hidden: torch.Tensor, memory=None, history=None) -> torch.Tensor:
        """Log-probabilities (float32, (..., V)) of the next token from final hidden states.

        Without the copy head this is log_softmax of the MLM head. With it, `memory` comes from
        `source_memory`, `hidden` is (B, T, H) and p = g·softmax(logits) + (1 − g)·(attention mass
        on the source positions holding each token). With copy continuation or coverage, `history`
        (B, T, W) holds the target tokens fed up to each position, latest first, NO_TOKEN-padded
        (`target_history`); W may be anything ≥ 0 but must span the whole target for coverage.
        """
        logits = self.logits(hidden)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # bf16 → fp32; fp64 stays
        if not self.config.copy:
            return F.log_softmax(logits, -1)
        return self.cls.copy(hidden, logits, memory, history).clamp_min(1e-20).log()

    def forward(self, input_ids, segment_ids, pad_mask, **kw) -> torch.Tensor:
        return self.logits(self.hidden_states(input_ids, segment_ids, pad_mask, **kw))

    def target_log_probs(self, batch, *, inputs_embeds=None, input_ids=None) -> torch.Tensor:
        """(N, V) next-token log-probabilities at the N target-predicting positions
        (`batch.labels != -100`, in row-major order), from `input_ids` (default the batch's).

        The MLM head runs only at those positions: most of a UniLM sequence is source, and the
        vocabulary projection is the costliest matrix product of a small model.
        """
        ids = batch.input_ids if input_ids is None else input_ids
        h = self.hidden_states(ids, batch.segment_ids, batch.pad_mask, inputs_embeds=inputs_embeds)
        # Indexed by the positions the batch found on the host: a boolean mask would wait for the GPU.
        rows, cols = batch.target_rows, batch.target_cols
        if not self.config.copy:
            return self.log_probs(h[rows, cols])
        first = (batch.labels != -100).float().argmax(1)
        ht, history = target_rows(h, ids, first, batch.target_width)
        memory = self.source_memory(h, ids, batch.segment_ids, batch.pad_mask)
        return self.log_probs(ht, memory, history)[rows, cols - first[rows]]

    def target_loss(self, batch, *, inputs_embeds=None, input_ids=None, label_smoothing: float = 0.0,
                    reduction: str = "mean") -> torch.Tensor:
        """Cross-entropy of token t+1 from position t, over target positions only."""
        logp = self.target_log_probs(batch, inputs_embeds=inputs_embeds, input_ids=input_ids)
        # Cross-entropy of log-probabilities: log_softmax leaves them unchanged.
        return F.cross_entropy(logp, batch.target_labels(), label_smoothing=label_smoothing,
                               reduction=reduction)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

