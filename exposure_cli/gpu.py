"""The GPU path, kept small and shared with the CPU one: the autocast precision and its gradient
scaler, TF32 matmuls, pinned-memory batches, and the check that stops a GPU-sized profile on a CPU.

Only `precision` decides anything, as a pure function of (device type, bf16 support), so that the
choice a CUDA machine makes is tested here on CPU. On CUDA the model also takes PyTorch's fused
attention with its own dropout for every method without a double backward (`model.plain_attention`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from .errors import UserError


class Precision(NamedTuple):
    dtype: torch.dtype  # the autocast dtype (used only when autocast is on)
    scaler: bool  # fp16 needs a gradient scaler: its small gradients underflow


def precision(device_type: str, bf16_supported: bool) -> Precision:
    """bf16 where the device has it (every CPU torch runs on, Ampere and later GPUs); fp16 with a
    gradient scaler on GPUs without bf16 (V100, T4)."""
    if device_type == "cuda" and not bf16_supported:
        return Precision(torch.float16, scaler=True)
    return Precision(torch.bfloat16, scaler=False)


@dataclass
class Amp:
    """The autocast dtype of a run and, under fp16, its gradient scaler."""

    dtype: torch.dtype = torch.bfloat16
    scaler: torch.amp.GradScaler | None = None

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def unscale(self, opt: torch.optim.Optimizer) -> None:
        """Bring the gradients back to their true scale before they are clipped or measured."""
        if self.scaler:
            self.scaler.unscale_(opt)

    def step(self, opt: torch.optim.Optimizer) -> None:
        """The optimizer step; under fp16 skipped when a gradient overflowed (the scale is lowered)."""
        if self.scaler:
            self.scaler.step(opt)
            self.scaler.update()
        else:
            opt.step()

    def loss_scale(self, device: torch.device) -> torch.Tensor | None:
        """The scaler's current scale as a device scalar (no host read), for the inner gradients of the
        methods that differentiate twice (`methods.inner_grad`); None without a scaler."""
        return self.scaler.scale(torch.ones((), device=device)) if self.scaler else None

    def state_dict(self) -> dict:
        return self.scaler.state_dict() if self.scaler else {}

    def load_state_dict(self, state: dict | None) -> None:
        if self.scaler and state:
            self.scaler.load_state_dict(state)


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 natively (every CPU torch runs on; Ampere and later GPUs). A V100
    or T4 only emulates it, slower than fp16 with a gradient scaler, which torch's default
    `is_bf16_supported()` counts as support; and it answers for the current device, so ask it there."""
    if device.type != "cuda":
        return True
    with torch.cuda.device(device):
        return torch.cuda.is_bf16_supported(including_emulation=False)


def amp_for(device: torch.device, bf16: bool, scaler: bool | None = None) -> Amp:
    """The run's Amp on `device`; `scaler` forces the gradient scaler on or off (tests use it on CPU).
    On CUDA it also lets fp32 matmuls use TF32 (what autocast leaves in fp32: the dev decoding with
    train.select_fp32, the test decoding)."""
    p = precision(device.type, native_bf16(device))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    use_scaler = (p.scaler and bf16) if scaler is None else scaler
    dtype = torch.float16 if use_scaler else p.dtype
    return Amp(dtype, torch.amp.GradScaler(device.type) if use_scaler else None)


def to_device(batch, device: torch.device):
    """A batch on `device`; to CUDA from pinned memory, without blocking the host."""
    if device.type != "cuda":
        return batch.to(device)
    return batch.map(lambda t: t.pin_memory().to(device, non_blocking=True))


def cpu_estimate(spec, train_examples: int) -> tuple[int, float]:
    """(training steps of the whole grid, seconds they would take at train.cpu_step_seconds each)."""
    t = spec.train
    steps = math.ceil(train_examples / t.batch_size) * t.epochs * len(spec.methods) * len(t.seeds)
    return steps, steps * (t.cpu_step_seconds or 0.0)


def _duration(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} hours"


def require_gpu(spec, device: torch.device, device_option: str, train_examples: int) -> None:
    """Stop a profile sized for a GPU (train.needs_gpu) before any work when it would run on a CPU,
    unless `--device cpu` was asked for explicitly; say how long the CPU run would take."""
    if not spec.train.needs_gpu or device.type != "cpu" or device_option == "cpu":
        return
    steps, seconds = cpu_estimate(spec, train_examples)
    cost = (f"{steps:,} training steps, about {_duration(seconds)} on a CPU at the {spec.train.cpu_step_seconds:g} s "
            "a step measured for it (more for the gradient penalty)" if spec.train.cpu_step_seconds
            else f"{steps:,} training steps (no CPU step time measured)")
    raise UserError(f"{spec.name}: this profile needs a GPU and there is no CUDA here: {cost}; run it on a CUDA "
                    "machine, or pass --device cpu to run it here anyway")
