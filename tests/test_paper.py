"""`exposure table --paper`: the article's numbers as shipped equal REFERENCE.md's, every cell and
difference of the side-by-side table is checked against them and against our summary, and every
--format parses to the same content."""

import csv
import io
import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from exposure_cli.report import paper
from exposure_cli.report import summary as report
from exposure_cli.report import tables
from exposure_cli.cli import app

runner = CliRunner()
ORDER = ["rouge_l", "rouge_1", "rouge_2", "bleu"]  # REFERENCE.md's column order
ARTICLE_NAMES = {"baseline": "baseline", "random replacement": "random_replace", "gradient penalty": "gradient_penalty"}


def reference_tables(text: str) -> dict:
    """The two tables of REFERENCE.md, parsed here from the markdown."""
    out = {}
    for name, heading in (("csl", "CSL title generation"), ("lcsts", "LCSTS summarisation")):
        block = text.split(heading + "\n", 1)[1].split("\n\n", 1)[0]
        rows = {}
        for line in block.splitlines()[2:]:
            method, beam, *values = [c.strip() for c in line.strip("|").split("|")]
            rows[(ARTICLE_NAMES[method], int(beam))] = tuple(float(v) for v in values)
        out[name] = rows
    return out


def test_shipped_tables_and_anchors_are_reference_md(shared_data):
    path = shared_data.parent / "REFERENCE.md"
    if not path.is_file():
        pytest.skip(f"{path}: not here")
    text = path.read_text(encoding="utf-8")
    assert paper.TABLES == reference_tables(text)
    flat = " ".join(text.split())
    for label, key in (("BERT-base UniLM (CLGE)", "UniLM"), ("LSTM seq2seq from scratch (CLGE)", "from scratch")):
        m = re.search(re.escape(key) + r" ([\d.]+) / ([\d.]+) / ([\d.]+) / ([\d.]+)", flat)
        assert paper.ANCHORS["csl"][label] == tuple(float(v) for v in m.groups())


def test_article_cells_and_deltas_by_hand():
    assert paper.article_cell("csl", "gradient_penalty", 1) == {"rouge_l": 60.79, "rouge_1": 64.91, "rouge_2": 52.54,
                                                                "bleu": 42.81}
    # 60.79 − 59.27, 43.45 − 42.46, 17.89 − 18.14, 27.79 − 27.87
    assert paper.article_delta("csl", "gradient_penalty", 1)["rouge_l"] == 1.52
    assert paper.article_delta("csl", "random_replace", 3)["bleu"] == 0.99
    assert paper.article_delta("lcsts", "random_replace", 1)["rouge_2"] == -0.25
    assert paper.article_delta("lcsts", "gradient_penalty", 3)["rouge_l"] == -0.08
    assert paper.article_delta("csl", "baseline", 1) is None and paper.article_cell("csl", "scheduled_sampling", 1) is None
    assert paper.guess_paper("lcsts-small") == "lcsts" and paper.guess_paper("csl") == "csl"
    assert paper.guess_paper("smoke") is None


def _md_tables(md: str) -> list[list[dict]]:
    """Each markdown table as a list of {header: cell} rows."""
    tables = []
    for block in md.split("\n\n"):
        lines = [line for line in block.splitlines() if line.startswith("|")]
        if not lines:
            continue
        head = [c.strip() for c in lines[0].strip("|").split("|")]
        tables.append([dict(zip(head, [c.strip() for c in line.strip("|").split("|")])) for line in lines[2:]])
    return tables


def _expected(summary, row, name, m):
    """What the side-by-side row must say for metric m, from the summary and the shipped article table."""
    method = row["method"].partition("(")[0]
    ours = next(r for r in summary["rows"] if r["method"] == row["method"] and r["beam"] == int(row["beam"]))
    article = paper.TABLES[name].get((method, int(row["beam"])))
    base = paper.TABLES[name].get(("baseline", int(row["beam"])))
    k = ORDER.index(m)
    d_article = round(article[k] - base[k], 2) if article and method != "baseline" else None
    d_ours = ours.get("vs_baseline", {}).get(m)
    return ours, article, d_article, d_ours


@pytest.mark.parametrize("name", ["csl", "lcsts"])
def test_table_paper_markdown_cells_deltas_and_signs(fake_runs, name):
    summary = report.load_summary(fake_runs)
    r = runner.invoke(app, ["table", str(fake_runs), "--paper", name])
    assert r.exit_code == 0, r.output
    tables = _md_tables(r.stdout)
    assert len(tables) == 4 and all(len(t) == len(summary["rows"]) == 12 for t in tables)
    for m, table in zip(ORDER, tables):
        h = report.HEADERS[m]
        for row in table:
            ours, article, d_article, d_ours = _expected(summary, row, name, m)
            assert row[f"{h} ours"] == f"{ours[m]:.2f} ± {ours[m + '_std']:.2f}"
            assert row[f"{h} article"] == (f"{article[ORDER.index(m)]:.2f}" if article else "")
            assert row[f"Δ {h} article"] == (f"{d_article:+.2f}" if d_article is not None else "")
            assert row[f"Δ {h} ours"].startswith(f"{d_ours['diff']:+.2f} [" if d_ours else "")
            agree = "" if d_ours is None or d_article is None else \
                ("yes" if np.sign(d_ours["diff"]) == np.sign(d_article) else "no")
            assert row["signs agree"] == agree
    first = {(row["method"], row["beam"]): row for row in tables[0]}
    assert first[("random_replace(pool=sequence)", "1")]["article method"] == "random replacement"
    assert first[("scheduled_sampling", "1")]["article method"] == ""
    if name == "lcsts":  # the article's gradient penalty lost to baseline there; ours won
        assert first[("gradient_penalty", "3")]["Δ Rouge-L article"] == "-0.08"
        assert first[("gradient_penalty", "3")]["signs agree"] == "no"
    else:
        assert "BERT-base UniLM (CLGE) 59.76 / 63.83 / 51.29 / 41.45" in r.stdout


def test_every_format_parses_to_the_same_matrix(fake_runs, tmp_path):
    summary = report.load_summary(fake_runs)
    out = {}
    for fmt in ("md", "csv", "json", "latex"):
        r = runner.invoke(app, ["table", str(fake_runs), "--paper", "csl", "--format", fmt])
        assert r.exit_code == 0, r.output
        out[fmt] = r.stdout
        # --output writes the same text to a file instead of printing it
        target = tmp_path / f"t.{fmt}"
        w = runner.invoke(app, ["table", str(fake_runs), "--paper", "csl", "-f", fmt, "--output", str(target)])
        assert w.exit_code == 0 and w.stdout == "" and target.read_text(encoding="utf-8") == r.stdout

    doc = json.loads(out["json"])
    assert doc["paper"] == "csl" and doc["anchors"]["BERT-base UniLM (CLGE)"]["rouge_l"] == 59.76
    assert len(doc["rows"]) == 12
    gp1 = next(x for x in doc["rows"] if x["method"] == "gradient_penalty" and x["beam"] == 1)
    assert gp1["paper_rouge_l"] == 60.79 and gp1["paper_d_rouge_l"] == 1.52
    ours = next(x for x in summary["rows"] if x["method"] == "gradient_penalty" and x["beam"] == 1)
    assert gp1["rouge_l"]["mean"] == ours["rouge_l"] and gp1["d_rouge_l"] == ours["vs_baseline"]["rouge_l"]

    rows = list(csv.DictReader(io.StringIO(out["csv"])))
    assert len(rows) == 12
    c = next(x for x in rows if x["method"] == "gradient_penalty" and x["beam"] == "1")
    assert float(c["paper_rouge_l"]) == 60.79 and float(c["paper_d_rouge_l"]) == 1.52
    assert float(c["rouge_l"]) == ours["rouge_l"] and float(c["d_rouge_l_lo"]) == ours["vs_baseline"]["rouge_l"]["lo"]
    assert c["signs_agree_rouge_l"] == "True"

    tex = out["latex"]
    blocks = tex.split(r"\begin{tabular}")[1:]
    assert len(blocks) == 4
    for block in blocks:
        body = block.split(r"\midrule")[1].split(r"\bottomrule")[0]
        lines = [line for line in body.splitlines() if line.strip()]
        assert len(lines) == 12 and all(line.endswith(r"\\") and line.count("&") == 7 for line in lines)
        assert r"\toprule" in block and r"\end{tabular}" in block
    assert r"gradient\_penalty & gradient penalty & 1 &" in tex and "60.79" in tex


def test_table_alone_is_the_experiment_table(fake_runs):
    for fmt, name in (("md", "table.md"), ("csv", "table.csv")):
        r = runner.invoke(app, ["table", str(fake_runs / "summary.json"), "--format", fmt])
        assert r.exit_code == 0 and r.stdout == (fake_runs / name).read_text(encoding="utf-8")
    r = runner.invoke(app, ["table", str(fake_runs), "--format", "json"])
    assert json.loads(r.stdout) == json.loads((fake_runs / "summary.json").read_text(encoding="utf-8"))
    r = runner.invoke(app, ["table", str(fake_runs), "--format", "latex"])
    assert r.exit_code == 0 and r"\toprule" in r.stdout


def test_article_rows_we_did_not_run_still_show():
    s = report.summarize("csl", [{"method": "baseline", "seed": 0, "test": {"1": {m: 40.0 for m in ORDER}}}],
                         ["baseline"], [1])
    mx = tables.paper_matrix(s, "csl")
    assert [(r["method"], r["article_method"], r["beam"]) for r in mx.rows][:3] == [
        ("baseline", "baseline", 1), ("(not run)", "random replacement", 1), ("(not run)", "gradient penalty", 1)]
    assert len(mx.rows) == 9 and mx.rows[1]["paper_rouge_l"] == 60.02 and mx.rows[1]["agree_rouge_l"] is None


@pytest.mark.parametrize("args, message", [
    (["--paper", "xsum"], "--paper xsum: expected one of csl, lcsts"),
    (["--format", "html"], "--format html: expected one of md, csv, latex, json"),
])
def test_table_errors_are_one_line(fake_runs, args, message):
    r = runner.invoke(app, ["table", str(fake_runs), *args])
    assert r.exit_code == 2 and r.stderr.strip().splitlines() == [f"error: {message}"]


def test_table_of_a_directory_without_summary(tmp_path):
    r = runner.invoke(app, ["table", str(tmp_path), "--paper", "csl"])
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1 and "summary.json: not found" in r.stderr
