"""A finished run's model, tokenizer, spec and the split's examples with the decoder's outputs: on
test read from the run's own files (nothing is decoded again), on another split decoded now.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import fileio
from ..data import read_pairs
from ..decode.beam import Hypothesis, decode_spec
from ..decode.generate import load_run
from ..decode.predictions import read_columns, read_lines
from ..errors import UserError
from ..runner import rundir
from .base import Options


@dataclass
class RunData:
    dir: Path
    method: str
    seed: int
    model: torch.nn.Module
    tok: object
    spec: object
    sources: list[str]
    references: list[str]
    outputs: dict[int, list[Hypothesis]]  # beam → the decoder's best hypothesis per example
    predictions: dict[int, list[str]]  # beam → predicted text per example
    eval_seconds: float | None = None


def finished_runs(out_dir: Path) -> list[Path]:
    """Run directories (OUT/<method>/seed<N>/) holding metrics.json, the mark of a finished run."""
    if not out_dir.is_dir():
        raise UserError(f"{out_dir}: not a directory (expected an experiment's output directory)")
    runs = rundir.finished_runs(out_dir)
    if not runs:
        raise UserError(f"{out_dir}: no finished run (expected OUT/<method>/seed<N>/metrics.json; run `exposure run` "
                        "first)")
    return runs


def read_hypotheses(path: Path, vocab_size: int) -> list[Hypothesis]:
    out = []
    for n, line in enumerate(read_lines(path), start=1):
        try:
            d = json.loads(line)
            tokens, score, finished = d["tokens"], float(d["score"]), d["finished"]
            ok = isinstance(tokens, list) and tokens and all(isinstance(t, int) and 0 <= t < vocab_size for t in tokens)
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok or not isinstance(finished, bool):
            raise UserError(f"{path}:{n}: expected {{\"tokens\": [ids in [0, {vocab_size})], \"score\": number, "
                            "\"finished\": true|false}")
        out.append(Hypothesis(tokens, score, finished))
    return out


def _test_examples(run_dir: Path, tok, beams: list[int], limit: int | None):
    """Sources, references, outputs and predictions of the test split, from the run's own files."""
    sources = refs = None
    outputs, preds = {}, {}
    for b in beams:
        path = rundir.kept(run_dir, rundir.predictions(b))
        cols = read_columns(path)
        if cols is None:
            raise UserError(f"{path}: expected a predictions TSV (header source, reference, prediction)")
        hyps = read_hypotheses(run_dir / rundir.hypotheses(b), len(tok))
        if len(hyps) != len(cols["prediction"]):
            raise UserError(f"{run_dir / rundir.hypotheses(b)}: {len(hyps)} hypotheses, expected "
                            f"{len(cols['prediction'])} (the rows of {path.name})")
        if sources is None:
            sources, refs = cols["source"], cols["reference"]
        elif (sources, refs) != (cols["source"], cols["reference"]):
            raise UserError(f"{path}: not the examples of {rundir.predictions(beams[0])}")
        outputs[b], preds[b] = hyps[:limit], cols["prediction"][:limit]
    return sources[:limit], refs[:limit], outputs, preds


def _decoded_examples(model, tok, spec, split: str, beams: list[int], limit: int | None, device):
    """Another split has no decoder output on disk: decode it (the run's decoder and options)."""
    try:
        pairs = read_pairs(getattr(spec.data, split))[:limit]
    except UserError as e:
        raise UserError(f"data.{split} of the run's spec.yaml, relative to the current directory: {e}") from None
    sources, refs = [p.source for p in pairs], [p.target for p in pairs]
    outputs, preds = {}, {}
    for b in beams:
        outputs[b] = [hs[0] for hs in decode_spec(model, tok, spec, sources, b, device)]
        preds[b] = [tok.decode(h.tokens) for h in outputs[b]]
    return sources, refs, outputs, preds


def load_run_data(run_dir: Path, opts: Options, device) -> RunData:
    """A finished run's model, tokenizer, spec and the split's examples with the decoder's outputs."""
    metrics = fileio.read_json(run_dir / rundir.METRICS, "metrics file")
    if not isinstance(metrics, dict) or not {"method", "seed"} <= metrics.keys():
        raise UserError(f"{run_dir / rundir.METRICS}: expected an object with 'method' and 'seed'")
    model, tok, spec = load_run(run_dir, device)
    beams = sorted(set(opts.beams) | {1})  # greedy is the beam curse's point of comparison
    if opts.split == "test":
        data = _test_examples(run_dir, tok, beams, opts.limit)
    else:
        data = _decoded_examples(model, tok, spec, opts.split, beams, opts.limit, device)
    if not data[0]:
        raise UserError(f"{run_dir}: no {opts.split} examples")
    model.float().eval()
    return RunData(run_dir, str(metrics["method"]), int(metrics["seed"]), model, tok, spec, *data,
                   eval_seconds=metrics.get("eval_seconds"))
