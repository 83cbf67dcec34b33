"""One run: train a UniLM with one method and one seed, select by dev BLEU, decode and score test.

A run directory is the unit of resumable work:
  spec.yaml          the resolved spec of the experiment
  vocab.txt          the tokenizer built from the training split
  last.pt            model, optimizer, schedule and RNG state after the last finished epoch
  best.pt            the weights with the best dev BLEU so far (and the model config)
  train.jsonl        the training log, one JSON object a line
  predictions.beam{k}.tsv, metrics.json   written at the end; metrics.json marks the run finished
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict
from pathlib import Path

import torch
import yaml
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from . import fileio
from .batching import bucketed_batches, collate, encode_examples
from .data import read_pairs
from .decode import decode_texts
from .errors import UserError
from .methods import StepContext, get_method
from .metrics import study_scores
from .model import ModelConfig, UniLM
from .predictions import write_predictions
from .spec import MethodSpec, Spec
from .tokenizer import CharTokenizer


def resolve_device(device: str | None) -> torch.device:
    """`auto` is CUDA when available, else CPU; an unusable device is a user error, not a crash later."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        d = torch.device(device)
    except RuntimeError:
        raise UserError(f"--device {device!r}: expected cpu, cuda, cuda:N or auto") from None
    if d.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available on this machine (use cpu or auto)")
    if d.type == "cuda" and d.index is not None and d.index >= torch.cuda.device_count():
        raise UserError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    if d.type not in ("cpu", "cuda"):
        raise UserError(f"--device {device!r}: expected cpu, cuda, cuda:N or auto")
    return d


def make_progress(console=None) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        console=console, transient=False,
    )


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    return 1.0 - frac if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * frac))


def build_model(spec: Spec, vocab_size: int) -> UniLM:
    m = spec.model
    return UniLM(ModelConfig(vocab_size=vocab_size, hidden=m.hidden, layers=m.layers, heads=m.heads,
                             intermediate=m.intermediate, max_positions=m.max_len, dropout=m.dropout,
                             pre_ln=m.pre_ln, copy=m.copy, copy_continuation=m.copy_continuation,
                             copy_coverage=m.copy_coverage))


def load_split(path: str, limit: int | None = None):
    pairs = read_pairs(path)
    return pairs[:limit] if limit is not None else pairs


def run_one(spec: Spec, method_spec: MethodSpec, seed: int, run_dir: Path, device: torch.device,
            progress: Progress | None = None) -> dict:
    """Train (or resume), select, decode, score; return the metrics written to metrics.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    done = run_dir / "metrics.json"
    if done.exists():
        return json.loads(done.read_text(encoding="utf-8"))
    fileio.write_text(run_dir / "spec.yaml", yaml.safe_dump(
        {**spec.to_dict(), "run": {"method": {method_spec.name: method_spec.params}, "seed": seed}},
        allow_unicode=True, sort_keys=False))

    train_pairs = load_split(spec.data.train, spec.data.train_limit)
    dev_pairs = load_split(spec.data.dev, spec.train.dev_size)
    test_pairs = load_split(spec.data.test, spec.data.test_limit)  # read now: a bad file fails before training

    vocab_path = run_dir / "vocab.txt"
    if vocab_path.exists():
        tok = CharTokenizer.load(vocab_path)
    else:
        tok = CharTokenizer.build((t for p in train_pairs for t in (p.source, p.target)), spec.model.vocab_min_freq)
        tok.save(vocab_path)

    torch.manual_seed(seed)
    model = build_model(spec, len(tok)).to(device)
    method = get_method(method_spec.name, method_spec.params)
    model.double_backward = method.needs_double_backward
    opt = torch.optim.AdamW(model.parameters(), lr=spec.train.lr, weight_decay=spec.train.weight_decay)
    max_src, max_tgt = spec.model.source_len(), spec.model.max_target_len
    train_ex = encode_examples(tok, train_pairs, max_src, max_tgt)
    lengths = [len(ids) for ids, _ in train_ex]
    steps_per_epoch = math.ceil(len(train_ex) / spec.train.batch_size)
    total_steps = steps_per_epoch * spec.train.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, spec.train.warmup, total_steps, spec.train.schedule))

    rng = random.Random(seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    state = {"epoch": 0, "step": 0, "best_bleu": -1.0, "best_epoch": 0, "train_seconds": 0.0, "dev_seconds": 0.0}
    last = run_dir / "last.pt"
    if last.exists():
        ck = torch.load(last, map_location=device, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        rng.setstate(ck["rng"])
        gen.set_state(ck["generator"])
        torch.set_rng_state(ck["torch_rng"])
        state = ck["state"]

    log_path = run_dir / "train.jsonl"
    log = open(log_path, "a", encoding="utf-8")
    label = method.label()
    own_progress = progress is None
    if own_progress:
        progress = make_progress()
        progress.start()
    task = progress.add_task(f"{label} seed {seed}", total=total_steps, completed=state["step"], info="")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec.train.bf16)
    try:
        for epoch in range(state["epoch"], spec.train.epochs):
            model.train()
            t0 = time.perf_counter()
            tokens = 0
            for idx in bucketed_batches(lengths, spec.train.batch_size, rng):
                batch = collate([train_ex[i] for i in idx], tok.pad_id).to(device)
                ctx = StepContext(state["step"], total_steps, gen, rng, spec.train.label_smoothing)
                batch = method.corrupt(batch, ctx)
                with autocast:
                    loss, logs = method.loss(model, batch, ctx)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if spec.train.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), spec.train.grad_clip)
                opt.step()
                sched.step()
                state["step"] += 1
                tokens += batch.n_tokens
                tps = tokens / max(1e-9, time.perf_counter() - t0)
                progress.update(task, advance=1, info=f"ep {epoch + 1}/{spec.train.epochs} loss {loss.item():.3f} {tps:,.0f} tok/s")
                if state["step"] % spec.train.log_every == 0:
                    log.write(json.dumps({"step": state["step"], "epoch": epoch + 1, "loss": loss.item(), **logs,
                                          "lr": sched.get_last_lr()[0], "tokens_per_s": tps}) + "\n")
                    log.flush()
            t_dev = time.perf_counter()
            state["train_seconds"] += t_dev - t0

            # Model selection, as in the study: greedy-decode the dev set, keep the best BLEU.
            progress.update(task, info=f"ep {epoch + 1}/{spec.train.epochs} decoding dev")
            with autocast:
                preds = decode_texts(model, tok, [p.source for p in dev_pairs], 1, max_src,
                                     spec.decode.max_len, device, batch_size=spec.decode.batch_size)
            dev = study_scores(preds, [p.target for p in dev_pairs])
            state["epoch"] = epoch + 1
            state["dev_seconds"] = state.get("dev_seconds", 0.0) + time.perf_counter() - t_dev
            improved = dev["bleu"] > state["best_bleu"]
            if improved:
                state["best_bleu"], state["best_epoch"] = dev["bleu"], epoch + 1
                fileio.torch_save(run_dir / "best.pt", {"model": model.state_dict(), "config": asdict(model.config),
                                                        "epoch": epoch + 1, "dev": dev})
            log.write(json.dumps({"epoch": epoch + 1, "dev": dev, "best": improved,
                                  "epoch_seconds": time.perf_counter() - t0}) + "\n")
            log.flush()
            fileio.torch_save(last, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                     "scheduler": sched.state_dict(), "rng": rng.getstate(),
                                     "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
                                     "state": state})
            progress.update(task, info=f"ep {epoch + 1} dev bleu {dev['bleu']:.2f} (best {state['best_bleu']:.2f})")
        return evaluate_run(spec, run_dir, tok, label, method_spec, seed, state, device, progress, task, test_pairs)
    finally:
        log.close()
        if own_progress:
            progress.stop()


def decode_options(spec: Spec) -> dict:
    """The spec's search options for `decode_texts` (strategy, length penalty, n-gram blocking, batching)."""
    d = spec.decode
    return {"strategy": d.strategy, "length_penalty": d.length_penalty,
            "no_repeat_ngram_size": d.no_repeat_ngram_size, "batch_size": d.batch_size}


def evaluate_run(spec: Spec, run_dir: Path, tok: CharTokenizer, label: str, method_spec: MethodSpec, seed: int,
                 state: dict, device, progress, task, test_pairs) -> dict:
    model = UniLM.from_checkpoint(run_dir / "best.pt", device)
    sources, refs = [p.source for p in test_pairs], [p.target for p in test_pairs]
    t0 = time.perf_counter()
    beams = {}
    for k in spec.decode.beams:
        progress.update(task, info=f"decoding test, beam {k}")
        preds = decode_texts(model, tok, sources, k, spec.model.source_len(), spec.decode.max_len, device,
                             **decode_options(spec))
        write_predictions(run_dir / f"predictions.beam{k}.tsv", sources, refs, preds)
        beams[str(k)] = study_scores(preds, refs)
    metrics = {"method": label, "method_name": method_spec.name, "params": method_spec.params, "seed": seed,
               "best_epoch": state["best_epoch"], "dev_bleu": state["best_bleu"], "epochs": state["epoch"],
               "train_seconds": round(state["train_seconds"], 2),
               "dev_seconds": round(state.get("dev_seconds", 0.0), 2),
               "eval_seconds": round(time.perf_counter() - t0, 2), "test": beams}
    fileio.write_json(run_dir / "metrics.json", metrics)
    (run_dir / "last.pt").unlink(missing_ok=True)  # the finished run needs only best.pt
    return metrics

