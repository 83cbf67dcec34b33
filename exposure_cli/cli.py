"""The `exposure` command line: one sub-command per user task, each a thin layer over a module."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from .errors import UserError

console = Console()
err_console = Console(stderr=True)


class _Group(TyperGroup):
    """Turns a UserError anywhere below into one line on stderr and exit code 2, no traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as e:
            err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
            ctx.exit(2)


app = typer.Typer(
    cls=_Group,
    help="Exposure-bias experiments for UniLM seq2seq models: prepare data, train with a method, "
    "decode with beam search, score, and tabulate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(
    help="Fetch the upstream files and build the train/dev/test splits.\n\n"
    "Typical use: `exposure data fetch` (downloads the files pinned in data/MANIFEST.tsv, about 7 MB, into data/raw), then "
    "`exposure data prepare` (writes data/csl/*.tsv and data/lcsts/*.tsv).",
    no_args_is_help=True,
)
bench_app = typer.Typer(help="Benchmarks that print speed ratios against a peer implementation.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(bench_app, name="bench")


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
    from .data import fetch

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
    from .data import prepare

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


def main() -> None:
    """Console-script entry point."""
    app()


@app.command()
def run(
    spec: str = typer.Argument(..., help="Experiment spec (YAML), e.g. experiments/csl.yaml."),
    out: str = typer.Option(None, "--out", "-o", help="Output directory; default runs/<spec name>."),
    set_: list[str] = typer.Option([], "--set", help="Override a spec key, e.g. --set train.epochs=2 (repeatable)."),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:N, or auto (CUDA when available)."),
):
    """Run every method × seed of a spec, then write summary.json, table.md and table.csv.

    Each run lives in OUT/<method>/seed<N>/. A finished run (metrics.json present) is skipped on
    a rerun; an interrupted one resumes from its last finished epoch.
    """
    from . import report
    from .runner import run_spec
    from .spec import load_spec
    from .train import resolve_device

    s = load_spec(spec, set_)
    out_dir = Path(out or f"runs/{s.name}")
    dev = resolve_device(device)
    console.print(f"[bold]{s.name}[/]: {len(s.methods)} method(s) × {len(s.train.seeds)} seed(s) on {dev} → {out_dir}")
    summary = run_spec(s, out_dir, dev, console)
    console.print(report.rich_table(summary))


@app.command()
def compare(
    run_dir: str = typer.Argument(..., help="A run output directory (with summary.json) or a summary.json."),
    reference: str = typer.Argument(..., help="The reference summary.json, e.g. results/smoke.json."),
    tol: float = typer.Option(0.5, help="Largest allowed difference of a cell, in ×100 points."),
):
    """Check a run's table against a committed reference: exit 1 and list every cell that drifted."""
    from . import report

    problems = report.compare(report.load_summary(run_dir), report.load_summary(reference), tol)
    if problems:
        for p in problems:
            console.print(f"[red]✗[/] {p}", highlight=False)
        raise typer.Exit(1)
    console.print(f"[green]✓[/] every cell within {tol} of {reference}")


@bench_app.command("train")
def bench_train(
    batch_size: int = typer.Option(16, "--batch-size", help="Examples in the benchmark batch."),
    steps: int = typer.Option(5, "--steps", help="Timed steps per contestant, after one warm-up step; the median counts."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
    data: str = typer.Option("data/csl/train.tsv", "--data",
                             help="Training split to take the batch from (its first examples); synthetic if missing."),
    method: list[str] = typer.Option([], "--method", help="Only these methods (repeatable); default every registered one."),
    hidden: Optional[int] = typer.Option(None, help="Model width; default the spec default."),
    layers: Optional[int] = typer.Option(None, help="Model depth; default the spec default."),
    heads: Optional[int] = typer.Option(None, help="Attention heads; default the spec default."),
    hf: bool = typer.Option(True, "--hf/--no-hf", help="Also time transformers' BertForMaskedLM on the same batch."),
    threads: Optional[int] = typer.Option(None, "--threads",
                                          help="torch CPU threads; default torch's. On a busy shared machine 1 is steadier."),
) -> None:
    """Time a training step (forward, backward, optimizer) of each method against baseline, and our
    baseline's tokens/s against Hugging Face transformers' BertForMaskedLM of the same size, same
    batch, same UniLM mask, both under bf16 autocast on the CPU."""
    import json

    from .bench_train import bench_train as run_bench
    from .methods import available

    unknown = [m for m in method if m not in available()]
    if unknown:
        raise UserError(f"--method: unknown method {unknown[0]!r} (available: {', '.join(available())})")
    if batch_size < 1 or steps < 1 or (threads is not None and threads < 1):
        raise UserError("--batch-size, --steps and --threads: expected at least 1")
    res = run_bench(batch_size, steps, data, method or None, hidden, layers, heads, hf, threads=threads)
    if json_out:
        typer.echo(json.dumps(res))
        return
    console.print(f"batch: {res['batch']}, {res['batch_size']} × {res['seq_len']} ({res['tokens']} tokens), "
                  f"model {res['model']}, {res['threads']} threads, median of {res['steps']} steps", highlight=False)
    t = Table(title="training step time relative to baseline (bf16 autocast, CPU)")
    t.add_column("method")
    t.add_column("seconds/step", justify="right")
    t.add_column("× baseline", justify="right")
    for name, r in res["step_ratio"].items():
        t.add_row(name, f"{res['step_seconds'][name]:.3f}", f"{r:.2f}")
    console.print(t)
    if hf:
        console.print(f"tokens/s: ours {res['tokens_per_s']:,.0f}, transformers BertForMaskedLM "
                      f"{res['hf_tokens_per_s']:,.0f} → {res['ratio_vs_hf']:.2f}×", highlight=False)
