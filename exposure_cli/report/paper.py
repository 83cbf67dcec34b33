"""The article's published numbers, as data: its CSL and LCSTS tables and the other CSL points.

Test set, ×100, each cell the mean of 2 runs (REFERENCE.md, "The article's tables"). Our methods
map to the article's rows by their registered name, so every variant of a method (e.g.
`random_replace(pool=sequence)`) is set beside the same article row.
"""

from __future__ import annotations

from ..errors import UserError

# The order of each tuple: the study's column order (report.METRICS).
PAPER_METRICS = ("rouge_l", "rouge_1", "rouge_2", "bleu")

# Our method name → the article's name for it.
ARTICLE_METHODS = {"baseline": "baseline", "random_replace": "random replacement",
                   "gradient_penalty": "gradient penalty"}

# (our method name, beam): (Rouge-L, Rouge-1, Rouge-2, BLEU)
TABLES: dict[str, dict[tuple[str, int], tuple[float, float, float, float]]] = {
    "csl": {
        ("baseline", 1): (59.27, 63.45, 51.12, 41.31),
        ("random_replace", 1): (60.02, 64.35, 51.87, 41.99),
        ("gradient_penalty", 1): (60.79, 64.91, 52.54, 42.81),
        ("baseline", 2): (60.06, 64.19, 52.02, 42.30),
        ("random_replace", 2): (60.99, 65.15, 52.89, 43.24),
        ("gradient_penalty", 2): (61.37, 65.53, 53.29, 43.69),
        ("baseline", 3): (60.31, 64.47, 52.21, 42.46),
        ("random_replace", 3): (61.08, 65.19, 53.03, 43.45),
        ("gradient_penalty", 3): (61.47, 65.60, 53.42, 43.82),
    },
    "lcsts": {
        ("baseline", 1): (26.97, 30.79, 18.14, 11.41),
        ("random_replace", 1): (27.40, 31.48, 17.89, 10.90),
        ("gradient_penalty", 1): (28.02, 32.29, 18.66, 10.86),
        ("baseline", 2): (27.70, 31.62, 18.93, 11.97),
        ("random_replace", 2): (28.21, 32.28, 18.88, 11.60),
        ("gradient_penalty", 2): (28.12, 32.31, 19.27, 11.56),
        ("baseline", 3): (27.87, 31.73, 19.22, 12.28),
        ("random_replace", 3): (28.34, 32.42, 19.06, 11.77),
        ("gradient_penalty", 3): (27.79, 31.98, 19.18, 11.44),
    },
}

TITLES = {"csl": "CSL title generation", "lcsts": "LCSTS summarisation"}

# Other published points on the same CSL task (CLGE benchmark, 3,000 train / 500 test), same order.
ANCHORS: dict[str, dict[str, tuple[float, float, float, float]]] = {
    "csl": {"BERT-base UniLM (CLGE)": (59.76, 63.83, 51.29, 41.45),
            "LSTM seq2seq from scratch (CLGE)": (41.80, 46.48, 30.48, 22.00)},
    "lcsts": {},
}


def check_paper(name: str) -> str:
    if name not in TABLES:
        raise UserError(f"--paper {name}: expected one of {', '.join(TABLES)}")
    return name


def article_cell(paper: str, method_name: str, beam: int) -> dict[str, float] | None:
    """The article's scores for a method at a beam, or None when it has no such row."""
    values = TABLES[check_paper(paper)].get((method_name, beam))
    return dict(zip(PAPER_METRICS, values)) if values else None


def article_delta(paper: str, method_name: str, beam: int) -> dict[str, float] | None:
    """The article's method − baseline at the same beam (rounded to its two decimals); None for the
    baseline itself and for methods it did not run."""
    if method_name == "baseline":
        return None
    cell, base = article_cell(paper, method_name, beam), article_cell(paper, "baseline", beam)
    if cell is None or base is None:
        return None
    return {m: round(cell[m] - base[m], 2) for m in PAPER_METRICS}


def article_beams(paper: str) -> list[int]:
    return sorted({beam for _, beam in TABLES[check_paper(paper)]})


def guess_paper(summary_name: str) -> str | None:
    """The article table a summary's spec name points to ("lcsts…", "csl…"), else None."""
    low = summary_name.lower()
    return next((p for p in ("lcsts", "csl") if p in low), None)
