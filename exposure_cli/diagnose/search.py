"""`search`: does the reference score higher than the decoded output (a search error) or lower (a
model error)?
"""

from __future__ import annotations

import numpy as np

from .base import DIAGNOSTICS, Column, Diagnostic, Ratio, mean_where, share


def search_stats(ref, out, same) -> dict[str, Ratio]:
    """Search vs model errors from the model's scores of the reference and of the output."""
    ref, out, same = np.asarray(ref, np.float64), np.asarray(out, np.float64), np.asarray(same, bool)
    search = ~same & (ref > out)
    gap = ref - out
    return {"search": share(search), "model": share(~same & (ref <= out)), "exact": share(same),
            "gap": mean_where(gap, np.ones_like(gap)), "gap_search": mean_where(gap, search)}


@DIAGNOSTICS.register()
class SearchErrors(Diagnostic):
    """Does the reference score higher than the decoded output (the search missed it), or lower?"""

    name = "search"
    order = 2
    title = "search errors vs model errors"
    note = ("Scores are the decoder's (Σ log(p + 1e-12), the final [SEP] included): the output's as it recorded it, "
            "the reference's (cut to decode.max_len) by teacher forcing. search err: % of examples whose reference "
            "scores higher than the output; model err: % whose output differs from the reference and scores at "
            "least as high; exact: % equal to the reference; gap: mean score(reference) − score(output) in nats, "
            "over all examples and over the search errors; unfinished: % of outputs that hit decode.max_len "
            "without [SEP].")

    def stats(self, ctx):
        ref = ctx.reference_scores()
        out = {}
        for b in self.opts.beams:
            st = search_stats(ref, ctx.output_scores(b), ctx.same_as_reference(b))
            st["unfinished"] = share([not h.finished for h in ctx.run.outputs[b]])
            out.update({f"b{b}_{k}": r for k, r in st.items()})
        return out

    def columns(self):
        return [Column("b{beam}_search", "search err %", vs_baseline=True), Column("b{beam}_model", "model err %"),
                Column("b{beam}_exact", "exact %"), Column("b{beam}_gap", "gap"),
                Column("b{beam}_gap_search", "gap (search err)"), Column("b{beam}_unfinished", "unfinished %")]
