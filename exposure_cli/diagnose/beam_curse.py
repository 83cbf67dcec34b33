"""`beam_curse`: beam-k outputs that score higher than the greedy one but have a lower Rouge-L.
"""

from __future__ import annotations

import numpy as np

from .base import DIAGNOSTICS, Column, Diagnostic, Ratio, mean_where, share


def curse_stats(score_k, score_1, rouge_k, rouge_1) -> dict[str, Ratio]:
    """Beam-k outputs scoring higher than greedy's (`higher`), those of them with a lower Rouge-L
    (`curse`), and their mean Rouge-L change (`curse_drl`, negative)."""
    sk, s1 = np.asarray(score_k, np.float64), np.asarray(score_1, np.float64)
    higher = sk > s1
    cursed = higher & (np.asarray(rouge_k) < np.asarray(rouge_1))
    drl = np.asarray(rouge_k, np.float64) - np.asarray(rouge_1, np.float64)
    return {"higher": share(higher), "curse": share(cursed), "curse_drl": mean_where(drl, cursed)}


@DIAGNOSTICS.register()
class BeamCurse(Diagnostic):
    """The article's worked example counted: a larger beam finds what the model prefers, and it is worse."""

    name = "beam_curse"
    order = 3
    title = "beam curse"
    note = ("Against greedy decoding (beam 1): higher: % of examples whose beam-k output scores higher than the "
            "greedy output; curse: % that score higher but have a lower Rouge-L; ΔRL | curse: their mean Rouge-L "
            "change (×100).")

    def stats(self, ctx):
        s1, r1 = ctx.output_scores(1), ctx.rouge_l(1)
        out = {}
        for b in self.opts.beams:
            if b != 1:
                st = curse_stats(ctx.output_scores(b), s1, ctx.rouge_l(b), r1)
                out.update({f"b{b}_{k}": r for k, r in st.items()})
        return out

    def columns(self):
        return [Column("b{beam}_higher", "higher %"), Column("b{beam}_curse", "curse %", vs_baseline=True),
                Column("b{beam}_curse_drl", "ΔRL | curse")]
