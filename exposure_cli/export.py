"""A trained run as a Hugging Face BERT directory (`exposure export`).

The UniLM already carries `BertForMaskedLM`'s parameter names, so its selected weights (best.pt)
are written as they are; the tied decoder is not stored (transformers ties it to the word
embeddings on loading, as it does for BERT). The directory holds config.json, model.safetensors,
vocab.txt, tokenizer.json and tokenizer_config.json. What transformers cannot hold is refused: the
copy head (BertForMaskedLM has none) and pre-LN blocks (BERT is post-LN).

A UniLM is used as transformers' BERT with segment ids 0 for `[CLS] source [SEP]` and 1 for the
target, and the UniLM mask passed as a 4-D attention mask (tests/test_export.py shows how).
"""

from __future__ import annotations

import json
from pathlib import Path

from . import fileio
from .decode.generate import load_run
from .errors import UserError
from .model import ModelConfig
from .tokenizers import CharTokenizer, Tokenizer


def bert_config(c: ModelConfig) -> dict:
    """config.json of a BertForMaskedLM with the UniLM's sizes."""
    return {"architectures": ["BertForMaskedLM"], "model_type": "bert", "vocab_size": c.vocab_size,
            "hidden_size": c.hidden, "num_hidden_layers": c.layers, "num_attention_heads": c.heads,
            "intermediate_size": c.ffn, "hidden_act": "gelu", "hidden_dropout_prob": c.dropout,
            "attention_probs_dropout_prob": c.attention_p, "max_position_embeddings": c.max_positions,
            "type_vocab_size": c.type_vocab_size, "layer_norm_eps": c.layer_norm_eps, "initializer_range": 0.02,
            "pad_token_id": c.pad_id, "position_embedding_type": "absolute", "tie_word_embeddings": True}


def char_tokenizer_json(tok: CharTokenizer) -> str:
    """The char tokenizer as a `tokenizers` pipeline: lower-cased, whitespace dropped, one token per
    character, [UNK] for the rest, [CLS] A [SEP] B [SEP] with segments 0 and 1."""
    from tokenizers import Regex
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel

    hf = HFTokenizer(WordLevel({t: i for i, t in enumerate(tok.tokens)}, unk_token="[UNK]"))
    hf.normalizer = normalizers.Lowercase()
    hf.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                pre_tokenizers.Split(Regex("."), "isolated")])
    hf.decoder = decoders.Fuse()
    hf.add_special_tokens(tok.tokens[:5])
    hf.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.cls_id), ("[SEP]", tok.sep_id)])
    return hf.to_str(pretty=True)


def tokenizer_files(tok: Tokenizer, max_len: int) -> dict[str, str]:
    """vocab.txt, tokenizer.json and tokenizer_config.json of the run's tokenizer."""
    if isinstance(tok, CharTokenizer):
        hf_json = char_tokenizer_json(tok)
    else:
        hf_json = tok.hf.to_str(pretty=True)
    specials = {"unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]"}
    if "[MASK]" in tok.tokens:
        specials["mask_token"] = "[MASK]"
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_len, **specials}
    return {"vocab.txt": "".join(t + "\n" for t in tok.tokens), "tokenizer.json": hf_json + "\n",
            "tokenizer_config.json": json.dumps(config, indent=2) + "\n"}


def export_run(run_dir: str | Path, out: str | Path) -> Path:
    """Write the run's selected model and tokenizer to `out` as a Hugging Face BERT directory."""
    from safetensors.torch import save

    run_dir, out = Path(run_dir), Path(out)
    model, tok, spec = load_run(run_dir, "cpu")
    c = model.config
    if c.copy:
        raise UserError(f"{run_dir}: the model has a copy head (model.copy: true), which transformers' "
                        "BertForMaskedLM has no place for; only runs without it can be exported")
    if c.pre_ln:
        raise UserError(f"{run_dir}: the model is pre-LN (model.pre_ln: true); transformers' BERT is post-LN, "
                        "so only post-LN runs can be exported")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    fileio.write_bytes(out / "model.safetensors", save(state, metadata={"format": "pt"}))
    fileio.write_json(out / "config.json", bert_config(c))
    for name, text in tokenizer_files(tok, spec.model.max_len).items():
        fileio.write_text(out / name, text)
    return out
