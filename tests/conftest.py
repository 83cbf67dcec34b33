import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared upstream data (`../shared/data`), which is never committed to this repo."""
    path = Path(os.environ.get("EXPOSURE_SHARED_DATA", ROOT.parent / "shared" / "data"))
    if not (path / "raw").is_dir():
        pytest.fail(f"shared data not found at {path}: set EXPOSURE_SHARED_DATA to the folder holding raw/")
    return path


@pytest.fixture(scope="session")
def prepared_data(shared_data, tmp_path_factory) -> Path:
    """The project's splits, built by `prepare` from the shared raw files (never from a checkout's data/)."""
    from exposure_cli.data import prepare

    out = tmp_path_factory.mktemp("data")
    prepare(shared_data / "raw", out)
    return out


@pytest.fixture(scope="session")
def fake_runs(prepared_data, tmp_path_factory) -> Path:
    """An output directory as `exposure run` leaves it, without training: four methods (one the
    article did not run, one a variant) × 2 seeds × beams 1-3, each run with predictions files made
    by corrupting the CSL test titles (better methods and beams corrupt less), the metrics.json
    they score to, a train.jsonl and its spec.yaml; then summary.json and the tables from report.summarize_grid."""
    import json
    import random

    from exposure_cli import fileio, metrics
    from exposure_cli.report import summary as report
    from exposure_cli.runner import grid as runner
    from exposure_cli.report import tables
    from exposure_cli.decode.predictions import write_predictions
    from exposure_cli.spec import method_label, spec_from_dict
    from exposure_cli.train import write_run_spec

    out = tmp_path_factory.mktemp("runs") / "csl-fake"
    spec = spec_from_dict({"name": "csl-fake", "data": {s: "unused" for s in ("train", "dev", "test")},
                           "methods": ["baseline", {"random_replace": {"pool": "sequence"}}, "gradient_penalty",
                                       "scheduled_sampling"],
                           "train": {"seeds": [0, 1], "epochs": 3}, "decode": {"beams": [1, 2, 3]}})
    lines = (prepared_data / "csl" / "test.tsv").read_text(encoding="utf-8").splitlines()[:60]
    refs = [line.split("\t")[0] for line in lines]
    sources = [line.split("\t")[1] for line in lines]
    results = []
    for i, (m, label, seed) in enumerate(runner.grid(spec)):
        rng = random.Random(i)
        d = runner.run_path(out, label, seed)
        beams = {}
        for beam in spec.decode.beams:
            keep = 0.45 + 0.08 * (i // 2) + 0.04 * beam
            preds = ["".join(c if rng.random() < keep else rng.choice("的方法研究") for c in r) for r in refs]
            write_predictions(d / f"predictions.beam{beam}.tsv", sources, refs, preds)
            beams[str(beam)] = {**metrics.study_scores(preds, refs), **metrics.word_scores(preds, refs)}
        log = [{"step": 1, "epoch": 1, "loss": 3.0}]
        log += [{"epoch": e, "dev": {"bleu": 10.0 + 5 * e - e * e + i, "rouge_l": 30.0}, "best": e <= 2}
                for e in (1, 2, 3)]
        fileio.write_text(d / "train.jsonl", "".join(json.dumps(x) + "\n" for x in log))
        write_run_spec(spec, m, seed, d)
        result = {"method": label, "method_name": m.name, "params": m.params, "seed": seed, "best_epoch": 2,
                  "dev_bleu": 16.0 + i, "epochs": 3, "train_seconds": 1.5, "test": beams}
        fileio.write_json(d / "metrics.json", result)
        results.append(result)
    assert [method_label(m) for m in spec.methods][1] == "random_replace(pool=sequence)"
    summary = report.summarize_grid(spec, out, results)
    report.write_summary(out, summary)
    tables.write_tables(out, summary)
    return out


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    """Splits of tiny.py's copy task (train 2,000, dev 240, test 60 pairs), for tests that need a few
    pairs but not the real data."""
    from tiny import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="session")
def tiny_trained(synthetic_data):
    """tiny_trained(steps, **options) → (model, tok): tiny.py's 2 × 64 UniLM trained on the
    synthetic split, once per session for each setting (test_decode and test_diagnose share them).
    The models are in eval mode; a test that changes a model's mode puts it back."""
    from tiny import train_tiny

    cache = {}

    def get(steps: int = 300, **options):
        key = (steps, tuple(sorted(options.items())))
        if key not in cache:
            cache[key] = train_tiny(synthetic_data, steps, **options)
        return cache[key]

    return get


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and on a shared 2-core machine two threads that wait on
    each other run small ops far slower and less steadily: modules that use this run on one thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
