"""Tiny grids for end-to-end tests: a copy task the test writes itself (the title is the first
characters of the content), a small spec over it, and running `exposure` in a subprocess."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def write_split(path: Path, n: int, rng: random.Random) -> None:
    letters = "abcdefghij甲乙丙丁"
    lines = []
    for _ in range(n):
        content = "".join(rng.choice(letters) for _ in range(rng.randint(6, 30)))
        lines.append(f"{content[:rng.randint(2, 5)]}\t{content}\n")
    path.write_text("".join(lines), encoding="utf-8")


def write_grid(tmp: Path, methods=("baseline",), seeds=(0, 1), epochs: int = 2, train: int = 96,
               **train_keys) -> Path:
    """The data and a spec of a small grid in `tmp`; returns the spec's path."""
    rng = random.Random(0)
    for split, n in [("train", train), ("dev", 8), ("test", 12)]:
        write_split(tmp / f"{split}.tsv", n, rng)
    spec = {
        "name": "fixture",
        "data": {s: str(tmp / f"{s}.tsv") for s in ("train", "dev", "test")},
        "model": {"layers": 1, "hidden": 32, "heads": 2, "max_len": 48, "max_target_len": 8, "dropout": 0.1},
        "train": {"epochs": epochs, "batch_size": 16, "lr": 3e-3, "seeds": list(seeds), "dev_size": 8, "bf16": True,
                  **train_keys},
        "methods": list(methods),
        "decode": {"beams": [1, 2], "max_len": 8},
    }
    p = tmp / "fixture.yaml"
    p.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    return p


def exposure(*args, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    """`exposure ARGS` in a fresh interpreter, as a user would run it."""
    return subprocess.run([sys.executable, "-m", "exposure_cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})}, **kw)


def start(*args, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "exposure_cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, **(env or {})})


def results(out: Path) -> dict[str, bytes]:
    """Everything a finished grid leaves that must not depend on how it got there: the summary and
    each run's predictions and hypotheses (metrics.json holds wall-clock seconds, so it is left out)."""
    files = [out / "summary.json"] + sorted(out.glob("*/seed*/predictions.beam*.tsv")) + \
        sorted(out.glob("*/seed*/hypotheses.beam*.jsonl"))
    return {str(p.relative_to(out)): p.read_bytes() for p in files}
