"""`exposure gpu-check`: what a user with a GPU runs first, before a multi-day `make reproduce`.

A random UniLM the size of the study's (BERT-base, a Chinese-BERT-sized vocabulary of 21,128
characters) built from its config alone, on synthetic text: a few training steps of every
registered method in the precision the machine gets (bf16 autocast, or fp16 with a gradient
scaler), a run stopped mid-epoch and resumed from its last.pt, dev-style decoding of a batch at
beams 1-3, diagnose's teacher-forced scoring of the outputs against the decoder's own scores, and
export. One line per check, the step time of every method, tokens/s and the share of the GPU's
peak (from `PEAK_TFLOPS`); exit 1 when a check fails. `--device cpu` runs tiny sizes in seconds
(the test suite runs it so).
"""

from __future__ import annotations

import math
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import typer

from ..runner import rundir
from .app import DEVICE_HELP, app, console

# Dense bf16/fp16 tensor-core peak TFLOPS (vendor datasheets, without sparsity), by a pattern of
# torch.cuda.get_device_name(); the first match counts. Other GPUs show "unknown".
PEAK_TFLOPS = [
    (r"H100.*PCIe", 756.0), (r"H100", 989.0), (r"A100", 312.0), (r"L40S", 362.0), (r"\bA10\b", 125.0),
    (r"\bL4\b", 121.0), (r"V100", 125.0), (r"\bT4\b", 65.0),
]


@dataclass
class Size:
    layers: int
    hidden: int
    heads: int
    vocab: int  # characters of the synthetic text (+ the 5 special tokens)
    batch: int
    source: int  # characters of a source
    target: int  # characters of a target
    steps: int  # timed training steps per method (after one untimed)


GPU_SIZE = Size(layers=12, hidden=768, heads=12, vocab=21128 - 5, batch=16, source=200, target=24, steps=4)
CPU_SIZE = Size(layers=1, hidden=32, heads=2, vocab=60, batch=4, source=24, target=6, steps=2)


def peak_tflops(name: str) -> float | None:
    return next((tf for pattern, tf in PEAK_TFLOPS if re.search(pattern, name)), None)


def write_data(d: Path, size: Size) -> None:
    """Train, dev and test splits of a copy task over `size.vocab` CJK characters, every one of them
    in the training split (so the character vocabulary has exactly that size)."""
    chars = [chr(0x4E00 + i) for i in range(size.vocab)]
    n_train = max(math.ceil(size.vocab / size.source), size.batch * (2 * size.steps + 4))
    text = (chars * math.ceil(n_train * size.source / len(chars)))[: n_train * size.source]
    sources = ["".join(text[i * size.source:(i + 1) * size.source]) for i in range(n_train)]
    lines = [f"{s[3:3 + size.target]}\t{s}\n" for s in sources]
    (d / "train.tsv").write_text("".join(lines), encoding="utf-8")
    for split in ("dev", "test"):
        (d / f"{split}.tsv").write_text("".join(lines[: size.batch]), encoding="utf-8")


def check_spec(d: Path, size: Size):
    from ..spec import spec_from_dict

    return spec_from_dict({
        "name": "gpu-check", "data": {s: str(d / f"{s}.tsv") for s in ("train", "dev", "test")},
        "model": {"layers": size.layers, "hidden": size.hidden, "heads": size.heads, "dropout": 0.1,
                  "max_len": size.source + size.target + 3, "max_target_len": size.target + 1},
        "train": {"epochs": 1, "batch_size": size.batch, "lr": 1e-4, "dev_size": size.batch, "seeds": [0],
                  "bf16": True, "checkpoint_seconds": 0, "log_every": 1},
        "decode": {"beams": [1, 2, 3], "max_len": size.target + 1}})


def method_cases() -> list[tuple[str, dict]]:
    from ..methods import available

    return [(m, {}) for m in available()] + [("gradient_penalty", {"backward": "perturbation"})]


class Checks:
    """Runs the checks, prints a line for each, remembers failures."""

    def __init__(self):
        self.failed: list[str] = []

    def line(self, ok: bool, name: str, detail: str = "") -> None:
        mark = "[green]PASS[/]" if ok else "[red]FAIL[/]"
        console.print(f"{mark}  {name:<30} {detail}", highlight=False, soft_wrap=True)
        if not ok:
            self.failed.append(name)

    def run(self, name: str, fn) -> object:
        try:
            result = fn()
        except Exception as e:  # a check that raises fails; the others still run
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            self.line(False, name, f"{type(e).__name__}: {msg}"[:200])
            return None
        return result


def _batches(run, n: int, start: int = 0):
    """Batches start..start+n of the run's current epoch, on its device, drawn as train_epoch draws
    them (the epoch's shuffle from `run.rng`, whose state before it is what last.pt keeps)."""
    from ..batching import collate, epoch_batches
    from ..gpu import to_device

    run.epoch_start_rng = run.rng.getstate()
    t = run.spec.train
    order = epoch_batches([len(ids) for ids, _ in run.train_ex], t.batch_size, run.rng, t.bucket)
    return [to_device(collate([run.train_ex[i] for i in idx], run.tok.pad_id), run.device)
            for idx in order[start:start + n]]


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_flops(model, batch) -> float:
    """A baseline step's FLOPs (forward and backward, 3× the forward's): the encoder's matrix products
    over the padded batch, attention's two products per layer, and the MLM head at target positions."""
    c = model.config
    B, L = batch.input_ids.shape
    encoder = sum(p.numel() for n, p in model.named_parameters() if ".encoder." in n and p.dim() == 2)
    head = c.hidden * c.hidden + c.hidden * c.vocab_size
    forward = 2 * B * L * encoder + 4 * c.layers * B * L * L * c.hidden + 2 * len(batch.target_rows) * head
    return 3.0 * forward


def train_check(spec, name: str, params: dict, out: Path, device, steps: int, peak: float | None,
                checks: Checks) -> None:
    import torch

    from .. import train as train_mod
    from ..spec import MethodSpec, method_label

    label = method_label(MethodSpec(name, params))
    run = train_mod.prepare_run(spec, MethodSpec(name, params), 0, out, device)
    batches = _batches(run, 1 + steps)
    before = [p.detach().clone() for p in run.model.parameters()]
    with open(out / rundir.LOG, "a", encoding="utf-8") as log:
        losses = [train_mod.train_step(run, batches[0], log)]
        _sync(device)
        t0 = time.perf_counter()
        losses += [train_mod.train_step(run, b, log) for b in batches[1:]]
        _sync(device)
    seconds = (time.perf_counter() - t0) / (len(batches) - 1)
    moved = any(not torch.equal(a, p) for a, p in zip(before, run.model.parameters()))
    ok = all(math.isfinite(x) for x in losses) and moved
    tokens = sum(b.n_tokens for b in batches[1:]) / (len(batches) - 1)
    flops = sum(step_flops(run.model, b) for b in batches[1:]) / (len(batches) - 1)
    share = f"{100 * flops / seconds / (peak * 1e12):.0f}% of peak" if peak else "peak unknown"
    checks.line(ok, f"train {label}", f"{1000 * seconds:8.1f} ms/step {tokens / seconds:10,.0f} tok/s  {share}"
                + ("" if ok else f"  (losses {losses}, weights moved: {moved})"))


def resume_check(spec, out: Path, device, checks: Checks):
    """Stop after two steps with last.pt written mid-epoch, resume in a fresh Run, and take the same
    next two steps as the uninterrupted run: on CPU bit for bit; on CUDA (whose atomics reorder sums)
    the losses within 1%."""
    import torch

    from .. import train as train_mod
    from ..spec import MethodSpec

    method = MethodSpec("baseline")
    a = train_mod.prepare_run(spec, method, 0, out, device)
    epoch = _batches(a, 4)
    with open(out / rundir.LOG, "a", encoding="utf-8") as log:
        for b in epoch[:2]:
            train_mod.train_step(a, b, log)
            a.state.batch_in_epoch += 1
        train_mod.save_last(a)  # the process is "killed" here; the uninterrupted one goes on
        uninterrupted = [train_mod.train_step(a, b, log) for b in epoch[2:]]
    r = train_mod.prepare_run(spec, method, 0, out, device)  # its successor, from last.pt
    assert (r.state.step, r.state.batch_in_epoch) == (2, 2), f"restored at step {r.state.step}"
    rest_r = _batches(r, 2, start=2)  # the epoch's order again, from the restored shuffling state
    with open(out / rundir.LOG, "a", encoding="utf-8") as log:
        resumed = [train_mod.train_step(r, b, log) for b in rest_r]
    if device.type == "cpu":
        same = resumed == uninterrupted and all(torch.equal(p, q) for p, q in zip(a.model.parameters(),
                                                                                  r.model.parameters()))
    else:
        same = all(abs(x - y) <= 0.01 * abs(x) for x, y in zip(resumed, uninterrupted))
    checks.line(same, "resume mid-epoch from last.pt", f"losses after resuming {resumed}, uninterrupted {uninterrupted}")
    return r


def decode_check(run, checks: Checks) -> dict:
    """Dev selection (greedy, as after each epoch; writes best.pt), then a batch at beams 1-3 with
    the run's training precision, as dev decoding runs."""
    from .. import train as train_mod
    from ..decode.beam import decode_spec

    train_mod.select_on_dev(run)
    sources = [p.source for p in run.dev_pairs]
    out = {}
    for k in (1, 2, 3):
        t0 = time.perf_counter()
        with train_mod.autocast(run):
            hyps = decode_spec(run.model, run.tok, run.spec, sources, k, run.device)
        seconds = time.perf_counter() - t0
        ok = len(hyps) == len(sources) and all(h and math.isfinite(h[0].score) for h in hyps)
        checks.line(ok, f"decode beam {k}", f"{len(sources)} sources in {seconds:.2f} s")
        out[k] = hyps
    return out


def diagnose_check(run, checks: Checks) -> None:
    """Teacher-forced scoring (diagnose's) of the best.pt model's fp32 beam-2 outputs against the
    decoder's own scores of them (as `diagnose` checks on every run)."""
    from .. import diagnose as dg
    from ..decode.beam import decode_spec
    from ..model import UniLM

    model = UniLM.from_checkpoint(run.dir / rundir.BEST, run.device).eval()
    sources = [p.source for p in run.dev_pairs]
    hyps = decode_spec(model, run.tok, run.spec, sources, 2, run.device)
    prompts = [run.tok.encode_pair(s, None, run.spec.model.source_len(), 0)[0] for s in sources]
    scored = dg.score_targets(model, prompts, [h[0].tokens for h in hyps], pad_id=run.tok.pad_id,
                              banned=dg.special_ids(run.tok))
    diff = max(abs(s.total - h[0].score) for s, h in zip(scored, hyps))
    tol = 1e-3 if run.device.type == "cpu" else 0.05  # TF32 matmuls on CUDA
    checks.line(diff <= tol, "diagnose scoring", f"largest |teacher-forced − decoder| score {diff:.2e} (≤ {tol:g})")


def export_check(run, out: Path, checks: Checks) -> None:
    from safetensors.torch import load_file

    from ..export import export_run

    export_run(run.dir, out)
    state = load_file(out / "model.safetensors")
    ok = set(state) == set(run.model.state_dict()) and (out / "config.json").is_file()
    checks.line(ok, "export", f"{len(state)} tensors → {out.name}/model.safetensors")


def gpu_check(device_option: str = "auto") -> list[str]:
    """Every check; returns the names of the failed ones."""
    import torch

    from ..gpu import amp_for
    from ..runtime import resolve_device

    device = resolve_device(device_option)
    size = GPU_SIZE if device.type == "cuda" else CPU_SIZE
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    peak = peak_tflops(name) if device.type == "cuda" else None
    amp = amp_for(device, True)
    precision = "fp16 + GradScaler" if amp.scaler else "bf16 autocast"
    console.print(f"{device} ({name}; peak {f'{peak:g} TFLOPS' if peak else 'unknown'}), {precision}; model "
                  f"{size.layers} layers × {size.hidden}, vocabulary {size.vocab + 5:,}, batch {size.batch}",
                  highlight=False, soft_wrap=True)
    checks = Checks()
    with tempfile.TemporaryDirectory(prefix="exposure-gpu-check-") as tmp:
        root = Path(tmp)
        (root / "data").mkdir()
        write_data(root / "data", size)
        spec = check_spec(root / "data", size)
        for i, (m, params) in enumerate(method_cases()):
            checks.run(f"train {m}", lambda: train_check(spec, m, params, root / f"m{i}", device, size.steps, peak,
                                                          checks))
        run = checks.run("resume mid-epoch from last.pt", lambda: resume_check(spec, root / "resume", device, checks))
        if run is not None:
            if checks.run("decode", lambda: decode_check(run, checks)) is not None:
                checks.run("diagnose scoring", lambda: diagnose_check(run, checks))
                checks.run("export", lambda: export_check(run, root / "export", checks))
    return checks.failed


@app.command("gpu-check")
def gpu_check_command(device: str = typer.Option("auto", help=DEVICE_HELP),
                      threads: int = typer.Option(0, min=0, help="torch CPU threads; 0 = torch's default. On a "
                                                  "busy shared machine 1 is often several times faster.")):
    """Check a machine before a long run: a random BERT-base-sized UniLM (tiny with --device cpu) trains
    a few steps with every method in the machine's precision, resumes mid-epoch, decodes at beams 1-3,
    is scored as diagnose scores and exported. One line per check, each method's step time, tokens/s
    and share of the GPU's peak; exit 1 if a check fails."""
    from ..runtime import set_threads

    set_threads(threads)
    failed = gpu_check(device)
    if failed:
        console.print(f"[red]{len(failed)} check(s) failed:[/] {', '.join(failed)}", highlight=False)
        raise typer.Exit(1)
    console.print("[green]every check passed[/]", highlight=False)
