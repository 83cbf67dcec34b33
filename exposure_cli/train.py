"""One run: train a UniLM with one method and one seed, select by dev BLEU, decode and score test.

A run directory is the unit of resumable work:
  spec.yaml          the resolved spec of the experiment, plus this run's method and seed
  vocab.txt          the run's tokenizer vocabulary
  last.pt            everything the rest of the run depends on (weights, optimizer, schedule, every
                     random stream, the position in the epoch, the selection state); written at
                     the end of every epoch and every `train.checkpoint_seconds` of training
  best.pt            the weights with the best dev BLEU so far (and the model config)
  train.jsonl        the training log, one JSON object a line
  predictions.beam{k}.tsv, metrics.json   written at the end; metrics.json marks the run finished
  failed.json        written instead when the run diverged (a non-finite loss or gradient)

Resuming from last.pt gives, on CPU, bit for bit the run an uninterrupted process would have
given: the data order is rebuilt from the epoch's saved shuffling state and the batches already
trained are skipped; dropout, the method's draws and the optimizer continue from their saved state.

The stages are small functions over a `Run`: `prepare_run` → `train_epoch` → `select_on_dev` (per
epoch) → `evaluate_run`; `run_one` strings them together.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import yaml

from . import fileio
from .batching import bucketed_batches, collate, encode_examples
from .build import build_model, tokenizer_for
from .data import Pair, read_pairs
from .errors import UserError
from .decode import decode_hypotheses, decode_options, decode_texts
from .gpu import Amp, amp_for, to_device
from .methods import Method, StepContext, get_method
from .metrics import study_scores, word_scores
from .model import UniLM
from .predictions import write_hypotheses, write_predictions
from .spec import MethodSpec, Spec, method_label
from .tokenizers import Tokenizer

# A progress callback: report(completed=..., total=..., info=...), any subset.
Report = Callable[..., None]


def _no_report(**_) -> None:
    pass


class Diverged(Exception):
    """A non-finite loss or gradient: the run stops and says where."""

    def __init__(self, what: str, step: int, epoch: int, loss: float):
        super().__init__(f"non-finite {what} at step {step} (epoch {epoch}), loss {loss}")
        self.record = {"reason": str(self), "what": what, "step": step, "epoch": epoch,
                       "loss": loss if math.isfinite(loss) else str(loss)}


@dataclass
class RunState:
    epoch: int = 0  # epochs finished (trained and selected on dev)
    step: int = 0  # optimizer steps done
    batch_in_epoch: int = 0  # batches of the current epoch already trained
    best_bleu: float = -1.0
    best_epoch: int = 0
    train_seconds: float = 0.0
    dev_seconds: float = 0.0


@dataclass
class Run:
    spec: Spec
    method_spec: MethodSpec
    seed: int
    dir: Path
    device: torch.device
    tok: Tokenizer
    model: UniLM
    method: Method
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    rng: random.Random  # data order
    gen: torch.Generator  # the method's draws
    train_ex: list
    dev_pairs: list[Pair]
    test_pairs: list[Pair]
    total_steps: int
    state: RunState = field(default_factory=RunState)
    epoch_start_rng: tuple | None = None  # `rng` before this epoch's shuffle (for mid-epoch resumption)
    last_save: float = field(default_factory=time.perf_counter)
    tokens_per_s: float = 0.0  # training speed over the last epoch (for the log)
    amp: Amp = field(default_factory=Amp)  # autocast dtype, and fp16's gradient scaler on GPUs without bf16
    init_from: Path | None = None  # the run whose best.pt this one started from (a method's warm start)

    @property
    def label(self) -> str:
        return self.method.label()


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    return 1.0 - frac if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * frac))


def load_split(path: str, limit: int | None = None) -> list[Pair]:
    pairs = read_pairs(path)
    if not pairs:
        raise UserError(f"{path}: the split has no examples (expected title<TAB>content lines)")
    return pairs[:limit] if limit is not None else pairs


def make_optimizer(model: torch.nn.Module, t) -> torch.optim.Optimizer:
    """AdamW over every parameter, or, with `no_decay_norm_bias`, biases and LayerNorm weights in a
    group without weight decay (as nanoGPT's configure_optimizers and BERT's fine-tuning recipe)."""
    if not t.no_decay_norm_bias:
        return torch.optim.AdamW(model.parameters(), lr=t.lr, eps=t.adam_eps, weight_decay=t.weight_decay)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if name.endswith("bias") or "LayerNorm" in name or p.dim() < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=t.lr, eps=t.adam_eps)


def autocast(run: Run, enabled: bool | None = None):
    """bf16 autocast when the spec asks for it (and `enabled` does not say otherwise); fp16 on GPUs without bf16."""
    on = run.spec.train.bf16 if enabled is None else enabled
    return torch.autocast(run.device.type, dtype=run.amp.dtype, enabled=on)


def write_run_spec(spec: Spec, method_spec: MethodSpec, seed: int, run_dir: Path) -> None:
    fileio.write_text(run_dir / "spec.yaml", yaml.safe_dump(
        {**spec.to_dict(), "run": {"method": {method_spec.name: method_spec.params}, "seed": seed}},
        allow_unicode=True, sort_keys=False))


def prepare_run(spec: Spec, method_spec: MethodSpec, seed: int, run_dir: Path, device: torch.device,
                init_from: Path | None = None) -> Run:
    """Read the data, build (or load) the tokenizer, build the model and optimizer (its weights from
    `init_from`/best.pt when given: a warm start), and restore everything from last.pt when a
    previous process left one."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_run_spec(spec, method_spec, seed, run_dir)
    train_pairs = load_split(spec.data.train, spec.data.train_limit)
    dev_pairs = load_split(spec.data.dev, spec.train.dev_size)
    test_pairs = load_split(spec.data.test, spec.data.test_limit)  # read now: a bad file fails before training
    tok = tokenizer_for(spec, run_dir, train_pairs)

    torch.manual_seed(seed)
    model = build_model(spec, tok).to(device)
    if init_from is not None:
        warm_start(model, Path(init_from) / "best.pt", device)
    method = get_method(method_spec.name, method_spec.params)
    model.double_backward = method.needs_double_backward
    opt = make_optimizer(model, spec.train)
    m = spec.model
    train_ex = encode_examples(tok, train_pairs, m.source_len(), m.max_target_len, m.truncation, m.max_len)
    total_steps = math.ceil(len(train_ex) / spec.train.batch_size) * spec.train.epochs
    t = spec.train
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, t.warmup, total_steps, t.schedule))
    run = Run(spec, method_spec, seed, run_dir, device, tok, model, method, opt, sched, random.Random(seed),
              torch.Generator(device=device).manual_seed(seed), train_ex, dev_pairs, test_pairs, total_steps)
    run.amp = amp_for(device, t.bf16)
    run.init_from = Path(init_from) if init_from is not None else None
    if (run_dir / "last.pt").exists():
        restore(run)
    return run


def warm_start(model: UniLM, best: Path, device: torch.device) -> None:
    """Load another run's selected weights (same spec, hence same tokenizer and model shape)."""
    ck = fileio.torch_load(best, device)
    try:
        model.load_state_dict(ck["model"])
    except (KeyError, RuntimeError) as e:
        raise UserError(f"{best}: cannot start from these weights ({type(e).__name__}: "
                        f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}); was that run made with "
                        "the same model and data?") from None


# ------------------------------------------------------------------------ checkpoints


def save_last(run: Run) -> None:
    """Everything `restore` needs, written atomically: a kill at any moment leaves the previous one."""
    rng = run.epoch_start_rng if run.state.batch_in_epoch else run.rng.getstate()
    log = run.dir / "train.jsonl"
    fileio.torch_save(run.dir / "last.pt", {
        "model": run.model.state_dict(), "optimizer": run.opt.state_dict(), "scheduler": run.sched.state_dict(),
        "rng": rng, "generator": run.gen.get_state(), "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if run.device.type == "cuda" else [],
        "state": asdict(run.state), "log_bytes": log.stat().st_size if log.exists() else 0,
        "amp": run.amp.state_dict(),
    })
    run.last_save = time.perf_counter()


def restore(run: Run) -> None:
    ck = fileio.torch_load(run.dir / "last.pt", run.device)
    try:
        run.model.load_state_dict(ck["model"])
        run.opt.load_state_dict(ck["optimizer"])
        run.sched.load_state_dict(ck["scheduler"])
        run.rng.setstate(_as_random_state(ck["rng"]))
        run.gen.set_state(ck["generator"])
        torch.set_rng_state(ck["torch_rng"])
        if ck["cuda_rng"]:
            torch.cuda.set_rng_state_all(ck["cuda_rng"])
        run.state = RunState(**ck["state"])
        run.amp.load_state_dict(ck.get("amp"))
    except (KeyError, RuntimeError, TypeError, ValueError) as e:
        raise UserError(f"{run.dir / 'last.pt'}: not a checkpoint of this run ({type(e).__name__}: {e}); "
                        "delete it to start the run over") from None
    log = run.dir / "train.jsonl"
    if log.exists() and log.stat().st_size > ck["log_bytes"]:
        with open(log, "rb+") as f:  # drop the lines of the work being redone
            f.truncate(ck["log_bytes"])


def _as_random_state(s):
    # random.setstate wants tuples; a checkpoint may hand back lists.
    return (s[0], tuple(s[1]), s[2])


# --------------------------------------------------------------------------- training


def train_step(run: Run, batch, log) -> float:
    """One optimizer step; returns the loss. Raises Diverged on a non-finite loss or gradient."""
    st, t = run.state, run.spec.train
    ctx = StepContext(st.step, run.total_steps, run.gen, None, t.label_smoothing, epoch=st.epoch, tokenizer=run.tok,
                      max_len=run.spec.decode.max_len)
    batch = run.method.corrupt(batch, ctx)
    with autocast(run):
        loss, logs = run.method.loss(run.model, batch, ctx)
    value = loss.item()
    if not math.isfinite(value):
        raise Diverged("loss", st.step + 1, st.epoch + 1, value)
    run.opt.zero_grad(set_to_none=True)
    run.amp.backward(loss)
    run.amp.unscale(run.opt)
    params = [p for p in run.model.parameters() if p.grad is not None]
    if t.grad_clip:
        norm = torch.nn.utils.clip_grad_norm_(params, t.grad_clip)
    else:
        norm = torch.nn.utils.get_total_norm([p.grad for p in params])
    if not torch.isfinite(norm) and not run.amp.scaler:  # under fp16 the scaler skips the step instead
        raise Diverged("gradient", st.step + 1, st.epoch + 1, value)
    run.amp.step(run.opt)
    run.sched.step()
    st.step += 1
    if st.step % t.log_every == 0:
        log.write(json.dumps({"step": st.step, "epoch": st.epoch + 1, "loss": value, **logs,
                              "lr": run.sched.get_last_lr()[0]}) + "\n")
        log.flush()
    return value


def train_epoch(run: Run, report: Report = _no_report) -> None:
    """Train the rest of the current epoch (all of it, unless resuming mid-epoch)."""
    st, t = run.state, run.spec.train
    run.model.train()
    run.epoch_start_rng = run.rng.getstate()
    lengths = [len(ids) for ids, _ in run.train_ex]
    batches = bucketed_batches(lengths, t.batch_size, run.rng)
    t0 = t_start = time.perf_counter()
    tokens = 0
    with open(run.dir / "train.jsonl", "a", encoding="utf-8") as log:
        for idx in batches[st.batch_in_epoch:]:
            batch = to_device(collate([run.train_ex[i] for i in idx], run.tok.pad_id), run.device)
            loss = train_step(run, batch, log)
            st.batch_in_epoch += 1
            tokens += batch.n_tokens
            tps = tokens / max(1e-9, time.perf_counter() - t0)
            report(completed=st.step, info=f"ep {st.epoch + 1}/{t.epochs} loss {loss:.3f} {tps:,.0f} tok/s")
            if t.checkpoint_seconds and time.perf_counter() - run.last_save >= t.checkpoint_seconds:
                st.train_seconds += time.perf_counter() - t0
                t0 = time.perf_counter()
                save_last(run)
    st.train_seconds += time.perf_counter() - t0
    run.tokens_per_s = tokens / max(1e-9, time.perf_counter() - t_start)


def select_on_dev(run: Run, report: Report = _no_report) -> dict:
    """Model selection, as in the study: greedy-decode the dev set, keep the weights with the best
    BLEU; then close the epoch with a checkpoint."""
    st, t = run.state, run.spec.train
    report(info=f"ep {st.epoch + 1}/{t.epochs} decoding dev")
    t0 = time.perf_counter()
    with autocast(run, enabled=t.bf16 and not t.select_fp32):
        preds = decode_texts(run.model, run.tok, [p.source for p in run.dev_pairs], 1, run.spec.model.source_len(),
                             run.spec.decode.max_len, run.device, batch_size=run.spec.decode.batch_size)
    dev = study_scores(preds, [p.target for p in run.dev_pairs], lowercase=run.spec.score.lowercase)
    st.epoch += 1
    st.batch_in_epoch = 0
    st.dev_seconds += time.perf_counter() - t0
    improved = dev["bleu"] > st.best_bleu
    if improved:
        st.best_bleu, st.best_epoch = dev["bleu"], st.epoch
        fileio.torch_save(run.dir / "best.pt", {"model": run.model.state_dict(), "config": asdict(run.model.config),
                                                "epoch": st.epoch, "dev": dev})
    with open(run.dir / "train.jsonl", "a", encoding="utf-8") as log:
        log.write(json.dumps({"epoch": st.epoch, "dev": dev, "best": improved, "tokens_per_s": round(run.tokens_per_s),
                              "dev_seconds": round(time.perf_counter() - t0, 2)}) + "\n")
    save_last(run)
    report(info=f"ep {st.epoch} dev bleu {dev['bleu']:.2f} (best {st.best_bleu:.2f})")
    return dev


def evaluate_run(run: Run, report: Report = _no_report) -> dict:
    """Decode the test set at every beam with best.pt, score, write the predictions and metrics.json."""
    spec = run.spec
    model = UniLM.from_checkpoint(run.dir / "best.pt", run.device)
    sources, refs = [p.source for p in run.test_pairs], [p.target for p in run.test_pairs]
    t0 = time.perf_counter()
    beams = {}
    for k in spec.decode.beams:
        report(info=f"decoding test, beam {k}")
        best = [hs[0] for hs in decode_hypotheses(model, run.tok, sources, k, spec.model.source_len(),
                                                  spec.decode.max_len, run.device, **decode_options(spec.decode))]
        preds = [run.tok.decode(h.tokens) for h in best]
        write_hypotheses(run.dir / f"hypotheses.beam{k}.jsonl", best)
        write_predictions(run.dir / f"predictions.beam{k}.tsv", sources, refs, preds)
        beams[str(k)] = {**study_scores(preds, refs, lowercase=spec.score.lowercase), **word_scores(preds, refs)}
    st = run.state
    metrics = {"method": run.label, "method_name": run.method_spec.name, "params": run.method_spec.params,
               "seed": run.seed, "best_epoch": st.best_epoch, "dev_bleu": st.best_bleu, "epochs": st.epoch,
               "train_seconds": round(st.train_seconds, 2), "dev_seconds": round(st.dev_seconds, 2),
               "eval_seconds": round(time.perf_counter() - t0, 2), "test": beams}
    if run.init_from is not None:  # what the warm start cost: the leaderboard adds it to this run's
        start = fileio.read_json(run.init_from / "metrics.json") if (run.init_from / "metrics.json").exists() else {}
        metrics["warm_start"] = {"from": str(run.init_from),
                                 **{k: start[k] for k in ("train_seconds", "dev_seconds", "epochs") if k in start}}
    fileio.write_json(run.dir / "metrics.json", metrics)
    (run.dir / "last.pt").unlink(missing_ok=True)  # the finished run needs only best.pt
    return metrics


def run_one(spec: Spec, method_spec: MethodSpec, seed: int, run_dir: Path, device: torch.device,
            report: Report = _no_report, init_from: Path | None = None) -> dict:
    """Train (or resume), select, decode, score; return the metrics written to metrics.json, or
    `{"method", "seed", "failed": {...}}` (also written to failed.json) when the run diverged or
    the run it starts from (`init_from`, a warm start) has no best.pt."""
    done = run_dir / "metrics.json"
    if done.exists():
        return fileio.read_json(done)
    failed = run_dir / "failed.json"
    if failed.exists():
        return {"method": method_label(method_spec), "seed": seed, "failed": fileio.read_json(failed)}
    if init_from is not None and not (Path(init_from) / "best.pt").exists():
        record = {"reason": f"warm start: {Path(init_from) / 'best.pt'} is missing (that run failed or did not run)"}
        fileio.write_json(failed, record)
        return {"method": method_label(method_spec), "seed": seed, "failed": record}
    run = prepare_run(spec, method_spec, seed, run_dir, device, init_from)
    report(total=run.total_steps, completed=run.state.step, info="")
    try:
        while run.state.epoch < spec.train.epochs:
            train_epoch(run, report)
            select_on_dev(run, report)
    except Diverged as e:
        fileio.write_json(failed, e.record)
        report(info=f"[red]failed: {e}")
        return {"method": run.label, "seed": seed, "failed": e.record}
    return evaluate_run(run, report)
