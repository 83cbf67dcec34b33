"""`exposure generate`: decode new sources with a finished run's selected weights."""

from __future__ import annotations

from pathlib import Path

import yaml

from . import fileio
from .decode import decode_hypotheses
from .errors import UserError
from .model import UniLM
from .spec import Spec, spec_from_dict
from .tokenizer import CharTokenizer
from .train import decode_options


def load_run(run_dir: str | Path, device) -> tuple[UniLM, CharTokenizer, Spec]:
    """The model of `best.pt`, the run's tokenizer and spec; a UserError if the run is not usable."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: not a run directory")
    best = run_dir / "best.pt"
    if not best.is_file():
        raise UserError(f"{run_dir}: no finished checkpoint (best.pt is written after the first epoch)")
    raw = yaml.safe_load(fileio.read_text(run_dir / "spec.yaml", "run spec"))
    if not isinstance(raw, dict):
        raise UserError(f"{run_dir / 'spec.yaml'}: expected a mapping")
    raw.pop("run", None)  # the run's method and seed, not part of a Spec
    try:
        spec = spec_from_dict(raw)
    except UserError as e:
        raise UserError(f"{run_dir / 'spec.yaml'}: {e}") from None
    tok = CharTokenizer.load(run_dir / "vocab.txt")
    try:
        model = UniLM.from_checkpoint(best, device)
    except Exception as e:  # a truncated or foreign file
        raise UserError(f"{best}: not a usable checkpoint ({type(e).__name__}: {e})") from None
    if model.config.vocab_size != len(tok):
        raise UserError(f"{run_dir}: vocab.txt has {len(tok)} tokens but best.pt was trained with "
                        f"{model.config.vocab_size}")
    return model.eval(), tok, spec


def generate_lines(model, tok: CharTokenizer, spec: Spec, sources: list[str], beam: int, n_best: int, device,
                   strategy: str | None = None, progress=None) -> list[str]:
    """One output line per source: the best prediction, or the n best joined by tabs."""
    options = {**decode_options(spec), "n_best": n_best, "strategy": strategy or spec.decode.strategy}
    hyps = decode_hypotheses(model, tok, sources, beam, spec.model.source_len(), spec.decode.max_len, device,
                             progress, **options)
    return ["\t".join(tok.decode(h.tokens) for h in hs[:n_best]) for hs in hyps]
