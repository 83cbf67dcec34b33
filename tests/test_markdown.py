"""Every markdown table the project writes is well formed: the summary, paper, runs and diagnostics
tables, as the writers make them and as they are committed in results/. A table's header, its
delimiter row and every row have the same number of cells, an escaped pipe (\\|) inside a cell
not counted as a separator; and markdown-it (a CommonMark parser with GFM tables, which refuses a
table whose header and delimiter rows disagree) finds every table block as a table."""

import json
import re
from pathlib import Path

from markdown_it import MarkdownIt
from typer.testing import CliRunner

from exposure_cli import diagnose as dg
from exposure_cli.report import summary as report
from exposure_cli.report import tables
from exposure_cli.cli import app
from exposure_cli.report.tables import Col, Matrix

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _cells(line: str) -> list[str]:
    """A table line's cells: split at the pipes that are not escaped."""
    return re.split(r"(?<!\\)\|", line.strip()[1:-1])


def check_tables(text: str, where: str) -> int:
    """Assert that every table in `text` is well formed; returns how many there are."""
    blocks, block = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            block.append(line)
        elif block:
            blocks.append(block)
            block = []
    for b in blocks:
        widths = [len(_cells(line)) for line in b]
        assert len(b) >= 2 and set(_cells(b[1])) <= {"---"}, f"{where}: no delimiter row under {b[0]}"
        assert len(set(widths)) == 1, f"{where}: cells per row {widths} in the table headed {b[0]}"
    parsed = sum(t.type == "table_open" for t in MarkdownIt("commonmark").enable("table").parse(text))
    assert parsed == len(blocks), f"{where}: markdown-it reads {parsed} of the {len(blocks)} tables"
    return len(blocks)


def test_the_parser_catches_a_literal_pipe_and_accepts_an_escaped_one():
    good = "| a | b \\| c |\n|---|---|\n| 1 | 2 |\n"
    assert check_tables(good, "good") == 1
    for bad in ("| a | b | c |\n|---|---|\n| 1 | 2 |\n", "| a | b |\n|---|---|\n| 1 | 2 | 3 |\n"):
        try:
            check_tables(bad, "bad")
        except AssertionError:
            continue
        raise AssertionError(f"not caught: {bad!r}")


def test_the_markdown_writer_escapes_pipes_in_headers_and_cells():
    mx = Matrix("t", [Col("k", "key"), Col("v", "ΔRL | curse", "text", "g")], [{"k": "a|b", "v": "x"}])
    md = tables.markdown(mx)
    assert "| ΔRL \\| curse |" in md and "| a\\|b | x |" in md
    assert check_tables(md, "writer") == 1


def test_summary_paper_and_runs_tables(fake_runs):
    summary = report.load_summary(fake_runs)
    seconds = [{"method": "baseline", "seed": 0, "train_seconds": 1.5, "dev_seconds": 0.5, "eval_seconds": 2.0}]
    texts = {"table.md": (fake_runs / "table.md").read_text(encoding="utf-8"),
             "summary": tables.markdown(tables.summary_matrix(summary)),
             "runs": tables.markdown(tables.runs_matrix(summary, seconds))}
    for paper in ("csl", "lcsts"):
        texts[paper] = tables.markdown(tables.paper_matrix(summary, paper))
    for args in (["--runs"], ["--paper", "csl", "--runs"]):
        r = runner.invoke(app, ["table", str(fake_runs), *args])
        assert r.exit_code == 0, r.output
        texts[" ".join(args)] = r.stdout
    for where, text in texts.items():
        assert check_tables(text, where) >= 1, where


def test_diagnostics_tables_and_every_committed_table():
    agg = json.loads((ROOT / "results/csl-cpu-diagnostics.json").read_text(encoding="utf-8"))
    o = {k: v for k, v in agg["options"].items() if k in dg.Options.__dataclass_fields__}  # older runs: n_resamples
    opts = dg.Options(**{**o, "beams": tuple(o["beams"]), "errors": tuple(o["errors"])})
    md = "\n".join(tables.markdown(mx) for mx in dg.matrices(agg, opts))
    assert "ΔRL \\| curse" in md
    assert check_tables(md, "diagnostics") == 7  # 4 per method (3 groups + Δ), 3 per beam (2 + Δ)
    for path in sorted((ROOT / "results").glob("*.md")):
        assert check_tables(path.read_text(encoding="utf-8"), str(path)) >= 1
