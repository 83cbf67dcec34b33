"""Tiny random BERT checkpoints in the layouts found in the wild, for tests (no weights can be downloaded).

The vocabulary is every character of the texts given plus what WordPiece and the study's
simplification have something to do with: multi-character CJK words and `##` pieces (dropped by the
simplification), Latin words and pieces, numbers, punctuation runs, and BERT's `[unusedN]` slots
between [PAD] and [UNK], so that no code can find a special token by its position.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

HEAD = ["[PAD]", "[unused1]", "[unused2]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
EXTRA = ["中国", "模型", "研究", "##的", "##学", "##型", "deep", "learn", "##ing", "lstm", "##s", "the", "net",
         "##work", "cnn", "2015", "##15", "##0", "...", "##.", ":)", "e", "##e", "##a", "##r", "##n", "##t"]
LAYOUTS = [("safetensors", True), ("safetensors", False), ("bin", True), ("bin", False)]


def vocab_tokens(texts) -> list[str]:
    from tokenizers.normalizers import BertNormalizer

    norm = BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
    chars = sorted({c for t in texts for c in norm.normalize_str(t) if not c.isspace()})
    tokens = HEAD + [t for t in chars if t not in HEAD]
    # interleave the extra tokens so that kept and dropped tokens alternate through the file
    for i, t in enumerate(EXTRA):
        if t not in tokens:
            tokens.insert(len(HEAD) + 7 * i, t)
    return tokens


def tiny_bert(vocab_size: int, seed: int = 0, hidden: int = 32, layers: int = 2, heads: int = 2,
              intermediate: int = 64, max_positions: int = 256):
    """A BertForMaskedLM with every parameter random (biases and LayerNorms too), in eval mode."""
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=intermediate,
                        max_position_embeddings=max_positions, type_vocab_size=2, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, attn_implementation="eager")
    model = BertForMaskedLM(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(1.0 if "LayerNorm.weight" in name else 0.0, 0.2)
    return model


def write_checkpoint(model, tokens: list[str], out: Path, fmt: str = "safetensors", prefixed: bool = True,
                     old_names: bool = False) -> Path:
    """`out` as a Hugging Face BERT directory: config.json, vocab.txt and the weights in `fmt`
    (`safetensors` or `bin`), names with or without `bert.`, LayerNorm gamma/beta with `old_names`.
    The `.bin` also carries what old checkpoints carry (the tied decoder, a pooler, NSP head)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.txt").write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    model.config.to_json_file(out / "config.json")
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if fmt == "safetensors":
        state = {k: v for k, v in state.items() if not k.startswith("cls.predictions.decoder")}
    else:
        h = model.config.hidden_size
        state.update({"bert.pooler.dense.weight": torch.randn(h, h), "bert.pooler.dense.bias": torch.zeros(h),
                      "cls.seq_relationship.weight": torch.randn(2, h), "cls.seq_relationship.bias": torch.zeros(2),
                      "bert.embeddings.position_ids": torch.arange(model.config.max_position_embeddings)[None]})
    if not prefixed:
        state = {k.removeprefix("bert."): v for k, v in state.items()}
    if old_names:
        state = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
                 for k, v in state.items()}
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(state, str(out / "model.safetensors"))
    else:
        torch.save(state, out / "pytorch_model.bin")
    return out


def config_json(path: Path) -> dict:
    return json.loads((path / "config.json").read_text(encoding="utf-8"))
