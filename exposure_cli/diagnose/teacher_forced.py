"""`teacher_forced`: NLL per token and next-token accuracy with the gold prefix (the training condition).
"""

from __future__ import annotations

import numpy as np

from .base import DIAGNOSTICS, Column, Diagnostic, Ratio


@DIAGNOSTICS.register()
class TeacherForced(Diagnostic):
    """NLL per token and next-token accuracy with the gold prefix."""

    name = "teacher_forced"
    order = 0
    title = "teacher forced"
    note = ("Gold prefix (the training condition): NLL in nats per target token, accuracy of the most probable "
            "next token in %, both over every target token (the final [SEP] included).")

    def stats(self, ctx):
        clean = ctx.clean()
        n = np.array([len(c.nll) for c in clean], dtype=np.float64)
        return {"nll": Ratio(np.array([c.nll.sum() for c in clean]), n),
                "acc": Ratio(100.0 * np.array([c.correct.sum() for c in clean]), n)}

    def columns(self):
        return [Column("nll", "NLL", vs_baseline=True), Column("acc", "acc %")]
