"""Getting and preparing the data: fetch the pinned upstream files, then build the splits.

The recipe is the one in the shared data README; the splits it produces are checked byte for byte
against `SPLITS.sha256` by the tests, so any change to the reading rules here shows up there.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Iterable, Iterator

from . import fileio
from .errors import UserError

MANIFEST_COLUMNS = ("path", "sha256", "bytes", "upstream")
CHUNK = 1 << 16
# Upstream hosts can stall; a bounded wait turns a hang into an error the user can act on.
DOWNLOAD_TIMEOUT_S = 60

CLGE = "clge"
CSL_BENCHMARK = "csl-benchmark"
KINDS = (CLGE, CSL_BENCHMARK)
TS_MARKER = "to title"

TASKS = ("csl", "lcsts")
SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class ManifestEntry:
    path: str  # relative, '/'-separated, as the files sit under the raw folder
    sha256: str
    bytes: int
    upstream: str


@dataclass(frozen=True)
class Pair:
    source: str  # the content (abstract / post): what the model reads
    target: str  # the title / summary: what the model writes


# --------------------------------------------------------------------------------------------
# Manifest


def read_manifest(path: str | os.PathLike) -> list[ManifestEntry]:
    """Entries of a tab-separated manifest whose header names the columns (order is free)."""
    path = Path(path)
    text = fileio.read_text(path, "manifest")
    lines = [ln.removesuffix("\r") for ln in text.split("\n")]
    if not lines or not lines[0].strip():
        raise UserError(f"{path}:1: manifest must start with a header line: {chr(9).join(MANIFEST_COLUMNS)}")
    header = lines[0].split("\t")
    missing = [c for c in MANIFEST_COLUMNS if c not in header]
    if missing:
        raise UserError(f"{path}:1: manifest header lacks column(s) {', '.join(missing)}")
    col = {name: header.index(name) for name in MANIFEST_COLUMNS}

    entries: list[ManifestEntry] = []
    seen: set[str] = set()
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        fields = line.split("\t")
        if len(fields) != len(header):
            raise UserError(f"{where}: expected {len(header)} tab-separated fields, found {len(fields)}")
        rel, sha, size, url = (fields[col[c]].strip() for c in MANIFEST_COLUMNS)
        # The path becomes a file name under the output folder: refuse anything that could escape it.
        pp = PurePosixPath(rel)
        if not rel or pp.is_absolute() or ".." in pp.parts or "\\" in rel:
            raise UserError(f"{where}: path {rel!r} must be a relative path inside the data folder")
        if not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise UserError(f"{where}: sha256 {sha!r} is not 64 lowercase hex digits")
        if not size.isdigit():
            raise UserError(f"{where}: bytes {size!r} is not a non-negative integer")
        if not url:
            raise UserError(f"{where}: upstream URL is empty")
        if rel in seen:
            raise UserError(f"{where}: path {rel} is listed twice")
        seen.add(rel)
        entries.append(ManifestEntry(path=rel, sha256=sha, bytes=int(size), upstream=url))
    if not entries:
        raise UserError(f"{path}: manifest lists no files")
    return entries


# --------------------------------------------------------------------------------------------
# Fetch


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _verified(src: BinaryIO, entry: ManifestEntry, dest: Path, origin: str, advance) -> Iterator[bytes]:
    """Yield the source's bytes, then raise if they are not what the manifest pins.

    Raising from inside the stream makes the atomic writer discard its temp file, so a bad
    download never appears at the destination.
    """
    h = hashlib.sha256()
    n = 0
    for chunk in iter(lambda: src.read(CHUNK), b""):
        n += len(chunk)
        if n > entry.bytes:
            # Stop early rather than pull an arbitrarily large wrong file to disk.
            raise UserError(
                f"{dest}: {origin} is larger than the {entry.bytes} bytes the manifest expects; "
                f"expected sha256 {entry.sha256}; nothing was written"
            )
        h.update(chunk)
        advance(len(chunk))
        yield chunk
    actual = h.hexdigest()
    if actual != entry.sha256 or n != entry.bytes:
        raise UserError(
            f"{dest}: checksum mismatch for {origin}: expected sha256 {entry.sha256} ({entry.bytes} bytes), "
            f"got {actual} ({n} bytes); nothing was written"
        )


def _open_source(entry: ManifestEntry, mirror: Path | None) -> tuple[BinaryIO, str]:
    if mirror is not None:
        src = mirror / entry.path
        try:
            return open(src, "rb"), str(src)
        except FileNotFoundError:
            raise UserError(f"{src}: not in the mirror (needed for {entry.path})") from None
    try:
        return urllib.request.urlopen(entry.upstream, timeout=DOWNLOAD_TIMEOUT_S), entry.upstream
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise UserError(
            f"{entry.path}: download of {entry.upstream} failed ({reason}); "
            "without internet access, pass --mirror DIR with a copy of the raw files"
        ) from None


def fetch(
    manifest_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    mirror: str | os.PathLike | None = None,
    *,
    show_progress: bool = True,
) -> list[Path]:
    """Make `out_dir` hold every manifest file with its pinned sha256; return their paths.

    Files already present and correct are left alone, so re-running is cheap and resumes an
    interrupted fetch. Sources are `mirror/<path>` when a mirror is given, else the upstream URL.
    """
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    entries = read_manifest(manifest_path)
    out_dir = Path(out_dir)
    mirror_dir = Path(mirror) if mirror is not None else None
    if mirror_dir is not None and not mirror_dir.is_dir():
        raise UserError(f"{mirror_dir}: mirror folder not found")

    todo: list[ManifestEntry] = []
    for e in entries:
        dest = out_dir / e.path
        if dest.is_file() and dest.stat().st_size == e.bytes and sha256_file(dest) == e.sha256:
            continue
        todo.append(e)

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TextColumn("{task.fields[files]}"),
        disable=not show_progress,
    )
    n = len(todo)
    with progress:
        task = progress.add_task("fetch", total=sum(e.bytes for e in todo), files=f"0/{n} files")
        for i, e in enumerate(todo):
            dest = out_dir / e.path
            progress.update(task, description=e.path, files=f"{i}/{n} files")
            # A file here is known to be wrong; leaving it would let a failed fetch look done.
            if dest.is_file():
                dest.unlink()
            src, origin = _open_source(e, mirror_dir)
            try:
                with src:
                    fileio.write_stream(
                        dest, _verified(src, e, dest, origin, lambda k: progress.advance(task, k))
                    )
            except (OSError, http.client.HTTPException) as err:
                # A dropped connection or a full disk: the atomic writer already removed its temp file.
                raise UserError(f"{dest}: reading {origin} failed ({err}); nothing was written") from None
        progress.update(task, description="fetch", files=f"{n}/{n} files")
    return [out_dir / e.path for e in entries]


# --------------------------------------------------------------------------------------------
# Reading raw files


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")  # drops one leading BOM, if any
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise UserError(f"{path}:{line}: invalid UTF-8 ({e.reason} at byte {e.start})") from None


def _lines(path: Path, data: bytes) -> Iterator[tuple[int, str]]:
    # split("\n") rather than splitlines(): the latter also breaks on U+2028, \x1c and friends,
    # which occur inside scraped text and would shift line numbers and cut pairs in half.
    for lineno, line in enumerate(_decode(path, data).split("\n"), start=1):
        yield lineno, line.removesuffix("\r")


def read_raw(path: str | os.PathLike, kind: str) -> tuple[list[Pair], list[str]]:
    """Pairs from one upstream file, and the lines that were skipped as `file:line: why`.

    kind: "clge" (`title<TAB>content`) or "csl-benchmark" (`to title<TAB>content<TAB>title`).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown raw file kind {kind!r}; expected one of {KINDS}")
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: raw file not found; run `exposure data fetch` first") from None
    want = 2 if kind == CLGE else 3
    pairs: list[Pair] = []
    problems: list[str] = []
    for lineno, line in _lines(path, data):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != want:
            problems.append(f"{path}:{lineno}: expected {want} tab-separated fields, found {len(fields)}")
            continue
        if kind == CLGE:
            title, content = fields
        else:
            marker, content, title = fields
            if marker != TS_MARKER:
                problems.append(f"{path}:{lineno}: first field must be {TS_MARKER!r}, found {marker!r}")
                continue
        title, content = title.strip(), content.strip()
        if title and content:
            pairs.append(Pair(source=content, target=title))
    return pairs, problems


def kind_of(rel_path: str) -> str:
    """The reading rule for a manifest path, from its top folder."""
    top = PurePosixPath(rel_path).parts[0]
    if top not in KINDS:
        raise UserError(f"{rel_path}: no reading rule for files under {top}/ (known: {', '.join(KINDS)})")
    return top


# --------------------------------------------------------------------------------------------
# Split recipe


def dedupe(pairs: Iterable[Pair]) -> list[Pair]:
    """Drop exact repeats of (title, content), keeping the first occurrence and the order."""
    seen: set[Pair] = set()
    out: list[Pair] = []
    for p in pairs:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def minus(a: Iterable[Pair], b: Iterable[Pair]) -> list[Pair]:
    """A without any pair that shares its title or its content with a pair of B.

    Matching either side, not the whole pair, keeps near-duplicates (same abstract, retitled) from
    leaking evaluation text into training.
    """
    b = list(b)
    titles = {p.target for p in b}
    contents = {p.source for p in b}
    return [p for p in a if p.target not in titles and p.source not in contents]


RAW_FILES = (
    "clge/csl/val.tsv",
    "clge/csl/test.tsv",
    "clge/lcsts/train.tsv",
    "clge/lcsts/val.tsv",
    "clge/lcsts/test.tsv",
    "csl-benchmark/ts/dev.tsv",
    "csl-benchmark/ts/test.tsv",
)


def build_splits(raw: dict[str, list[Pair]]) -> dict[str, dict[str, list[Pair]]]:
    """The README recipe, on already-read raw files keyed by their manifest path."""
    pool = dedupe(raw["clge/csl/test.tsv"])
    csl_dev, csl_test = pool[0:500], pool[500:1000]
    csl_train = minus(
        dedupe(raw["clge/csl/val.tsv"] + raw["csl-benchmark/ts/dev.tsv"] + raw["csl-benchmark/ts/test.tsv"]),
        csl_dev + csl_test,
    )
    lc_test = dedupe(raw["clge/lcsts/test.tsv"])
    lc_dev = minus(dedupe(raw["clge/lcsts/val.tsv"]), lc_test)
    lc_train = minus(dedupe(raw["clge/lcsts/train.tsv"]), lc_dev + lc_test)
    return {
        "csl": {"train": csl_train, "dev": csl_dev, "test": csl_test},
        "lcsts": {"train": lc_train, "dev": lc_dev, "test": lc_test},
    }


def format_pairs(pairs: Iterable[Pair]) -> str:
    return "".join(f"{p.target}\t{p.source}\n" for p in pairs)


def prepare(raw_dir: str | os.PathLike, out_dir: str | os.PathLike) -> dict:
    """Write `out_dir/{csl,lcsts}/{train,dev,test}.tsv` from the raw files.

    Returns {"counts": {task: {split: n}}, "problems": ["file:line: why", ...]}; problems are
    lines skipped by the reading rules, for the caller to show as warnings.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    missing = [rel for rel in RAW_FILES if not (raw_dir / rel).is_file()]
    if missing:
        raise UserError(
            f"{raw_dir / missing[0]}: raw file missing"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            + f"; run `exposure data fetch --out {raw_dir}` first"
        )
    raw: dict[str, list[Pair]] = {}
    problems: list[str] = []
    for rel in RAW_FILES:
        raw[rel], probs = read_raw(raw_dir / rel, kind_of(rel))
        problems += probs
    splits = build_splits(raw)
    counts: dict[str, dict[str, int]] = {}
    for task, by_split in splits.items():
        counts[task] = {}
        for split, pairs in by_split.items():
            fileio.write_text(out_dir / task / f"{split}.tsv", format_pairs(pairs))
            counts[task][split] = len(pairs)
    return {"counts": counts, "problems": problems}


# --------------------------------------------------------------------------------------------
# Reading prepared splits (what training and decoding import)


def read_pairs(path: str | os.PathLike) -> list[Pair]:
    """Pairs of a prepared split (`title<TAB>content` per line), in file order.

    Strict, because these files are ours: any malformed line means the file was edited or
    truncated, and training on it silently would be worse than stopping.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: split not found; run `exposure data prepare` first") from None
    pairs: list[Pair] = []
    lines = list(_lines(path, data))
    if lines and lines[-1][1] == "":
        lines.pop()  # the final newline
    for lineno, line in lines:
        fields = line.split("\t")
        if len(fields) != 2:
            raise UserError(f"{path}:{lineno}: expected 2 tab-separated fields (title, content), found {len(fields)}")
        title, content = fields[0].strip(), fields[1].strip()
        if not title or not content:
            raise UserError(f"{path}:{lineno}: empty {'title' if not title else 'content'}")
        pairs.append(Pair(source=content, target=title))
    return pairs
