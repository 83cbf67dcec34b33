"""A device audit: the CUDA path checked on a CPU-only machine.

A run is given the pretend accelerator `cpu:0` (torch accepts it almost everywhere and computes on
the CPU, but it is not equal to `cpu`). Inside `DeviceAudit` (a TorchFunctionMode) every tensor is
marked where it would live on a real GPU machine:
- made by a factory without a device, or with `cpu`, or moved `.to("cpu")` / `.cpu()`: the host;
- made with `device=cpu:0` (or `x.device` of a device tensor), or moved `.to("cpu:0")`: the device;
- made by any other op: the device if one of its tensor inputs is, else the host.
`t.device` of a device tensor answers `cpu:0`, so `torch.arange(n, device=x.device)` follows `x`.
(torch's own Python code may learn a tensor's device through C, which says `cpu`: a move to `cpu`
made there, as clip_grad_norm_ makes, keeps the device mark.)

It raises `DeviceError` where CUDA would raise: a host tensor of rank > 0 meeting a device tensor in
one op (a rank-0 host tensor is allowed with a CUDA one, as torch allows it), an RNG state on the
device given to `torch.set_rng_state` or a generator's `set_state`, and, when the audit checks an
optimizer after `load_state_dict`, Adam's step counters on the device (a host read per parameter
and step) or its moments on the host.

It counts host reads of device tensors (`item`, `tolist`, `bool`/`int`/`float`, `.cpu()`, a
`copy_` to the host, boolean-mask indexing, `nonzero`): each waits for the GPU. GradScaler's own overflow check is not
counted. `torch.load` with `map_location=cpu:0` marks what it loads as device; `written_on_cuda()`
makes `torch.save` tag every storage `cuda:0`, as a checkpoint written on a GPU is.
"""

from __future__ import annotations

import contextlib
import traceback

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

DEVICE = torch.device("cpu:0")
_WHERE = "_audit_where"  # the mark, an attribute of the tensor: "device" or "host"


class DeviceError(AssertionError):
    pass


def on_device(t) -> bool:
    return isinstance(t, torch.Tensor) and getattr(t, _WHERE, "host") == "device"


def _mark(out, where: str):
    for t in tree_flatten(out)[0]:
        if isinstance(t, torch.Tensor):
            try:
                setattr(t, _WHERE, where)
            except (AttributeError, RuntimeError):  # a tensor type without a __dict__
                pass
    return out


def _caller() -> str:
    """The innermost frame of the project (or the test) that led here."""
    for f in reversed(traceback.extract_stack()[:-2]):
        if "exposure_cli" in f.filename or "/tests/" in f.filename and "device_audit" not in f.filename:
            return f"{f.filename.rsplit('/', 2)[-2]}/{f.filename.rsplit('/', 1)[-1]}:{f.lineno} ({f.line})"
    return "?"


def _inside_torch() -> bool:
    """Called from torch's own Python code (which sees the real device, `cpu`, through C)."""
    for f in reversed(traceback.extract_stack()[:-1]):
        if "device_audit" in f.filename or f.filename.endswith("torch/overrides.py"):
            continue
        return "/torch/" in f.filename
    return False


def _from_grad_scaler() -> bool:
    return any(f.filename.endswith("grad_scaler.py") for f in traceback.extract_stack())


T = torch.Tensor
_READS = {T.item, T.tolist, T.__bool__, T.__int__, T.__float__, T.__index__, T.numpy, torch.nonzero, T.nonzero,
          torch.masked_select, T.masked_select}
_MOVES = {T.to, T.cpu, T.cuda}
_NO_MIX_CHECK = {T.to, T.cpu, T.copy_, T.data.__set__, T.set_, torch._has_compatible_shallow_copy_type}


class DeviceAudit(TorchFunctionMode):
    def __init__(self, device: torch.device = DEVICE):
        super().__init__()
        self.device = device
        self.reads: list[str] = []  # where each counted host read happened

    # ------------------------------------------------------------------- the torch function
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func == T.device.__get__:
            return self.device if on_device(args[0]) else func(*args, **kwargs)
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        dev = [t for t in tensors if on_device(t)]
        if func in _READS and dev:
            self._read(func.__name__)
        if func is T.copy_ and not on_device(args[0]) and on_device(args[1]):
            self._read("copy_ to the host")
        if func in (T.__getitem__, T.__setitem__):
            self._check_index(func, args)
        elif func not in _NO_MIX_CHECK:
            self._check_mix(func, tensors, dev)
        out = func(*args, **kwargs)
        if func == T.data.__set__:  # Module.to: the parameter takes its new data's place
            return _mark(args[0], getattr(args[1], _WHERE, "host"))
        if func in _MOVES:
            target = self._target(func, args, kwargs)
            if target == "host" and dev and _inside_torch():  # e.g. clip_grad_norm_ grouping by C's device
                target = "device"
            if target == "host" and dev:
                self._read(f"{func.__name__} to the host")
            return _mark(out, target or ("device" if dev else "host"))
        if func in (T.copy_, T.set_) or not isinstance(out, (torch.Tensor, tuple, list)):
            return out
        if not tensors or "device" in kwargs:
            return _mark(out, "device" if self._is_device(kwargs.get("device")) else "host")
        return _mark(out, "device" if dev else "host")

    def _is_device(self, d) -> bool:
        return d is not None and torch.device(d) == self.device

    def _target(self, func, args, kwargs) -> str | None:
        if func is T.cpu:
            return "host"
        if func is T.cuda:
            return "device"
        device = kwargs.get("device")
        for a in args[1:]:
            if isinstance(a, (str, torch.device)):
                device = a
            elif isinstance(a, torch.Tensor):  # .to(other): where the other one lives
                return "device" if on_device(a) else "host"
        if device is None:
            return None
        return "device" if self._is_device(device) else "host"

    def _check_index(self, func, args) -> None:
        """CUDA indexes a device tensor with host indices, not a host tensor with device ones; a
        boolean mask on the device is a host read (the result's size depends on it)."""
        x, idx = args[0], args[1] if isinstance(args[1], tuple) else (args[1],)
        idx = [i for i in tree_flatten(idx)[0] if isinstance(i, torch.Tensor)]
        if on_device(x) and any(i.dtype == torch.bool and on_device(i) for i in idx):
            self._read("boolean-mask indexing")
        operands = [x] + ([args[2]] if func is T.__setitem__ and isinstance(args[2], torch.Tensor) else [])
        if not on_device(x):
            operands += idx
        self._check_mix(func, operands, [t for t in operands if on_device(t)])

    def _check_mix(self, func, tensors, dev) -> None:
        if not dev:
            return
        host = [t for t in tensors if not on_device(t) and t.dim() > 0]
        if host:
            name = getattr(func, "__name__", str(func))
            raise DeviceError(f"{name}: a host tensor {tuple(host[0].shape)} meets a device tensor "
                              f"{tuple(dev[0].shape)} at {_caller()}")

    def _read(self, what: str) -> None:
        if not _from_grad_scaler():
            self.reads.append(f"{what} at {_caller()}")

    # -------------------------------------------------------------- what the mode cannot see
    @contextlib.contextmanager
    def active(self):
        """The mode, with the checks torch's Python-level functions need patched in."""
        saved = (torch.load, torch.set_rng_state, torch.random.set_rng_state, torch.Generator)
        audit = self

        def load(f, map_location=None, **kw):
            if map_location is not None and audit._is_device(map_location):
                return _mark(saved[0](f, map_location="cpu", **kw), "device")
            return _mark(saved[0](f, map_location=map_location, **kw), "host")

        def set_rng_state(state):
            audit.check_rng_state(state, "torch.set_rng_state")
            return saved[1](state)

        class Generator(saved[3]):
            def set_state(self, state):
                audit.check_rng_state(state, "Generator.set_state")
                return super().set_state(state)

        torch.load, torch.set_rng_state, torch.random.set_rng_state, torch.Generator = (
            load, set_rng_state, set_rng_state, Generator)
        try:
            with self:
                yield self
        finally:
            torch.load, torch.set_rng_state, torch.random.set_rng_state, torch.Generator = saved

    def check_rng_state(self, state, where: str) -> None:
        if on_device(state):
            raise DeviceError(f"{where}: an RNG state on the device (CUDA refuses it; it must be a CPU ByteTensor) "
                              f"at {_caller()}")

    def check_optimizer(self, opt: torch.optim.Optimizer) -> None:
        """Adam's step counters on the host (rank 0, read by the update), its moments on the device."""
        for group in opt.param_groups:
            for p in group["params"]:
                for key, value in opt.state.get(p, {}).items():
                    if not isinstance(value, torch.Tensor):
                        continue
                    if key == "step" and on_device(value):
                        raise DeviceError("optimizer state: Adam's step counter on the device (a host read per "
                                          "parameter per step)")
                    if key != "step" and on_device(p) and not on_device(value):
                        raise DeviceError(f"optimizer state: {key} on the host for a parameter on the device")

    def take_reads(self) -> list[str]:
        reads, self.reads = self.reads, []
        return reads


# --------------------------------------------------------------- checkpoints written on a GPU

_CUDA_TAG = {"on": False}


def _tag(storage):
    return "cuda:0" if _CUDA_TAG["on"] else None


def _never(obj, location):
    return None


torch.serialization.register_package(0, _tag, _never)


@contextlib.contextmanager
def written_on_cuda():
    """`torch.save` tags every storage `cuda:0`, as a checkpoint written on a GPU is: loading it on
    a CPU-only machine needs `map_location` (without it torch tries to put it on CUDA and fails)."""
    _CUDA_TAG["on"] = True
    try:
        yield
    finally:
        _CUDA_TAG["on"] = False
