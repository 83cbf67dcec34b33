"""`exposure generate`: decode new sources with a finished run's selected weights."""

from __future__ import annotations

from pathlib import Path

import yaml

from .. import fileio
from ..build import tokenizer_for
from ..errors import UserError
from ..model import UniLM
from ..runner import rundir
from ..spec import Spec, spec_from_dict
from ..tokenizers import Tokenizer
from .beam import decode_spec


def load_run_spec(run_dir: Path) -> tuple[Spec, dict]:
    """The run's spec and its `run` section (method, seed)."""
    path = run_dir / rundir.SPEC
    try:
        raw = yaml.safe_load(fileio.read_text(path, "run spec"))
    except yaml.YAMLError as e:
        raise UserError(f"{path}: invalid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping")
    run = raw.pop("run", None) or {}  # the run's method and seed, not part of a Spec
    try:
        return spec_from_dict(raw), run
    except UserError as e:
        raise UserError(f"{path}: {e}") from None


def load_run(run_dir: str | Path, device) -> tuple[UniLM, Tokenizer, Spec]:
    """The model of `best.pt`, the run's tokenizer and spec; a UserError if the run is not usable."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: not a run directory")
    best = run_dir / rundir.BEST
    if not best.is_file():
        raise UserError(f"{run_dir}: no finished checkpoint (best.pt is written after the first epoch)")
    spec, _ = load_run_spec(run_dir)
    tok = tokenizer_for(spec, run_dir)
    model = UniLM.from_checkpoint(best, device)
    if model.config.vocab_size != len(tok):
        raise UserError(f"{run_dir}: the vocabulary has {len(tok)} tokens but best.pt was trained with "
                        f"{model.config.vocab_size}")
    return model.eval(), tok, spec


def generate_lines(model, tok: Tokenizer, spec: Spec, sources: list[str], beam: int, n_best: int, device,
                   strategy: str | None = None, progress=None) -> list[str]:
    """One output line per source: the best prediction, or the n best joined by tabs."""
    hyps = decode_spec(model, tok, spec, sources, beam, device, progress, n_best=n_best,
                       strategy=strategy or spec.decode.strategy)
    return ["\t".join(tok.decode(h.tokens) for h in hs[:n_best]) for hs in hyps]
