"""The layout of an experiment's output directory, in one place.

    OUT/summary.json, table.md, table.csv     the grid's summary and its tables
    OUT/wall.json (KEEP/wall.json with --keep)  its wall time so far, over every invocation
    OUT/<method>/seed<N>/                     one run (`run_path`), a unit of resumable work:
      spec.yaml          the resolved spec of the experiment, plus this run's method and seed
      vocab.txt          the run's tokenizer vocabulary
      last.pt            everything the rest of the run depends on (train.py: `save_last`)
      last.prev.pt       the checkpoint before last.pt, kept for when last.pt turns out damaged
      best.pt            the weights with the best dev BLEU so far (and the model config)
      train.jsonl        the training log, one JSON object a line
      status.json        the latest progress of a run in another process (executors)
      predictions.beam{k}.tsv, hypotheses.beam{k}.jsonl   the test split decoded at beam k
      metrics.json       written last: its presence marks the run finished
      checksums.json     the sha256 of metrics, predictions and hypotheses, checked on every rerun
      failed.json        written instead when the run diverged
      diagnostics.json   `exposure diagnose`'s measures of the run

A kept run (`exposure run --keep`, runner.grid.keep_run) holds metrics.json, spec.yaml, train.jsonl, and
diagnostics.json and predictions.beam{k}.tsv xz-compressed (`.xz`; runs kept before gzipped them,
`.gz`): results/ keeps ~200 campaign, screen and leaderboard runs, and those two files are nine
tenths of a run's bytes, a sixth of it compressed. `kept` finds any form.

Every module that reads or writes one of these names it through here. No torch: the table and
plot commands import it.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..fileio import CODECS

SPEC = "spec.yaml"
LAST = "last.pt"
PREVIOUS = "last.prev.pt"  # the checkpoint before last.pt, for when storage damages last.pt
BEST = "best.pt"
LOG = "train.jsonl"
STATUS = "status.json"
METRICS = "metrics.json"
FAILED = "failed.json"
DIAGNOSTICS = "diagnostics.json"
CHECKSUMS = "checksums.json"  # sha256 of a finished run's outputs, checked whenever the grid is rerun
SUMMARY = "summary.json"
WALL = "wall.json"  # the grid's wall time so far, over every `exposure run` on it (runner.grid.wall_clock)
TABLE_MD, TABLE_CSV = "table.md", "table.csv"


PREDICTIONS = "predictions.beam"  # + "{k}.tsv": `predictions`
COMPRESSED = (DIAGNOSTICS, PREDICTIONS)  # what a kept run compresses (names that start so)
XZ = ".xz"  # what a kept run writes (fileio.write_xz_text)
SUFFIXES = tuple(CODECS)  # every compressed form fileio.read_text reads, xz first: gzip is how runs were kept before


def compressed(name: str) -> bool:
    return name.startswith(COMPRESSED)


def kept(run: Path, name: str) -> Path:
    """The file `name` of a run: run/name, or its compressed form (name.xz, or name.gz as kept by an
    older version) when only that exists (a kept run's); run/name when none does, so that an error
    names the file expected."""
    plain = Path(run) / name
    forms = [plain] + [plain.with_name(name + suffix) for suffix in SUFFIXES]
    return next((p for p in forms if p.exists()), plain)


def plain_name(name: str) -> str:
    """A kept file's name without its compression suffix."""
    return next((name.removesuffix(s) for s in SUFFIXES if name.endswith(s)), name)


def predictions(beam: int) -> str:
    return f"{PREDICTIONS}{beam}.tsv"


def hypotheses(beam: int) -> str:
    return f"hypotheses.beam{beam}.jsonl"


def run_dir_name(label: str) -> str:
    """A directory name for a method label: `random_replace(ratio=0.2)` → `random_replace-ratio=0.2`."""
    return re.sub(r"[^\w.=-]+", "-", label).strip("-")


def run_path(out_dir: Path, label: str, seed: int) -> Path:
    return out_dir / run_dir_name(label) / f"seed{seed}"


def read_wall(directory: Path) -> dict | None:
    """DIRECTORY/wall.json (runner.grid.wall_clock writes it) as {"seconds", "invocations"}, or None."""
    from .. import fileio

    path = Path(directory) / WALL
    if not path.exists():
        return None
    state = fileio.read_json(path)
    return {"seconds": float(state.get("seconds") or 0), "invocations": int(state.get("invocations") or 0)}


def read_log(log: Path) -> list[dict]:
    """A run's train.jsonl as its entries (step lines and epoch lines); a damaged line is a
    one-line error naming the file and line."""
    import json

    from .. import fileio
    from ..errors import UserError

    entries = []
    for number, line in enumerate(fileio.read_text(log, "training log").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{log}:{number}: invalid JSON ({e.msg})") from None
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def finished_runs(out_dir: Path) -> list[Path]:
    """The run directories under OUT that hold metrics.json (finished runs), sorted."""
    return sorted(p.parent for p in Path(out_dir).glob(f"*/seed*/{METRICS}"))
