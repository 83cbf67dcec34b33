"""`exposure bench train|decode|score`: speed against a peer, as ratios measured in the same run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..errors import UserError
from .app import app, console

bench_app = typer.Typer(help="Benchmarks that print speed ratios against a peer implementation.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


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
    from ..bench.score import bench_score as run
    from ..decode.predictions import read_lines

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
    transformers' generate(num_beams=k) on a same-size BertLMHeadModel, random weights, same prompts.
    Also ours as a share of the same-thread matmul peak: its matrix-multiply FLOPs per sample
    (counted over a second decode) × samples/s, over the best GFLOP/s of fp32 products of the
    decoder's shapes measured in the same run."""
    from ..bench.decode import bench_decode as run_bench

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
        table.add_row(f"transformers {r['hf_version']} generate", f"{r['hf_samples_per_s']:.2f}",
                      f"{r['hf_tokens_per_sample']:.1f}", f"{r['ratio_vs_hf']:.1f}")
    console.print(table)
    console.print(f"ours: {r['ours_flops_per_sample'] / 1e9:.2f} GFLOP (matmul) per sample, "
                  f"{r['ours_gflops']:.1f} GFLOP/s = {r['share_of_peak']:.0%} of the same-thread matmul peak "
                  f"({r['matmul_peak_gflops']:.1f} GFLOP/s)", highlight=False)


@bench_app.command("train")
def bench_train(
    batch_size: int = typer.Option(16, "--batch-size", help="Examples in the benchmark batch."),
    steps: int = typer.Option(5, "--steps", help="Timed steps per contestant, after one warm-up step; the median counts."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
    data: str = typer.Option("data/csl/train.tsv", "--data",
                             help="Training split to take the batch from (its first examples); it must exist."),
    synthetic: bool = typer.Option(False, "--synthetic", help="Time a synthetic batch (random ids) instead of --data."),
    method: list[str] = typer.Option([], "--method", help="Only these methods (repeatable); default every registered one."),
    hidden: Optional[int] = typer.Option(None, min=1, help="Model width; default 256 (the scratch default)."),
    layers: Optional[int] = typer.Option(None, min=1, help="Model depth; default 4."),
    heads: Optional[int] = typer.Option(None, min=1, help="Attention heads; default 4."),
    hf: bool = typer.Option(True, "--hf/--no-hf", help="Also time transformers' BertForMaskedLM on the same batch."),
    threads: Optional[int] = typer.Option(None, "--threads",
                                          help="torch CPU threads; default torch's. On a busy shared machine 1 is steadier."),
    bf16: bool = typer.Option(True, "--bf16/--fp32", help="bf16 autocast (the spec default) or plain fp32 for "
                              "every contestant. Which is faster depends on the CPU: bf16 matrix units (AMX) "
                              "make it about 2x faster; without them fp32 can win."),
) -> None:
    """Time a training step (forward, backward, optimizer) of each method against baseline, and our
    baseline's tokens/s against Hugging Face transformers' BertForMaskedLM of the same size, same
    batch, same UniLM mask, both under bf16 autocast on the CPU."""
    from ..bench.train import bench_train as run_bench
    from ..methods import METHODS

    for m in method:
        METHODS.get(m, "--method")
    if batch_size < 1 or steps < 1 or (threads is not None and threads < 1):
        raise UserError("--batch-size, --steps and --threads: expected at least 1")
    if (hidden or 256) % (heads or 4):
        raise UserError(f"--hidden {hidden or 256}: expected a multiple of --heads ({heads or 4})")
    res = run_bench(batch_size, steps, None if synthetic else data, method or None, hidden, layers, heads, hf,
                    threads=threads, bf16=bf16)
    if json_out:
        typer.echo(json.dumps(res))
        return
    console.print(f"batch: {res['batch']}, {res['batch_size']} × {res['seq_len']} ({res['tokens']} tokens), "
                  f"model {res['model']}, {res['threads']} threads, median of {res['steps']} steps", highlight=False)
    t = Table(title=f"training step time relative to baseline ({res['precision']}, CPU)")
    t.add_column("method")
    t.add_column("seconds/step", justify="right")
    t.add_column("× baseline", justify="right")
    for name, r in res["step_ratio"].items():
        t.add_row(name, f"{res['step_seconds'][name]:.3f}", f"{r:.2f}")
    console.print(t)
    if hf:
        console.print(f"tokens/s: ours {res['tokens_per_s']:,.0f}, transformers BertForMaskedLM "
                      f"{res['hf_tokens_per_s']:,.0f} → {res['ratio_vs_hf']:.2f}×", highlight=False)


@bench_app.command("grid")
def bench_grid(
    spec: str = typer.Option("smoke.yaml", "--spec", help="The grid's spec (a path or a packaged name)."),
    set_: list[str] = typer.Option(["train.epochs=1", "methods=[baseline, random_replace]", "train.seeds=[0, 1]"],
                                   "--set", help="Overrides of the spec (repeatable); the default makes a 4-run grid "
                                   "of about a minute per executor here."),
    executors: str = typer.Option("serial,pool", "--executors", help="Comma-separated: serial (one run at a time, "
                                  "1 thread), serial2 (one at a time, 2 threads), pool (--jobs 2, 1 thread each), "
                                  "ray (a local Ray instance, 1 CPU a run; its start-up is counted)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Runs per hour of each executor on the same small grid, each from a fresh `exposure run`,
    and whether their summaries agree byte for byte (every executor but serial2 gives a run one thread)."""
    from ..bench.grid import bench_grid as run_bench

    res = run_bench(spec, set_, [e.strip() for e in executors.split(",") if e.strip()])
    if json_out:
        typer.echo(json.dumps(res))
        return
    t = Table(title=f"grid of {spec} with {' '.join(set_)}")
    for col in ("executor", "runs", "seconds", "runs/hour", "× serial"):
        t.add_column(col, justify="left" if col == "executor" else "right")
    for name, r in res["executors"].items():
        t.add_row(name, str(r["runs"]), f"{r['seconds']:.1f}", f"{r['runs_per_hour']:.1f}",
                  f"{r.get('speedup_vs_serial', 1.0):.2f}")
    console.print(t)
    console.print(("same summary from every 1-thread executor" if res["same_summary"]
                   else "[red]the summaries differ between executors[/]"), highlight=False)
