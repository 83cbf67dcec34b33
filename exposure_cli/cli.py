"""The `exposure` command line: one sub-command per user task, each a thin layer over a module."""

from __future__ import annotations

import json
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
    "decode with beam search, score, and tabulate.\n\n"
    "A typical session: `exposure data fetch`, `exposure data prepare`, then "
    "`exposure run experiments/csl.yaml`. Each command's --help says more.",
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


def _version(value: bool) -> None:
    if value:
        from . import __version__

        console.print(f"exposure {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Exposure-bias experiments for UniLM seq2seq models."""


def main() -> None:
    """Console-script entry point."""
    app()


@app.command()
def run(
    spec: str = typer.Argument(..., help="Experiment spec (YAML), e.g. experiments/csl.yaml."),
    out: str = typer.Option(None, "--out", "-o", help="Output directory; default runs/<spec name>."),
    set_: list[str] = typer.Option([], "--set", help="Override a spec key, e.g. --set train.epochs=2 (repeatable)."),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:N, or auto (CUDA when available)."),
    threads: int = typer.Option(0, min=0, help="CPU threads for torch; 0 keeps torch's default (every core). "
                                "On a machine shared with other busy processes, 1 is often several times faster."),
):
    """Run every method × seed of a spec, then write summary.json, table.md and table.csv.

    Each run lives in OUT/<method>/seed<N>/. A finished run (metrics.json present) is skipped on a rerun; an interrupted one resumes from its last finished epoch.
    """
    from . import report
    from .runner import run_spec
    from .spec import load_spec
    from .train import resolve_device

    s = load_spec(spec, set_)
    if threads:
        import torch

        torch.set_num_threads(threads)
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


@app.command(
    help="Score predictions against references.\n\n"
    "Study mode (Rouge-L, Rouge-1, Rouge-2, BLEU) reproduces the study's scripts exactly: each text "
    "is split into characters joined by spaces and lower-cased, then scored as `rouge==1.0.0` and "
    "nltk's sentence_bleu (method1 smoothing) score it, averaged over examples; an empty prediction "
    "scores 0. The standard scorers beside it, for comparison with other work, are sacrebleu's corpus "
    "BLEU (tokenize=zh) and rouge-score's Rouge-L F over characters.\n\n"
    "--pred and --ref are text files with one text per line, or a run's predictions.beam{k}.tsv "
    "(prediction column for --pred, reference column for --ref). Given such a TSV, --ref may be "
    "left out to use its own reference column. All scores are x100."
)
def score(
    pred: Path = typer.Option(..., "--pred", help="Predictions: one per line, or a predictions TSV."),
    ref: Optional[Path] = typer.Option(None, "--ref", help="References: one per line, or a predictions TSV."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    from . import metrics
    from .predictions import read_texts

    preds, pred_is_tsv = read_texts(pred, "prediction")
    if ref is None:
        if not pred_is_tsv:
            raise UserError(f"--ref is required: {pred} is not a predictions TSV with a reference column")
        ref_path, refs = pred, read_texts(pred, "reference")[0]
    else:
        ref_path, refs = ref, read_texts(ref, "reference")[0]
    if len(preds) != len(refs):
        raise UserError(f"{pred} has {len(preds)} predictions but {ref_path} has {len(refs)} references")
    if not preds:
        raise UserError(f"{pred}: nothing to score")

    result = metrics.study_scores(preds, refs)
    result.update(metrics.standard_scores(preds, refs))
    keys = ["rouge_l", "rouge_1", "rouge_2", "bleu", "sacrebleu", "rouge_score_l", "n"]
    if as_json:
        typer.echo(json.dumps({k: result[k] for k in keys}))
        return
    table = Table(title=f"{pred} ({result['n']} examples)")
    table.add_column("metric")
    table.add_column("score", justify="right")
    table.add_column("scorer")
    for key, label, scorer in [
        ("rouge_l", "Rouge-L", "study"),
        ("rouge_1", "Rouge-1", "study"),
        ("rouge_2", "Rouge-2", "study"),
        ("bleu", "BLEU", "study"),
        ("sacrebleu", "BLEU", "sacrebleu, tokenize=zh"),
        ("rouge_score_l", "Rouge-L", "rouge-score, characters"),
    ]:
        table.add_row(label, f"{result[key]:.2f}", scorer)
    console.print(table)


@bench_app.command(
    "score",
    help="Time study-mode scoring against rouge==1.0.0 + nltk (what the study ran) on the same n "
    "deterministic pairs: titles against perturbed copies. Needs `pip install rouge==1.0.0 nltk`.",
)
def bench_score(
    n: int = typer.Option(1000, "--n", min=1, help="Number of (prediction, reference) pairs."),
    titles: Optional[Path] = typer.Option(
        None, "--titles", help="Take references from the first column of this TSV instead of built-in synthetic titles."
    ),
    repeat: int = typer.Option(3, "--repeat", min=1, help="Best of this many timings per side."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    from .bench_score import bench_score as run
    from .predictions import read_lines

    title_list = None
    if titles is not None:
        title_list = [line.split("\t")[0] for line in read_lines(titles) if line.split("\t")[0].strip()]
        if not title_list:
            raise UserError(f"{titles}: no titles in the first column")
    result = run(n=n, repeat=repeat, titles=title_list)
    if as_json:
        typer.echo(json.dumps({k: result[k] for k in ("ours_s", "reference_s", "ratio", "n")}))
        return
    table = Table(title=f"study-mode scoring, {n} pairs (best of {repeat})")
    table.add_column("implementation")
    table.add_column("seconds", justify="right")
    table.add_row("exposure (ours)", f"{result['ours_s']:.4f}")
    table.add_row("rouge 1.0.0 + nltk", f"{result['reference_s']:.4f}")
    console.print(table)
    console.print(f"ratio {result['ratio']:.1f}x; largest per-example difference {result['max_abs_diff']:.2g}")


def _check_strategy(strategy: str) -> None:
    from .decode import STRATEGIES

    if strategy not in STRATEGIES:
        raise UserError(f"--strategy: expected one of {', '.join(STRATEGIES)}, got {strategy!r}")


@app.command()
def generate(
    run_dir: Path = typer.Argument(..., help="A run directory holding spec.yaml, vocab.txt and best.pt."),
    beam: Optional[int] = typer.Option(None, "--beam", "-k", min=1, help="Beam size; default the largest of the spec's decode.beams."),
    n_best: int = typer.Option(1, "--n-best", "-n", min=1,
                               help="Hypotheses per source. With N > 1 each output line holds up to N predictions, "
                               "best first, separated by tabs (fewer when the search found fewer)."),
    input_: str = typer.Option("-", "--input", "-i", help="Sources, one per line; - reads standard input."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write predictions here (default standard output)."),
    strategy: Optional[str] = typer.Option(None, "--strategy", help="study or standard; default the spec's decode.strategy."),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:N, or auto (CUDA when available)."),
):
    """Decode sources with a run's selected weights (best.pt): one output line per input line."""
    import sys

    from . import fileio
    from .generate import generate_lines, load_run
    from .train import resolve_device

    if strategy is not None:
        _check_strategy(strategy)
    dev = resolve_device(device)
    model, tok, spec = load_run(run_dir, dev)
    k = beam or max(spec.decode.beams)
    if (strategy or spec.decode.strategy) == "standard" and n_best > k:
        raise UserError(f"--n-best {n_best}: at most the beam ({k}) with the standard strategy")
    text = sys.stdin.read() if input_ == "-" else fileio.read_text(input_, "input file")
    sources = text.splitlines()
    lines = generate_lines(model, tok, spec, sources, k, n_best, dev, strategy)
    out = "".join(line + "\n" for line in lines)
    if output is None:
        sys.stdout.write(out)
    else:
        fileio.write_text(output, out)
        err_console.print(f"{len(lines)} predictions (beam {k}) → {output}", highlight=False)


@app.command()
def demo(
    strategy: str = typer.Option("study", "--strategy", help="study (the article's search) or standard."),
):
    """Walk through the article's example of beam search going wrong: beam 1 outputs the target (a, b),
    beam 2 the wrong (c, d), step by step."""
    from .demo import render

    _check_strategy(strategy)
    render(console, strategy=strategy)


@bench_app.command("decode")
def bench_decode(
    json_: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
    n: int = typer.Option(32, "--n", min=1, help="Prompts decoded by ours and by transformers."),
    beam: int = typer.Option(3, "--beam", min=1),
    source_len: int = typer.Option(256, "--source-len", min=1, help="Source tokens per prompt (plus [CLS] and [SEP])."),
    max_len: int = typer.Option(32, "--max-len", min=1, help="Generated tokens at most."),
    naive_n: int = typer.Option(4, "--naive-n", min=1, help="Prompts for the slow full-recompute reference (it is slow)."),
    threads: int = typer.Option(1, "--threads", min=0,
                                help="torch threads for all three (0 = torch's default). One thread gives stable "
                                "numbers on a shared machine, where small multi-threaded ops wait on busy cores."),
    hf: bool = typer.Option(True, "--hf/--no-hf", help="Include transformers' generate (needs the test extra)."),
):
    """Beam-search speed on CPU: ours (cached, batched) vs the full-recompute reference vs
    transformers' generate(num_beams=k) on a same-size BertLMHeadModel, random weights, same prompts."""
    from .bench_decode import bench_decode as run_bench

    r = run_bench(n=n, beam=beam, source_len=source_len, max_len=max_len, naive_n=naive_n, threads=threads or None,
                  hf=hf)
    if json_:
        print(json.dumps(r))
        return
    table = Table(title=f"beam {beam}, source {source_len} tokens, ≤{max_len} generated, model {r['model']}, "
                        f"{r['threads']} thread(s)")
    table.add_column("implementation")
    table.add_column("samples/s", justify="right")
    table.add_column("tokens/sample", justify="right")
    table.add_column("ours is ×", justify="right")
    table.add_row("ours (cached, batched)", f"{r['ours_samples_per_s']:.2f}", f"{r['ours_tokens_per_sample']:.1f}", "")
    table.add_row(f"naive recompute ({r['naive_n']} prompts)", f"{r['naive_samples_per_s']:.3f}",
                  f"{r['naive_tokens_per_sample']:.1f}", f"{r['ratio_vs_naive']:.1f}")
    if "hf_samples_per_s" in r:
        table.add_row("transformers generate", f"{r['hf_samples_per_s']:.2f}", f"{r['hf_tokens_per_sample']:.1f}",
                      f"{r['ratio_vs_hf']:.1f}")
    console.print(table)


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
