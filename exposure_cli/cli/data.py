"""`exposure data fetch` and `exposure data prepare`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .app import app, console, err_console

data_app = typer.Typer(
    help="Fetch the upstream files and build the train/dev/test splits.\n\n"
    "Typical use: `exposure data fetch` (downloads the files pinned in data/MANIFEST.tsv, about 7 MB, into data/raw), then "
    "`exposure data prepare` (writes data/csl/*.tsv and data/lcsts/*.tsv).",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")


@data_app.command(
    "fetch",
    help="Get the upstream CSL and LCSTS files listed in the manifest.\n\n"
    "Files come from the CLGE benchmark (github.com/CLUEbenchmark/CLGE) and the CSL benchmark "
    "(github.com/ydli-ai/CSL), each pinned in the manifest to a commit URL, a sha256 and a size. "
    "Every file is checked; a mismatch stops with an error and leaves nothing at the destination. "
    "Files already present with the right hash are skipped, so re-running resumes an interrupted fetch.",
)
def data_fetch(
    out: Path = typer.Option(Path("data/raw"), "--out", help="Folder to put the raw files in (created if needed)."),
    mirror: Optional[Path] = typer.Option(
        None,
        "--mirror",
        envvar="EXPOSURE_DATA_MIRROR",
        help="Copy from this local folder instead of downloading: it must hold the same files at the "
        "same relative paths as the manifest (e.g. MIRROR/clge/csl/val.tsv), such as another "
        "checkout's data/raw. Useful offline or on a cluster without internet. Hashes are checked "
        "just the same. Defaults to $EXPOSURE_DATA_MIRROR.",
        show_default=False,
    ),
    manifest: Path = typer.Option(
        Path("data/MANIFEST.tsv"), "--manifest", help="Tab-separated list of files: path, sha256, bytes, upstream URL."
    ),
) -> None:
    from ..data import fetch

    paths = fetch(manifest, out, mirror)
    source = f"mirror {mirror}" if mirror is not None else "upstream"
    console.print(f"{len(paths)} files verified in {out} (source: {source})", highlight=False)


@data_app.command(
    "prepare",
    help="Build the CSL and LCSTS train/dev/test splits from the raw files.\n\n"
    "Writes OUT/csl/{train,dev,test}.tsv and OUT/lcsts/{train,dev,test}.tsv, one title<TAB>content "
    "pair per line, deduplicated, with any pair sharing a title or content with dev/test removed "
    "from train. The same raw files always give byte-identical splits. Raw lines that do not fit "
    "the expected format are skipped and listed as warnings with file and line.",
)
def data_prepare(
    raw: Path = typer.Option(Path("data/raw"), "--raw", help="Folder holding the fetched raw files."),
    out: Path = typer.Option(Path("data"), "--out", help="Folder to write csl/ and lcsts/ split files into."),
) -> None:
    from ..data import prepare

    result = prepare(raw, out)
    for problem in result["problems"]:
        err_console.print(f"[yellow]warning:[/] {problem}", highlight=False, soft_wrap=True)
    table = Table(title=f"splits written to {out}")
    table.add_column("task")
    for split in ("train", "dev", "test"):
        table.add_column(split, justify="right")
    for task, counts in result["counts"].items():
        table.add_row(task, *(str(counts[s]) for s in ("train", "dev", "test")))
    console.print(table)
