"""`exposure bench decode`: samples/s of our cached beam search, of the slow full-recompute
reference, and of Hugging Face transformers' `generate(num_beams=k)` on a same-size
`BertLMHeadModel(is_decoder=True)`, all on CPU with random weights and the same random prompts.

transformers is a test/bench extra, imported only here. The models are not the same function (HF's
BERT decoder is causal over the prompt, a UniLM is not), so only speed is compared; the mean number
of generated tokens per sample is reported for each, since a search that stops early is cheaper.

How close our decoder is to the machine: its matrix-multiply FLOPs per sample (every product it
runs, attention included, counted by torch's FlopCounterMode over a second decode of the same
prompts; elementwise work such as softmax or GELU is not counted) times its samples/s, as a share
of the same-thread matmul peak measured in the same run: the best GFLOP/s of fp32 products of the
decoder's own shapes (encoder FFN in and out over ENCODE_ROWS rows, the vocabulary projection of
one beam step).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from ..decode.beam import ENCODE_ROWS, generate_ids
from ..errors import UserError
from ..model import ModelConfig, UniLM
from ..spec import DecodeSpec
from .reference_decode import study_beam_search
from .train import SCRATCH

CLS, SEP, PAD = 2, 3, 0


def _prompts(n: int, source_len: int, vocab: int, seed: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [[CLS] + torch.randint(5, vocab, (source_len,), generator=g).tolist() + [SEP] for _ in range(n)]


def _cpu_sdpa_flops(q, k, v, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(q, k, v)  # torch's own count for SDPA, which FlopCounterMode maps only for CUDA kernels


def decode_flops(model, prompts, beam: int, max_len: int, batch_size: int) -> int:
    """Matrix-multiply FLOPs (2·M·N·K per product, attention's included) of `generate_ids` on `prompts`."""
    cpu_sdpa = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}
    with FlopCounterMode(display=False, custom_mapping=cpu_sdpa) as counter:
        generate_ids(model, prompts, beam, max_len, SEP, "cpu", batch_size=batch_size)
    return counter.get_total_flops()


def matmul_peak(cfg: ModelConfig, rows: int, repeat: int = 5) -> float:
    """Best GFLOP/s of fp32 products (with bias, as nn.Linear) of the decoder's shapes at the current thread count."""
    best = 0.0
    shapes = [(ENCODE_ROWS, cfg.hidden, cfg.ffn), (ENCODE_ROWS, cfg.ffn, cfg.hidden), (rows, cfg.hidden, cfg.vocab_size)]
    for m, k, n in shapes:
        x, w, b = torch.randn(m, k), torch.randn(n, k), torch.randn(n)
        F.linear(x, w, b)  # warm-up
        for _ in range(repeat):
            t0 = time.perf_counter()
            F.linear(x, w, b)
            best = max(best, 2 * m * k * n / (time.perf_counter() - t0) / 1e9)
    return best


def bench_decode(n: int = 32, beam: int = 3, source_len: int = 256, max_len: int = 32, naive_n: int = 4,
                 vocab: int = 5000, seed: int = 0, hf: bool = True, threads: int | None = 1) -> dict:
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    positions = max(512, source_len + 2 + max_len)
    cfg = ModelConfig(vocab_size=vocab, hidden=SCRATCH["hidden"], layers=SCRATCH["layers"], heads=SCRATCH["heads"],
                      max_positions=positions, dropout=0.0)
    model = UniLM(cfg).eval()
    prompts = _prompts(n, source_len, vocab, seed)
    out: dict = {"n": n, "beam": beam, "source_len": source_len, "max_len": max_len,
                 "model": f"{cfg.layers}x{cfg.hidden}", "vocab": vocab, "threads": torch.get_num_threads()}

    batch_size = DecodeSpec().batch_size
    t0 = time.perf_counter()
    ours = generate_ids(model, prompts, beam, max_len, SEP, "cpu", batch_size=batch_size)
    dt = time.perf_counter() - t0
    out["ours_samples_per_s"] = n / dt
    out["ours_tokens_per_sample"] = sum(len(h[0].tokens) for h in ours) / n
    out["ours_flops_per_sample"] = decode_flops(model, prompts, beam, max_len, batch_size) / n
    out["ours_gflops"] = out["ours_flops_per_sample"] * out["ours_samples_per_s"] / 1e9
    out["matmul_peak_gflops"] = matmul_peak(cfg, beam * min(n, batch_size))
    out["share_of_peak"] = out["ours_gflops"] / out["matmul_peak_gflops"]

    k = max(1, min(naive_n, n))
    t0 = time.perf_counter()
    with torch.inference_mode():
        naive = [study_beam_search(model, p, beam, max_len, SEP) for p in prompts[:k]]
    dt = time.perf_counter() - t0
    out["naive_n"] = k
    out["naive_samples_per_s"] = k / dt
    out["naive_tokens_per_sample"] = sum(len(r[0][0]) for r in naive) / k
    out["ratio_vs_naive"] = out["ours_samples_per_s"] / out["naive_samples_per_s"]

    if hf:
        try:
            import transformers
            from transformers import BertConfig, BertLMHeadModel
        except ImportError:
            raise UserError("the transformers comparison needs the test extra: pip install -e '.[test]'") from None
        hcfg = BertConfig(vocab_size=vocab, hidden_size=cfg.hidden, num_hidden_layers=cfg.layers,
                          num_attention_heads=cfg.heads, intermediate_size=cfg.ffn, max_position_embeddings=positions,
                          is_decoder=True, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                          pad_token_id=PAD, bos_token_id=CLS, eos_token_id=SEP)
        hmodel = BertLMHeadModel(hcfg).eval()
        ids = torch.tensor(prompts)
        t0 = time.perf_counter()
        with torch.inference_mode():
            gen = hmodel.generate(input_ids=ids, attention_mask=torch.ones_like(ids), num_beams=beam,
                                  max_new_tokens=max_len, do_sample=False, eos_token_id=SEP, pad_token_id=PAD,
                                  use_cache=True)
        dt = time.perf_counter() - t0
        new = gen[:, ids.shape[1]:]
        out["hf_samples_per_s"] = n / dt
        out["hf_tokens_per_sample"] = float((new != PAD).sum()) / n
        out["ratio_vs_hf"] = out["ours_samples_per_s"] / out["hf_samples_per_s"]
        out["hf_version"] = transformers.__version__
    return out
