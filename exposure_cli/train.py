"""One run: train a UniLM with one method and one seed, select by dev BLEU, decode and score test.

A run directory (its files: runner/rundir.py) is the unit of resumable work. last.pt holds everything
the rest of the run depends on (weights, optimizer, schedule, every random stream, the position in
the epoch, the selection state), written at the end of every epoch and every
`train.checkpoint_seconds` of training; metrics.json, written at the end, marks the run finished;
failed.json is written instead when the run diverged (a non-finite loss or gradient).

Checkpoints carry a checksum (fileio). A damaged last.pt falls back to last.prev.pt; a damaged
best.pt redoes the run; a damaged output is decoded again from best.pt. Each says so in one line.

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
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import yaml

from . import fileio, stop
from .batching import collate, encode_examples, epoch_batches
from .build import build_model, tokenizer_for
from .data import Pair, read_pairs
from .decode.beam import decode_spec, decode_texts
from .decode.predictions import write_hypotheses, write_predictions
from .errors import Damaged, UserError
from .gpu import Amp, amp_for, to_device
from .methods import Method, StepContext, get_method
from .metrics import study_scores, word_scores
from .model import UniLM
from .runner import rundir
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
    # The process's CPU seconds over the same training intervals: unlike wall seconds, they do not
    # grow while the run is stopped or waits for a core (one run a process: the pool's workers, Ray's).
    # None: not recorded from the start (a run resumed from an older last.pt).
    train_cpu_seconds: float | None = 0.0


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
    events: object | None = None  # tensorboard.EventMirror with train.tensorboard: each log record also goes there
    init_from: Path | None = None  # the run whose best.pt this one started from (a method's warm start)
    start_dev: dict | None = None  # that best.pt's recorded dev scores
    resumed: bool = False  # restored from last.pt; else the run starts at its first step (`begin`)

    @property
    def label(self) -> str:
        return self.method.label()


def training_done(st: RunState, t) -> bool:
    """Every epoch trained, or (train.patience) dev BLEU has not improved for that many epochs. The
    state lives in last.pt, so a resumed run stops where an uninterrupted one would."""
    return st.epoch >= t.epochs or (t.patience is not None and st.epoch - st.best_epoch >= t.patience)


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


def make_optimizer(model: torch.nn.Module, t, lr: float | None = None) -> torch.optim.Optimizer:
    """AdamW over every parameter, or, with `no_decay_norm_bias`, biases and LayerNorm weights in a
    group without weight decay (as nanoGPT's configure_optimizers and BERT's fine-tuning recipe).
    Its peak rate is `lr`, default train.lr."""
    lr = t.lr if lr is None else lr
    if not t.no_decay_norm_bias:
        return torch.optim.AdamW(model.parameters(), lr=lr, eps=t.adam_eps, weight_decay=t.weight_decay)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if name.endswith("bias") or "LayerNorm" in name or p.dim() < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, eps=t.adam_eps)


def autocast(run: Run, enabled: bool | None = None):
    """bf16 autocast when the spec asks for it (and `enabled` does not say otherwise); fp16 on GPUs without bf16."""
    on = run.spec.train.bf16 if enabled is None else enabled
    return torch.autocast(run.device.type, dtype=run.amp.dtype, enabled=on)


def run_spec_text(spec: Spec, method_spec: MethodSpec, seed: int) -> str:
    """A run's spec.yaml: the experiment's resolved spec, plus this run's method and seed."""
    return yaml.safe_dump({**spec.to_dict(), "run": {"method": {method_spec.name: method_spec.params}, "seed": seed}},
                          allow_unicode=True, sort_keys=False)


def write_run_spec(spec: Spec, method_spec: MethodSpec, seed: int, run_dir: Path) -> None:
    fileio.write_text(run_dir / rundir.SPEC, run_spec_text(spec, method_spec, seed))


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
    start_dev = warm_start(model, Path(init_from) / rundir.BEST, device) if init_from is not None else None
    method = get_method(method_spec.name, method_spec.params)
    model.double_backward = method.needs_double_backward
    opt = make_optimizer(model, spec.train, method.peak_lr(spec.train.lr))
    m = spec.model
    train_ex = encode_examples(tok, train_pairs, m.source_len(), m.max_target_len, m.truncation, m.max_len)
    total_steps = math.ceil(len(train_ex) / spec.train.batch_size) * spec.train.epochs
    t = spec.train
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, t.warmup, total_steps, t.schedule))
    run = Run(spec, method_spec, seed, run_dir, device, tok, model, method, opt, sched, random.Random(seed),
              torch.Generator(device=device).manual_seed(seed), train_ex, dev_pairs, test_pairs, total_steps)
    run.amp = amp_for(device, t.bf16)
    run.init_from = Path(init_from) if init_from is not None else None
    run.start_dev = start_dev
    if (run_dir / rundir.LAST).exists() or (run_dir / rundir.PREVIOUS).exists():
        problem = _damage(run_dir / rundir.BEST)
        if problem:  # the best epoch's weights are lost: only a new run gives them back
            warn(f"{problem}; the run starts over")
            start_over(run_dir)
        else:
            run.resumed = restore(run)
    return run


def begin(run: Run) -> None:
    """What a run starting from its first step does before it: drop the log lines of a process killed
    before its first checkpoint (that work is redone), and for a fine-tuning that keeps its start
    (methods.base.FineTuning) make the start's weights the epoch-0 candidate: its best.pt and recorded
    dev scores (same spec, same dev decoding). The model holds the start's weights until the first
    step. Repeating it after a kill gives the same state."""
    (run.dir / rundir.LOG).unlink(missing_ok=True)
    if run.init_from is None or not run.method.start_is_candidate():
        return
    dev = run.start_dev
    save_best(run, 0, dev)
    run.state.best_bleu, run.state.best_epoch = dev["bleu"], 0
    with open(run.dir / rundir.LOG, "a", encoding="utf-8") as log:
        write_log(run, log, {"epoch": 0, "dev": dev, "best": True, "start": str(run.init_from)})


def save_best(run: Run, epoch: int, dev: dict) -> None:
    """best.pt: the model's weights now, its config, and the epoch and dev scores that selected them."""
    fileio.torch_save(run.dir / rundir.BEST, {"model": run.model.state_dict(), "config": asdict(run.model.config),
                                            "epoch": epoch, "dev": dev})


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _damage(path: Path) -> str | None:
    """What is wrong with a checkpoint that exists, or None."""
    if not path.exists():
        return None
    try:
        fileio.torch_load(path, "cpu")
    except Damaged as e:
        return str(e)
    return None


def start_over(run_dir: Path) -> None:
    """Remove everything a run wrote but its spec and tokenizer, so it trains again from the start."""
    for name in (rundir.LAST, rundir.PREVIOUS, rundir.BEST, rundir.LOG, rundir.METRICS, rundir.CHECKSUMS):
        (run_dir / name).unlink(missing_ok=True)
    for p in [*run_dir.glob(rundir.predictions("*")), *run_dir.glob(rundir.hypotheses("*"))]:
        p.unlink()


def warm_start(model: UniLM, best: Path, device: torch.device) -> dict | None:
    """Load another run's selected weights (same spec, hence same tokenizer and model shape); return
    the dev scores recorded with them."""
    ck = fileio.torch_load(best, "cpu")  # load_state_dict copies to the model's device
    try:
        model.load_state_dict(ck["model"])
    except (KeyError, RuntimeError) as e:
        raise UserError(f"{best}: cannot start from these weights ({type(e).__name__}: "
                        f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}); was that run made with "
                        "the same model and data?") from None
    return ck.get("dev")


# ------------------------------------------------------------------------ checkpoints


def save_last(run: Run) -> None:
    """Everything `restore` needs, written atomically: a kill at any moment leaves the previous one.
    The one it replaces becomes last.prev.pt, the fallback when storage damages last.pt."""
    rng = run.epoch_start_rng if run.state.batch_in_epoch else run.rng.getstate()
    log = run.dir / rundir.LOG
    fileio.torch_save(run.dir / rundir.LAST, {
        "model": run.model.state_dict(), "optimizer": run.opt.state_dict(), "scheduler": run.sched.state_dict(),
        "rng": rng, "generator": run.gen.get_state(), "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if run.device.type == "cuda" else [],
        "state": asdict(run.state), "log_bytes": log.stat().st_size if log.exists() else 0,
        "amp": run.amp.state_dict(),
    }, previous=run.dir / rundir.PREVIOUS)
    run.last_save = time.perf_counter()


def _load_last(run: Run) -> tuple[dict | None, Path]:
    """The newest intact checkpoint of last.pt and last.prev.pt (saying in one line when last.pt
    was damaged), or None when neither is."""
    damaged = None
    for path in (run.dir / rundir.LAST, run.dir / rundir.PREVIOUS):
        if not path.exists():
            continue
        try:
            # To the CPU: the RNG states must stay CPU tensors (CUDA's set_rng_state refuses others) and Adam's
            # step counters host scalars; load_state_dict moves the weights and Adam's moments to their parameters.
            ck = fileio.torch_load(path, "cpu")
        except Damaged as e:
            damaged = damaged or str(e)
            continue
        if damaged:
            warn(f"{damaged}; resuming from {path.name}, the checkpoint before it")
        return ck, path
    warn(f"{damaged}; no earlier checkpoint is intact: the run starts over")
    return None, run.dir / rundir.LAST


def restore(run: Run) -> bool:
    """Resume from last.pt (or last.prev.pt); False when neither is intact and the run starts over."""
    ck, path = _load_last(run)
    if ck is None:
        start_over(run.dir)
        return False
    try:
        run.model.load_state_dict(ck["model"])
        run.opt.load_state_dict(ck["optimizer"])
        run.sched.load_state_dict(ck["scheduler"])
        run.rng.setstate(_as_random_state(ck["rng"]))
        run.gen.set_state(ck["generator"])
        torch.set_rng_state(ck["torch_rng"])
        if ck["cuda_rng"]:
            torch.cuda.set_rng_state_all(ck["cuda_rng"])
        run.state = RunState(**{"train_cpu_seconds": None, **ck["state"]})
        run.amp.load_state_dict(ck.get("amp"))
    except (KeyError, RuntimeError, TypeError, ValueError) as e:
        raise UserError(f"{path}: not a checkpoint of this run ({type(e).__name__}: {e}); "
                        "delete it to start the run over") from None
    log = run.dir / rundir.LOG
    if log.exists() and log.stat().st_size > ck["log_bytes"]:
        with open(log, "rb+") as f:  # drop the lines of the work being redone
            f.truncate(ck["log_bytes"])
    return True


def _as_random_state(s):
    # random.setstate wants tuples; a checkpoint may hand back lists.
    return (s[0], tuple(s[1]), s[2])


# --------------------------------------------------------------------------- training


def train_step(run: Run, batch, log) -> float:
    """One optimizer step; returns the loss. Raises Diverged on a non-finite loss or gradient."""
    st, t = run.state, run.spec.train
    ctx = StepContext(st.step, run.total_steps, run.gen, None, t.label_smoothing,
                      loss_scale=run.amp.loss_scale(run.device), epoch=st.epoch, tokenizer=run.tok,
                      max_len=run.spec.decode.max_len)
    batch = run.method.corrupt(batch, ctx)
    with autocast(run):
        loss, logs = run.method.loss(run.model, batch, ctx)
    run.opt.zero_grad(set_to_none=True)
    run.amp.backward(loss)
    run.amp.unscale(run.opt)
    params = [p for p in run.model.parameters() if p.grad is not None]
    if t.grad_clip:
        norm = torch.nn.utils.clip_grad_norm_(params, t.grad_clip)
    else:
        norm = torch.nn.utils.get_total_norm([p.grad for p in params])
    # The step's one host read: the loss, the gradient norm and the logged values together (float64
    # holds each exactly); nothing has changed the weights yet, so a divergence still stops cleanly.
    names = [k for k, v in logs.items() if isinstance(v, torch.Tensor)]
    overflow = torch.stack(ctx.overflow).any() if ctx.overflow else torch.zeros((), device=loss.device)
    values = (loss, norm, overflow, *(logs[k] for k in names))
    value, norm_value, overflowed, *logged = torch.stack([x.detach().to(torch.float64) for x in values]).tolist()
    logs = {**logs, **dict(zip(names, logged))}
    if not math.isfinite(value) and not overflowed:  # an overflowed scaled inner gradient: the scaler skips
        raise Diverged("loss", st.step + 1, st.epoch + 1, value)
    if not math.isfinite(norm_value) and not run.amp.scaler:  # under fp16 the scaler skips the step instead
        raise Diverged("gradient", st.step + 1, st.epoch + 1, value)
    run.amp.step(run.opt)
    run.sched.step()
    st.step += 1
    if st.step % t.log_every == 0:
        write_log(run, log, {"step": st.step, "epoch": st.epoch + 1, "loss": value, **logs,
                             "lr": run.sched.get_last_lr()[0], "grad_norm": norm_value})
    return value


def write_log(run: Run, log, record: dict) -> None:
    """One line of train.jsonl (the source of truth), mirrored to TensorBoard when asked for."""
    log.write(json.dumps(record) + "\n")
    log.flush()
    if run.events:
        run.events.add(record)


def train_epoch(run: Run, report: Report = _no_report) -> None:
    """Train the rest of the current epoch (all of it, unless resuming mid-epoch)."""
    st, t = run.state, run.spec.train
    stop.check()  # a signal since the last save (the selection's, or the one resumed from) stops here, not a step later
    run.model.train()
    run.epoch_start_rng = run.rng.getstate()
    lengths = [len(ids) for ids, _ in run.train_ex]
    batches = epoch_batches(lengths, t.batch_size, run.rng, t.bucket)
    t0 = t_start = time.perf_counter()
    c0 = time.process_time()
    tokens = 0
    # A stop signal (Ctrl-C, a scheduler's SIGTERM) waits for the step under way, then last.pt is
    # saved at that point, so a preempted run loses nothing.
    with stop.steps(), open(run.dir / rundir.LOG, "a", encoding="utf-8") as log:
        for idx in batches[st.batch_in_epoch:]:
            batch = to_device(collate([run.train_ex[i] for i in idx], run.tok.pad_id), run.device)
            loss = train_step(run, batch, log)
            st.batch_in_epoch += 1
            tokens += batch.n_tokens
            tps = tokens / max(1e-9, time.perf_counter() - t0)
            report(completed=st.step, info=f"ep {st.epoch + 1}/{t.epochs} loss {loss:.3f} {tps:,.0f} tok/s")
            due = t.checkpoint_seconds and time.perf_counter() - run.last_save >= t.checkpoint_seconds
            if due or stop.pending():
                st.train_seconds += time.perf_counter() - t0
                _add_cpu(st, c0)
                t0, c0 = time.perf_counter(), time.process_time()
                save_last(run)
                stop.check()
        st.train_seconds += time.perf_counter() - t0
        _add_cpu(st, c0)
        run.tokens_per_s = tokens / max(1e-9, time.perf_counter() - t_start)
    # A signal after the last step's check is select_on_dev's: its decoding stops and saves this epoch.


def _add_cpu(st: RunState, since: float) -> None:
    if st.train_cpu_seconds is not None:
        st.train_cpu_seconds += time.process_time() - since


def select_on_dev(run: Run, report: Report = _no_report) -> dict:
    """Model selection, as in the study: greedy-decode the dev set, keep the weights with the best
    BLEU; then close the epoch with a checkpoint."""
    st, t = run.state, run.spec.train
    t0 = time.perf_counter()
    # Minutes on a real dev set: a signal stops it, and last.pt saves the trained epoch (a resumed run
    # goes straight to this decoding).
    with stop.interruptible(lambda: save_last(run)):
        report(info=f"ep {st.epoch + 1}/{t.epochs} decoding dev")
        with autocast(run, enabled=t.bf16 and not t.select_fp32):
            preds = decode_texts(run.model, run.tok, [p.source for p in run.dev_pairs], 1,
                                 run.spec.model.source_len(), run.spec.decode.max_len, run.device,
                                 batch_size=run.spec.decode.batch_size)
    with stop.steps():  # the selection's files and last.pt change together
        dev = _select(run, preds, t0)
    stop.check()
    report(info=f"ep {st.epoch} dev bleu {dev['bleu']:.2f} (best {st.best_bleu:.2f})")
    return dev


def _select(run: Run, preds: list[str], t0: float) -> dict:
    st = run.state
    dev = study_scores(preds, [p.target for p in run.dev_pairs], lowercase=run.spec.score.lowercase)
    st.epoch += 1
    st.batch_in_epoch = 0
    st.dev_seconds += time.perf_counter() - t0
    improved = dev["bleu"] > st.best_bleu
    if improved:
        st.best_bleu, st.best_epoch = dev["bleu"], st.epoch
        save_best(run, st.epoch, dev)
    with open(run.dir / rundir.LOG, "a", encoding="utf-8") as log:
        write_log(run, log, {"epoch": st.epoch, "dev": dev, "best": improved, "tokens_per_s": round(run.tokens_per_s),
                             "dev_seconds": round(time.perf_counter() - t0, 2)})
    save_last(run)
    return dev


def evaluate_run(run: Run, report: Report = _no_report) -> dict:
    """Decode the test set at every beam with best.pt, score, write the predictions and metrics.json."""
    spec = run.spec
    model = UniLM.from_checkpoint(run.dir / rundir.BEST, run.device)
    sources, refs = [p.source for p in run.test_pairs], [p.target for p in run.test_pairs]
    t0 = time.perf_counter()
    beams = {}
    for k in spec.decode.beams:
        report(info=f"decoding test, beam {k}")
        best = [hs[0] for hs in decode_spec(model, run.tok, spec, sources, k, run.device)]
        preds = [run.tok.decode(h.tokens) for h in best]
        write_hypotheses(run.dir / rundir.hypotheses(k), best)
        write_predictions(run.dir / rundir.predictions(k), sources, refs, preds)
        beams[str(k)] = {**study_scores(preds, refs, lowercase=spec.score.lowercase), **word_scores(preds, refs)}
    st = run.state
    metrics = {"method": run.label, "method_name": run.method_spec.name, "params": run.method_spec.params,
               "seed": run.seed, "best_epoch": st.best_epoch, "dev_bleu": st.best_bleu, "epochs": st.epoch,
               "stopped_early": st.epoch < spec.train.epochs,
               "train_seconds": round(st.train_seconds, 2), "dev_seconds": round(st.dev_seconds, 2),
               **({} if st.train_cpu_seconds is None else {"train_cpu_seconds": round(st.train_cpu_seconds, 2)}),
               "eval_seconds": round(time.perf_counter() - t0, 2), "threads": torch.get_num_threads(), "test": beams}
    if run.init_from is not None:  # what the warm start cost: the leaderboard adds it to this run's
        start = fileio.read_json(run.init_from / rundir.METRICS) if (run.init_from / rundir.METRICS).exists() else {}
        metrics["warm_start"] = {"from": str(run.init_from),
                                 **{k: start[k] for k in ("train_seconds", "train_cpu_seconds", "dev_seconds", "epochs") if k in start}}
    fileio.write_json(run.dir / rundir.METRICS, metrics)
    outputs = [rundir.METRICS] + [name(k) for k in spec.decode.beams for name in (rundir.predictions, rundir.hypotheses)]
    fileio.write_json(run.dir / rundir.CHECKSUMS, {name: fileio.sha256_file(run.dir / name) for name in outputs})
    for name in (rundir.LAST, rundir.PREVIOUS):  # the finished run needs only best.pt
        (run.dir / name).unlink(missing_ok=True)
    return metrics


def damaged_output(run_dir: Path) -> str | None:
    """Which of a finished run's outputs no longer matches checksums.json, or None. A run finished
    without the file (by an older version, or killed just before writing it) is taken as it is."""
    manifest = run_dir / rundir.CHECKSUMS
    if not manifest.exists():
        return None
    try:
        sums = json.loads(manifest.read_bytes())
        assert isinstance(sums, dict) and sums
    except (ValueError, AssertionError):
        return f"{manifest}: damaged (not the JSON it was written as)"
    for name, digest in sums.items():
        path = run_dir / name
        if not path.is_file() or fileio.sha256_file(path) != digest:
            return f"{path}: damaged (it does not match its checksum in {rundir.CHECKSUMS})"
    return None


def reevaluate(spec: Spec, method_spec: MethodSpec, seed: int, run_dir: Path, device: torch.device,
               report: Report = _no_report, init_from: Path | None = None) -> dict | None:
    """A finished run's test decoding and scores again, from best.pt; None when best.pt is damaged
    too (the run is then cleared, to be trained again). A warm-started run keeps its `warm_start`
    record (its weights come from best.pt, so the start's are not loaded)."""
    try:
        best = fileio.torch_load(run_dir / rundir.BEST, "cpu")
    except Damaged as e:
        warn(f"{e}; the run starts over")
        start_over(run_dir)
        return None
    try:
        old = json.loads((run_dir / rundir.METRICS).read_bytes())
    except (OSError, ValueError):
        old = {}
    old = old if isinstance(old, dict) else {}
    run = prepare_run(spec, method_spec, seed, run_dir, device)
    run.init_from = Path(init_from) if init_from is not None else None
    seconds = {"train_cpu_seconds": None,  # an older run's metrics.json: not recorded
               **{k: v for k in ("train_seconds", "dev_seconds", "train_cpu_seconds") if isinstance(v := old.get(k), (int, float))}}
    epochs = old.get("epochs") if isinstance(old.get("epochs"), int) else spec.train.epochs
    run.state = RunState(epoch=epochs, step=run.total_steps, best_bleu=best["dev"]["bleu"],
                         best_epoch=best["epoch"], **seconds)
    return evaluate_run(run, report)


def run_one(spec: Spec, method_spec: MethodSpec, seed: int, run_dir: Path, device: torch.device,
            report: Report = _no_report, init_from: Path | None = None) -> dict:
    """Train (or resume), select, decode, score; return the metrics written to metrics.json, or
    `{"method", "seed", "failed": {...}}` (also written to failed.json) when the run diverged or
    the run it starts from (`init_from`, a warm start) has no best.pt."""
    done = run_dir / rundir.METRICS
    if done.exists():
        problem = damaged_output(run_dir)
        if not problem:
            return fileio.read_json(done)
        warn(f"{problem}; decoding the test set again from best.pt")
        metrics = reevaluate(spec, method_spec, seed, run_dir, device, report, init_from)
        if metrics is not None:
            return metrics
    failed = run_dir / rundir.FAILED
    if failed.exists():
        return {"method": method_label(method_spec), "seed": seed, "failed": fileio.read_json(failed)}
    if init_from is not None and not (Path(init_from) / rundir.BEST).exists():
        record = {"reason": f"warm start: {Path(init_from) / rundir.BEST} is missing (that run failed or did not run)"}
        fileio.write_json(failed, record)
        return {"method": method_label(method_spec), "seed": seed, "failed": record}
    run = prepare_run(spec, method_spec, seed, run_dir, device, init_from)
    if not run.resumed:
        begin(run)
    if spec.train.tensorboard:
        from .tensorboard import EventMirror

        run.events = EventMirror(run_dir, run.total_steps // spec.train.epochs)
    report(total=run.total_steps, completed=run.state.step, info="")
    try:
        # Between the steps too (an epoch's end, its selection, the next epoch's batches) a signal
        # waits for a point last.pt can hold; only the dev decoding stops at once.
        with stop.steps():
            while not training_done(run.state, spec.train):
                train_epoch(run, report)
                select_on_dev(run, report)
        stop.check()
    except Diverged as e:
        fileio.write_json(failed, e.record)
        report(info=f"[red]failed: {e}")
        return {"method": run.label, "seed": seed, "failed": e.record}
    finally:
        if run.events:
            run.events.close()
    return evaluate_run(run, report)
