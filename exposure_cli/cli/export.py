"""`exposure export`: a trained run as a Hugging Face BERT directory."""

from __future__ import annotations

from pathlib import Path

import typer

from .app import app, console


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="A run directory holding spec.yaml, its tokenizer and best.pt."),
    out: Path = typer.Option(..., "--out", "-o", help="The directory to write (created if needed)."),
):
    """Write a run's selected weights (best.pt) and tokenizer as a Hugging Face BERT directory:
    config.json, model.safetensors, vocab.txt, tokenizer.json, tokenizer_config.json, which
    `BertForMaskedLM.from_pretrained` loads. Use it as a UniLM: segment ids 0 for [CLS] source [SEP]
    and 1 for the target, and the UniLM mask as a 4-D attention mask. Runs with a copy head
    (model.copy) or pre-LN blocks (model.pre_ln) have no transformers equivalent and are refused."""
    from ..export import export_run

    path = export_run(run_dir, out)
    console.print(f"{run_dir} → {path} (config.json, model.safetensors, vocab.txt, tokenizer.json)", highlight=False)
