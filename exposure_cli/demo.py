"""`exposure demo`: the article's worked example of beam search going wrong, step by step.

It runs the real search engine of `decode.py` over the example's two-step distribution, so what is
printed is what the decoder does.
"""

from __future__ import annotations

import math

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from .decode import EXAMPLE_PROBS, EXAMPLE_SEP, EXAMPLE_VOCAB, StepTrace, beam_search, worked_example_step


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
