"""`exposure demo`: the article's worked example of beam search going wrong, step by step.

The example's two-step distribution lives here; the real search engine of `beam.py` runs over it,
so what is printed is what the decoder does (tests/test_decode.py checks the same example).
"""

from __future__ import annotations

import math

import torch
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from .beam import LOG_EPS, StepState, StepTrace, beam_search

# Vocabulary of the worked example: 0 is [SEP]; a, b, c, d are the tokens.
EXAMPLE_VOCAB = ["[SEP]", "a", "b", "c", "d"]
EXAMPLE_SEP = 0
EXAMPLE_PROBS: dict[tuple[int, ...], dict[int, float]] = {
    (): {1: 0.6, 3: 0.4},  # p(a), p(c)
    (1,): {2: 0.55, 4: 0.45},  # p(b|a), p(d|a)
    (3,): {2: 0.1, 4: 0.9},  # p(b|c), p(d|c)
}


def example_distribution(prefix: tuple[int, ...]) -> dict[int, float]:
    """p(· | prefix) of the article's example; every two-token prefix is followed by [SEP]."""
    return EXAMPLE_PROBS.get(prefix, {EXAMPLE_SEP: 1.0})


def worked_example_step(state: StepState) -> torch.Tensor:
    """A step callback over the example's distribution (a pure function of the prefix)."""
    E, K = state.valid.shape
    out = torch.full((E, K, len(EXAMPLE_VOCAB)), math.log(LOG_EPS), dtype=torch.float32)
    for r, pre in enumerate(state.prefixes):
        for s, p in enumerate(pre):
            for tok, prob in example_distribution(tuple(p)).items():
                out[r, s, tok] = math.log(prob + LOG_EPS)
    return out


def _seq(tokens) -> str:
    return "(" + ", ".join(EXAMPLE_VOCAB[t] for t in tokens if t != EXAMPLE_SEP) + ")" + (
        " + [SEP]" if tokens and tokens[-1] == EXAMPLE_SEP else "")


def run_example(beam: int, strategy: str = "study") -> tuple[list, list[StepTrace]]:
    traces: list[StepTrace] = []
    result = beam_search(worked_example_step, 1, beam, 32, EXAMPLE_SEP, strategy=strategy, trace=traces.append)
    return result[0], traces


def render(console: Console, beams=(1, 2), strategy: str = "study") -> None:
    console.print(Panel.fit(
        "Two-step sequences; the training target is [bold green](a, b)[/]. After training the model says:",
        title="The article's example: beam search going wrong"))
    t1 = Table(title="first step")
    for name in ("p(a)", "p(c)"):
        t1.add_column(name, justify="right")
    t1.add_row(*(f"{EXAMPLE_PROBS[()][i]:.2f}" for i in (1, 3)))
    t2 = Table(title="second step")
    for name in ("p(b|a)", "p(d|a)", "p(b|c)", "p(d|c)"):
        t2.add_column(name, justify="right")
    t2.add_row(*(f"{EXAMPLE_PROBS[(x,)][y]:.2f}" for x in (1, 3) for y in (2, 4)))
    console.print(t1, t2)
    console.print("Every step was trained toward the target: p(a) > p(c), and given a, p(b|a) > p(d|a). "
                  "But the prefix c never occurs in training (teacher forcing only ever feeds the target's "
                  "own prefix), so nothing kept [bold red]p(d|c) = 0.9[/] down.\n")
    for beam in beams:
        result, traces = run_example(beam, strategy)
        console.rule(f"beam {beam}")
        for tr in traces:
            table = Table(title=f"step {tr.step + 1}: top {len(tr.candidates)} of (beam × vocabulary)",
                          title_justify="left")
            table.add_column("candidate")
            table.add_column("p = exp(score)", justify="right")
            table.add_column("")
            for i, (toks, score) in enumerate(tr.candidates):
                note = "best" if i == 0 else ""
                if toks[-1] == EXAMPLE_SEP:
                    note = "best, ends in [SEP] → returned" if i == 0 and tr.action == "return" else "ends in [SEP]"
                table.add_row(_seq(toks), f"{math.exp(score):.2f}", note)
            console.print(table)
        best = result[0]
        colour = "green" if best.tokens[:2] == [1, 2] else "red"
        console.print(f"beam {beam} outputs [bold {colour}]{_seq(best.tokens[:-1] if best.finished else best.tokens)}"
                      f"[/] with p = {math.exp(best.score):.2f}\n")
    console.print(Panel(
        "Beam 1 (greedy) only ever extends the most likely prefix, the one training saw, and outputs (a, b). "
        "Beam 2 also keeps the prefix c, which training never fed the model; its untrained p(d|c) = 0.9 makes "
        "(c, d) = 0.4 × 0.9 = 0.36 beat (a, b) = 0.6 × 0.55 = 0.33, so the wider search outputs the wrong "
        "sequence.\n\nThat gap between training (true prefixes) and decoding (the model's own prefixes) is "
        "exposure bias; random replacement and the gradient penalty try to make the model robust to such prefixes.",
        title="what happened"))
