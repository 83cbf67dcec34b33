"""A spec → its grid of runs (method × seed), each in its own directory, then the summary table."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from . import report
from .metrics import study_per_example
from .predictions import read_columns
from .spec import Spec, method_label
from .train import make_progress, run_one


def run_dir_name(label: str) -> str:
    """A directory name for a method label: `random_replace(ratio=0.2)` → `random_replace-ratio=0.2`."""
    return re.sub(r"[^\w.=-]+", "-", label).strip("-")


def grid(spec: Spec) -> list[tuple]:
    return [(m, method_label(m), seed) for m in spec.methods for seed in spec.train.seeds]


def run_spec(spec: Spec, out_dir: Path, device: torch.device, console=None) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    with make_progress(console) as progress:
        for m, label, seed in grid(spec):
            run_dir = out_dir / run_dir_name(label) / f"seed{seed}"
            results.append(run_one(spec, m, seed, run_dir, device, progress))
    summary = report.summarize(spec.name, results, [method_label(m) for m in spec.methods], spec.decode.beams)
    report.add_bootstrap(summary, per_example_scores(out_dir, spec))
    report.write_summary(out_dir, summary)
    return summary


def per_example_scores(out_dir: Path, spec: Spec) -> dict:
    """(method, beam, seed) → per-example study scores, recomputed from the predictions files."""
    scores = {}
    for m, label, seed in grid(spec):
        for beam in spec.decode.beams:
            path = out_dir / run_dir_name(label) / f"seed{seed}" / f"predictions.beam{beam}.tsv"
            cols = read_columns(path)
            scores[(label, beam, seed)] = study_per_example(cols["prediction"], cols["reference"])
    return scores
