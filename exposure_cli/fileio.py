"""Atomic writes: a crash never leaves a half-written file where a complete one was expected; a full
disk is one line naming the file, the filesystem and the space needed; checkpoints carry a
checksum, so damaged storage is noticed on load instead of resumed from.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import json
import lzma
import os
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable


_UMASK = os.umask(0)
os.umask(_UMASK)
TMP_SUFFIX = ".tmp"  # temporaries are `.NAME.XXXX.tmp` beside their target; a SIGKILL can leave one


def _atomic(path: str | os.PathLike, write: Callable[[Path], None], size: int | None = None,
            previous: str | os.PathLike | None = None) -> Path:
    """Write through a temporary beside `path`, fsync, rename. `size` (bytes to write, when known)
    goes into the full-disk message; `previous` keeps the file being replaced under that name."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600: give the result the permissions open() would
        os.close(fd)
        write(Path(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        fault_point("rename")
        if previous is not None and path.exists():
            os.replace(path, previous)  # a kill before the next line leaves `previous` to resume from
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise disk_full(path, size) from None
        raise
    _fsync_dir(path.parent)  # the rename itself survives a power cut
    return path


def _mount_point(path: Path) -> Path:
    path = path.resolve()
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def disk_full(path, size: int | None = None):
    """The one-line UserError for a write that found its filesystem full."""
    from .errors import UserError

    path = Path(path)
    def amount(n: int) -> str:
        return f"{n / 1e6:,.1f} MB" if n >= 1e6 else f"{n / 1e3:,.0f} kB"

    try:
        st = os.statvfs(path.parent)
        free = f"{amount(st.f_bavail * st.f_frsize)} free"
    except OSError:
        free = "free space unknown"
    needed = f"{amount(size)} needed, " if size is not None else ""
    return UserError(f"{path}: no space left on the filesystem at {_mount_point(path.parent)} ({needed}{free}); "
                     "nothing was half-written: free some space and rerun the same command to resume")


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


def write_bytes(path, data: bytes, previous=None) -> Path:
    return _atomic(path, lambda p: p.write_bytes(data), len(data), previous)


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


# A checkpoint's checksum rides in its zip archive's comment (the archive's last bytes), so the file
# stays what torch.load reads; it is the sha256 of everything before the comment's length field.
CHECKSUM = b"exposure-sha256:"
_TRAILER = len(CHECKSUM) + 64


def checksum_trailer(archive) -> bytes:
    """What replaces the last 2 bytes (the empty comment's length) of a torch.save archive: the
    comment's length and the comment, the archive's checksum."""
    digest = hashlib.sha256(memoryview(archive)[:-2]).hexdigest().encode()
    return struct.pack("<H", _TRAILER) + CHECKSUM + digest


def checksum_ok(data: bytes) -> bool | None:
    """True or False for a checkpoint carrying a checksum; None for one without (older versions)."""
    tail = data[-_TRAILER - 2:]
    if len(tail) < _TRAILER + 2 or struct.unpack("<H", tail[:2])[0] != _TRAILER or \
            not tail[2:].startswith(CHECKSUM):
        return None
    return hashlib.sha256(memoryview(data)[:-_TRAILER - 2]).hexdigest().encode() == tail[-64:]


def torch_save(path, obj: Any, previous=None) -> Path:
    """torch.save, atomically, with a checksum; `previous` keeps the replaced file (last.prev.pt).
    Serialised in memory first: the bytes are then written with plain file writes, whose full-disk
    error names itself (torch's zip writer raises a bare RuntimeError), and their size is known."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    archive = buf.getbuffer()  # no copy: a BERT-base last.pt is 1.2 GB
    trailer = checksum_trailer(archive)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(archive[:-2])
            f.write(trailer)

    try:
        return _atomic(path, write, len(archive) - 2 + len(trailer), previous)
    finally:
        archive.release()


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
    refused files are one-line UserErrors naming the file; a checkpoint whose bytes do not match
    the checksum written with it, or that cannot be read, is `Damaged` (a UserError).
    """
    import pickle

    import torch

    from .errors import Damaged, UserError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} not found")
    data = path.read_bytes()
    if checksum_ok(data) is False:
        raise Damaged(f"{path}: damaged: its content does not match the checksum written with it")
    try:
        return torch.load(io.BytesIO(data), map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "refused"
        raise UserError(f"{path}: refused to load: it holds more than tensors and plain containers ({first})") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise Damaged(f"{path}: not a readable {what}, truncated or corrupt ({msg})") from None


# The compressed forms read_text takes, by file suffix: (name, decompress, the errors of a cut or
# foreign file); write_xz_text's first, as rundir.kept prefers it.
CODECS = {".xz": ("xz", lzma.decompress, (lzma.LZMAError, EOFError)),
          ".gz": ("gzip", gzip.decompress, (gzip.BadGzipFile, EOFError, zlib.error))}


def read_text(path, what: str = "file") -> str:
    """A UTF-8 text file (decompressed when its name ends in .xz or .gz), or a one-line UserError
    naming the path: missing, not compressed whole, or not UTF-8 (and where)."""
    from .errors import UserError

    path = Path(path)
    codec, decompress, errors = CODECS.get(path.suffix, (None, None, ()))
    try:
        data = path.read_bytes()
        return (decompress(data) if decompress else data).decode("utf-8")
    except (FileNotFoundError, IsADirectoryError):
        raise UserError(f"{path}: {what} not found") from None
    except errors as e:
        raise UserError(f"{path}: {what} is not {codec}-compressed whole ({e})") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: {what} is not UTF-8 text ({e.reason} at byte {e.start})") from None


def write_xz_text(path, text: str) -> Path:
    """`text` xz-compressed into `path`, atomically; the same bytes for the same text (xz records no
    time). On a kept run's diagnostics 0.64× gzip's bytes, on its predictions 0.9×; preset 6 (8 MB
    dictionary, ~100 MB to compress) matches preset 9 on files this small."""
    return write_bytes(path, lzma.compress(text.encode("utf-8"), format=lzma.FORMAT_XZ, preset=6))


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
