"""Atomic writes: a crash never leaves a half-written file where a complete one was expected."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable


_UMASK = os.umask(0)
os.umask(_UMASK)
TMP_SUFFIX = ".tmp"  # temporaries are `.NAME.XXXX.tmp` beside their target; a SIGKILL can leave one


def _atomic(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600: give the result the permissions open() would
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        fault_point("rename")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)  # the rename itself survives a power cut
    return path


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_temporaries(root: Path) -> int:
    """Delete the temporaries a killed process left under `root` (call only while no one writes there)."""
    n = 0
    for p in Path(root).rglob(f".*{TMP_SUFFIX}"):
        p.unlink(missing_ok=True)
        n += 1
    return n


_fault_count = 0


def fault_point(event: str) -> None:
    """Crash-safety tests: with EXPOSURE_FAULT=EVENT:N the process kills itself (SIGKILL, no cleanup)
    at the N-th time it reaches EVENT, e.g. `rename:3` between writing the third temporary file and
    renaming it. Unset in normal use, where this is one dictionary lookup."""
    spec = os.environ.get("EXPOSURE_FAULT")
    if not spec:
        return
    name, _, n = spec.partition(":")
    if name != event:
        return
    global _fault_count
    _fault_count += 1
    if _fault_count == int(n or 1):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def write_bytes(path, data: bytes) -> Path:
    return _atomic(path, lambda p: p.write_bytes(data))


def write_text(path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_stream(path, chunks: Iterable[bytes]) -> Path:
    """Write chunks as they come (large downloads never sit in memory); if the iterable raises,
    for example because a checksum it computes does not match, nothing is left at `path`."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            for chunk in chunks:
                f.write(chunk)

    return _atomic(path, write)


def write_json(path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def torch_save(path, obj: Any) -> Path:
    import torch

    return _atomic(path, lambda p: torch.save(obj, p))


def read_json(path, what: str = "JSON file") -> Any:
    """A JSON file, or a one-line UserError naming the path (and line) of what is wrong."""
    from .errors import UserError

    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None


def torch_load(path, device="cpu", what: str = "checkpoint") -> Any:
    """A checkpoint of tensors and plain containers, loaded without running any pickled code.

    `weights_only=True` refuses every global that is not a tensor type or a plain container, so a
    file carrying a pickle payload is rejected before anything in it runs. Missing, truncated or
    refused files are one-line UserErrors naming the file.
    """
    import pickle

    import torch

    from .errors import UserError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} not found")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "refused"
        raise UserError(f"{path}: refused to load: it holds more than tensors and plain containers ({first})") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: not a readable {what}, truncated or corrupt ({msg})") from None


def read_text(path, what: str = "file") -> str:
    """A UTF-8 text file, or a one-line UserError naming the path: missing, or not UTF-8 (and where)."""
    from .errors import UserError

    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError):
        raise UserError(f"{path}: {what} not found") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: {what} is not UTF-8 text ({e.reason} at byte {e.start})") from None
