"""`exposure diagnose`: the exposure bias itself, measured on every finished run of an experiment.

Four registered measures (`DIAGNOSTICS`), each a set of per-example ratio statistics of one run
(docs/diagnostics.md defines every number):
- `teacher_forced`: NLL per token and next-token accuracy with the gold prefix (the training condition);
- `robustness`: the same after k target-prefix tokens are replaced by a wrong token, the model's own
  best wrong guess there (`model`) or a uniformly random one (`random`), measured on the gold
  tokens after the k-th replacement against the clean pass on the same tokens; the slope over k
  of the accuracy drop is the model's exposure-bias sensitivity;
- `search`: does the reference score higher than the decoded output (a search error) or lower
  (a model error);
- `beam_curse`: beam-k outputs that score higher than the greedy one but have a lower Rouge-L.

Every score is the model's own teacher-forced scoring of a given target (`UniLM.target_log_probs`
on a `collate`d `[CLS] source [SEP] target` batch), summed as the decoder sums it (log(p + 1e-12)
per token, `decode.LOG_EPS`), so a reference gets the score the decoder would have given it. The
outputs are the token ids and scores the run's decoder wrote (hypotheses.beam{k}.jsonl): nothing is
decoded again on the test split, and a sample of outputs is rescored to check the two agree.

Cost. Injected errors go at sorted random positions, so under the causal mask the tokens between
the k-th and the (k+1)-th error are predicted exactly as in a sequence holding only the first k:
one corrupted pass per kind measures every k (`window="next"`). With the clean pass that is three
forward passes per example, less than the three beam searches of the run's test decoding; the
literal "every token after the k-th error" (`window="end"`) costs a pass per kind and k.

Across runs: per method the mean over seeds, with a 95% percentile bootstrap over test examples
(the same resampled examples for every run, so each method's difference to baseline is paired).
"""

from __future__ import annotations

import io
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from . import fileio, rundir
from .batching import Batch, collate
from .data import read_pairs
from .decode import LOG_EPS, Hypothesis, decode_hypotheses, decode_options
from .errors import UserError
from .generate import load_run
from .metrics import study_per_example
from .predictions import read_columns, read_lines
from .registry import Registry
from .tables import Col, Matrix, markdown
from .spec import method_label

SPLITS = ("test", "dev", "train")
KINDS = ("model", "random")  # where an injected wrong token comes from
WINDOWS = ("next", "end")
CHECK_EXAMPLES = 32  # examples whose outputs are rescored per run, to check against the decoder's scores


@dataclass
class Options:
    split: str = "test"
    beams: tuple[int, ...] = (1, 2, 3)
    errors: tuple[int, ...] = (0, 1, 2, 3)
    seed: int = 0  # draws the injected positions and random tokens
    window: str = "next"  # robustness: measure k errors up to the next injected position, or to the "end"
    limit: int | None = None  # only the first N examples of the split
    batch_size: int = 64  # sequences per teacher-forced pass
    n_resamples: int = 1000


# ------------------------------------------------------------------ scoring a given target


@dataclass
class TokenScores:
    """Per target token of one sequence (the final [SEP] included), from one teacher-forced pass."""

    nll: np.ndarray  # −log p(gold), the cross-entropy target_loss averages
    score: np.ndarray  # log(p(gold) + 1e-12), the decoder's per-token score
    correct: np.ndarray  # the most probable token is the gold one
    wrong: np.ndarray  # the most probable token other than the gold one (special tokens excluded)

    @property
    def total(self) -> float:
        """The decoder's score of the sequence: Σ log(p + 1e-12)."""
        return float(self.score.sum())


def _pair(prompt: list[int], target: list[int]) -> tuple[list[int], list[int]]:
    return prompt + target, [0] * len(prompt) + [1] * len(target)


def _fit_positions(batch: Batch, fed, max_positions: int):
    """A target's last token is fed but predicts nothing, and under the UniLM mask nothing attends
    to it; it still takes a position. When decode.max_len fills every position the model has, a
    full-length prompt plus a full-length target is one longer: drop that column (its label sits
    one column earlier and stays)."""
    L = batch.input_ids.shape[1]
    if L <= max_positions:
        return batch, fed
    if L > max_positions + 1:  # generate_ids refuses such a prompt; a reference is cut to decode.max_len
        raise ValueError(f"{L} positions for a model with {max_positions}")
    cut = {f: getattr(batch, f)[:, :max_positions] for f in ("input_ids", "segment_ids", "pad_mask", "labels")}
    return batch.replace(**cut), None if fed is None else fed[:, :max_positions]


def _flat_scores(model, batch: Batch, fed, banned: torch.Tensor):
    logp = model.target_log_probs(batch, input_ids=fed).float()
    labels = batch.labels[batch.labels != -100]
    nll = F.cross_entropy(logp, labels, reduction="none")  # target_loss's computation, unreduced
    score = torch.log(logp.gather(1, labels[:, None])[:, 0].exp() + LOG_EPS)  # as decode.log_probs
    correct = logp.argmax(1) == labels
    others = logp.index_fill(1, banned, -math.inf).scatter(1, labels[:, None], -math.inf)
    return nll, score, correct, others.argmax(1)


@torch.inference_mode()
def score_targets(model, prompts: list[list[int]], targets: list[list[int]], inputs: list[list[int]] | None = None,
                  *, batch_size: int = 64, pad_id: int = 0, banned=()) -> list[TokenScores]:
    """Teacher-forced scores of each target (the ids after `[CLS] source [SEP]`; a finished one
    ends with [SEP]) given its prompt, the model fed `inputs` instead (same lengths) when given:
    the labels stay the targets. Batched by length."""
    dev = next(model.parameters()).device
    banned_t = torch.tensor(sorted(banned), dtype=torch.long, device=dev)
    order = sorted(range(len(targets)), key=lambda i: len(prompts[i]) + len(targets[i]))
    out: list[TokenScores | None] = [None] * len(targets)
    for b in range(0, len(order), batch_size):
        idx = order[b: b + batch_size]
        batch = collate([_pair(prompts[i], targets[i]) for i in idx], pad_id)
        fed = None if inputs is None else collate([_pair(prompts[i], inputs[i]) for i in idx], pad_id).input_ids
        batch, fed = _fit_positions(batch, fed, model.config.max_positions)
        cols = _flat_scores(model, batch.to(dev), None if fed is None else fed.to(dev), banned_t)
        cols = [c.cpu().numpy().astype(t) for c, t in zip(cols, (np.float64, np.float64, bool, np.int64))]
        start = 0
        for i in idx:  # target_log_probs is row-major: each row's target tokens in order
            n = len(targets[i])
            out[i] = TokenScores(*(c[start: start + n] for c in cols))
            start += n
    return out  # type: ignore[return-value]


def reference_targets(tok, references: list[str], max_len: int) -> tuple[list[list[int]], int]:
    """Each reference as a target the decoder could output (its first max_len − 1 tokens and
    [SEP]), and how many were cut to fit."""
    ids = [tok.encode(r) for r in references]
    return [r[: max_len - 1] + [tok.sep_id] for r in ids], sum(len(r) > max_len - 1 for r in ids)


def special_ids(tok) -> list[int]:
    """Tokens the decoder never feeds back: padding, [CLS], [MASK], and [SEP] (it ends a hypothesis)."""
    ids = {tok.pad_id, tok.cls_id, tok.sep_id, getattr(tok, "mask_id", tok.pad_id)}
    return sorted(ids)


# ------------------------------------------------------------------------ injected errors


def injection_plan(gold: list[int], wrong: np.ndarray, ordinary: np.ndarray, seed: int, example: int,
                   n_errors: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(positions, tokens) of one example's injected errors: up to `n_errors` target positions drawn
    uniformly without replacement, in increasing order (k errors are the first k), and per kind the
    token put at each.

    Candidates are the target tokens before the last one (the last is fed but nothing after it is
    measured). `model`: `wrong`, the model's best non-gold token at that position under teacher
    forcing; `random`: uniform over `ordinary` (sorted ids, special tokens excluded) minus the gold
    token. Drawn from (seed, example) alone, so every run of an experiment gets the same positions.
    """
    m = len(gold) - 1
    rng = np.random.default_rng([seed, example])
    positions = np.sort(rng.permutation(m)[:n_errors])
    u = rng.random(m)[positions]
    g = np.asarray(gold, dtype=np.int64)[positions]
    at = np.searchsorted(ordinary, g)
    is_ordinary = (at < len(ordinary)) & (ordinary[np.minimum(at, len(ordinary) - 1)] == g)
    choice = np.floor(u * (len(ordinary) - is_ordinary)).astype(np.int64)
    choice += is_ordinary & (choice >= at)  # skip the gold token itself
    return positions, {"model": np.asarray(wrong, dtype=np.int64)[positions], "random": ordinary[choice]}


# ------------------------------------------------------------------------------ one run


@dataclass
class RunData:
    dir: Path
    method: str
    seed: int
    model: torch.nn.Module
    tok: object
    spec: object
    sources: list[str]
    references: list[str]
    outputs: dict[int, list[Hypothesis]]  # beam → the decoder's best hypothesis per example
    predictions: dict[int, list[str]]  # beam → predicted text per example
    eval_seconds: float | None = None


@dataclass
class Ratio:
    """A run-level statistic Σ num / Σ den over examples, kept per example so that it resamples."""

    num: np.ndarray
    den: np.ndarray

    @property
    def value(self) -> float:
        d = float(self.den.sum())
        return float(self.num.sum()) / d if d > 0 else math.nan


def share(mask) -> Ratio:
    """Percentage of examples where `mask` holds."""
    mask = np.asarray(mask, dtype=np.float64)
    return Ratio(100.0 * mask, np.ones_like(mask))


def mean_where(x, mask) -> Ratio:
    """Mean of `x` over the examples where `mask` holds."""
    mask = np.asarray(mask, dtype=np.float64)
    return Ratio(np.where(mask > 0, np.asarray(x, dtype=np.float64), 0.0) * mask, mask)


class Context:
    """One run's examples and the teacher-forced passes the diagnostics share, each computed once."""

    def __init__(self, run: RunData, opts: Options):
        self.run, self.opts = run, opts
        tok, spec = run.tok, run.spec
        self.prompts = [tok.encode_pair(s, None, spec.model.source_len(), 0)[0] for s in run.sources]
        self.gold, self.truncated = reference_targets(tok, run.references, spec.decode.max_len)
        self.banned = special_ids(tok)
        self.ordinary = np.array([i for i in range(len(tok)) if i not in self.banned], dtype=np.int64)
        self._clean: list[TokenScores] | None = None
        self._rouge: dict[int, np.ndarray] = {}

    @property
    def n(self) -> int:
        return len(self.gold)

    def score(self, idx: list[int], targets, inputs=None) -> list[TokenScores]:
        return score_targets(self.run.model, [self.prompts[i] for i in idx], targets, inputs,
                             batch_size=self.opts.batch_size, pad_id=self.run.tok.pad_id, banned=self.banned)

    def clean(self) -> list[TokenScores]:
        """The gold reference, teacher-forced."""
        if self._clean is None:
            self._clean = self.score(list(range(self.n)), self.gold)
        return self._clean

    def reference_scores(self) -> np.ndarray:
        return np.array([c.total for c in self.clean()])

    def output_scores(self, beam: int) -> np.ndarray:
        """The decoder's score of each beam-`beam` output, as it recorded it (`score_check` shows that
        teacher forcing gives the same number, so it compares with `reference_scores`)."""
        return np.array([h.score for h in self.run.outputs[beam]])

    def score_check(self, n: int = CHECK_EXAMPLES) -> float:
        """The largest |teacher-forced score − the decoder's score| over the outputs of the first n
        examples at every beam: rescoring every output would cost a pass per beam, and the scoring
        is the same function for all of them."""
        found = {(i, tuple(h.tokens)): h.score for hs in self.run.outputs.values() for i, h in enumerate(hs[:n])}
        if not found:
            return 0.0
        keys = list(found)
        scored = self.score([i for i, _ in keys], [list(t) for _, t in keys])
        return max(abs(s.total - found[k]) for k, s in zip(keys, scored))

    def same_as_reference(self, beam: int) -> np.ndarray:
        return np.array([h.tokens == g for h, g in zip(self.run.outputs[beam], self.gold)])

    def rouge_l(self, beam: int) -> np.ndarray:
        """Per-example study Rouge-L (×100) of the beam-`beam` predictions."""
        if beam not in self._rouge:
            per = study_per_example(self.run.predictions[beam], self.run.references, self.run.spec.score.lowercase)
            self._rouge[beam] = per["rouge_l"] * 100
        return self._rouge[beam]


# -------------------------------------------------------------------------- the measures


@dataclass
class Column:
    """A table column of a diagnostic: `stat` may hold `{beam}` (then it is a per-beam column)."""

    stat: str
    header: str
    kind: str = "interval"  # or "number": no interval
    vs_baseline: bool = False  # also tabulate the difference to baseline
    group: str = ""  # its table; default the diagnostic's title


class Diagnostic:
    """One measure: per-example ratio statistics of a run (`stats`), run-level quantities computed
    from their values (`derive`; it must also work on arrays of bootstrap resamples), and columns."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""  # its column group in the tables
    note: ClassVar[str] = ""  # printed under its table
    order: ClassVar[int] = 0  # its place in the tables

    def __init__(self, opts: Options):
        self.opts = opts

    def stats(self, ctx: Context) -> dict[str, Ratio]:
        raise NotImplementedError

    def derive(self, v: dict) -> dict:
        return {}

    def columns(self) -> list[Column]:
        return []

    def note_for(self, group: str) -> str:
        """The sentence under one of its tables."""
        return self.note


DIAGNOSTICS: Registry[type[Diagnostic]] = Registry("diagnostic", Diagnostic)


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


def slope(ks, ys) -> np.ndarray | float:
    """Least-squares slope of ys (a list of floats or of equal-shape arrays) over ks."""
    ks = np.asarray(ks, dtype=np.float64)
    if len(ks) < 2 or np.all(ks == ks[0]):
        return math.nan
    kc = ks - ks.mean()
    mean = sum(ys) / len(ys)
    return sum(k * (y - mean) for k, y in zip(kc, ys)) / float((kc ** 2).sum())


def _robustness_group(kind: str) -> str:
    return f"robustness: {'model-made' if kind == 'model' else 'random'} errors"


def _inject(gold: list[int], positions, tokens) -> list[int]:
    fed = list(gold)
    for j, t in zip(positions, tokens):
        fed[int(j)] = int(t)
    return fed


def _window_stats(corrupt: list[TokenScores], clean: list[TokenScores], gold, windows) -> dict[str, Ratio]:
    """Accuracy (%) and NLL over each example's window (a boolean mask over its target tokens; None:
    all of them), of the corrupted pass and of the clean one on the same tokens."""
    windows = windows if windows is not None else [np.ones(len(g), dtype=bool) for g in gold]
    n = np.array([w.sum() for w in windows], dtype=np.float64)

    def total(scores, attr):
        return np.array([getattr(s, attr)[w].sum() for s, w in zip(scores, windows)], dtype=np.float64)

    return {"acc": Ratio(100.0 * total(corrupt, "correct"), n), "nll": Ratio(total(corrupt, "nll"), n),
            "clean_acc": Ratio(100.0 * total(clean, "correct"), n), "clean_nll": Ratio(total(clean, "nll"), n)}


@DIAGNOSTICS.register()
class Robustness(Diagnostic):
    """Accuracy and NLL of the gold tokens after k injected errors, against the clean pass on the same tokens."""

    name = "robustness"
    order = 1
    title = "robustness to injected errors"
    note = ("k target-prefix tokens replaced by the model's own best wrong token (model) or a uniformly random one "
            "(random); drop k=n: accuracy (%) of the gold tokens after the k-th error (up to the next injected "
            "position), clean pass minus corrupted pass on the same tokens; sensitivity: the least-squares slope of "
            "that drop over k (accuracy points lost per injected error), and of the NLL rise (nats per error).")

    def stats(self, ctx):
        clean = ctx.clean()
        ks = [k for k in self.opts.errors if k]
        plans = [injection_plan(g, c.wrong, ctx.ordinary, self.opts.seed, i, max(ks, default=0))
                 for i, (g, c) in enumerate(zip(ctx.gold, clean))]
        out = {}
        for kind in KINDS:
            out.update({f"{kind}_k0_{s}": r for s, r in _window_stats(clean, clean, ctx.gold, None).items()})
            # One pass with every error serves every k ("next"); "end" needs a pass per k.
            for m in ([max(ks)] if self.opts.window == "next" and ks else ks):
                fed = [_inject(g, pos[:m], tokens[kind][:m]) for g, (pos, tokens) in zip(ctx.gold, plans)]
                corrupt = ctx.score(list(range(ctx.n)), ctx.gold, fed)
                # errors in the prefix that predicts each target token (token j sees the inputs before j)
                seen = [np.searchsorted(pos[:m], np.arange(len(g))) for g, (pos, _) in zip(ctx.gold, plans)]
                for k in ks if self.opts.window == "next" else [m]:
                    windows = [e == k for e in seen]
                    out.update({f"{kind}_k{k}_{s}": r for s, r in _window_stats(corrupt, clean, ctx.gold,
                                                                                windows).items()})
        return out

    def derive(self, v):
        out = {}
        ks = self.opts.errors
        for kind in KINDS:
            drops = [v[f"{kind}_k{k}_clean_acc"] - v[f"{kind}_k{k}_acc"] for k in ks]
            rises = [v[f"{kind}_k{k}_nll"] - v[f"{kind}_k{k}_clean_nll"] for k in ks]
            out.update({f"{kind}_drop_k{k}": d for k, d in zip(ks, drops)})
            out[f"{kind}_sensitivity"] = slope(ks, drops)
            out[f"{kind}_sensitivity_nll"] = slope(ks, rises)
        return out

    def note_for(self, group):
        if group == _robustness_group("random"):
            return ("The same at the same positions, each error a token drawn uniformly from the vocabulary without "
                    "the special tokens and the gold one.")
        return self.note

    def columns(self):
        cols = []
        for kind in KINDS:
            group = _robustness_group(kind)
            cols += [Column(f"{kind}_drop_k{k}", f"drop k={k}", group=group) for k in self.opts.errors if k]
            cols += [Column(f"{kind}_sensitivity", "sensitivity", vs_baseline=True, group=group),
                     Column(f"{kind}_sensitivity_nll", "sensitivity NLL", group=group)]
        return cols


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


def diagnostics(opts: Options) -> list[Diagnostic]:
    """Every registered diagnostic, in table order."""
    return sorted((DIAGNOSTICS.get(name)(opts) for name in DIAGNOSTICS.names()), key=lambda d: d.order)


# --------------------------------------------------------------------------- loading runs


def finished_runs(out_dir: Path) -> list[Path]:
    """Run directories (OUT/<method>/seed<N>/) holding metrics.json, the mark of a finished run."""
    if not out_dir.is_dir():
        raise UserError(f"{out_dir}: not a directory (expected an experiment's output directory)")
    runs = rundir.finished_runs(out_dir)
    if not runs:
        raise UserError(f"{out_dir}: no finished run (expected OUT/<method>/seed<N>/metrics.json; run `exposure run` "
                        "first)")
    return runs


def read_hypotheses(path: Path, vocab_size: int) -> list[Hypothesis]:
    out = []
    for n, line in enumerate(read_lines(path), start=1):
        try:
            d = json.loads(line)
            tokens, score, finished = d["tokens"], float(d["score"]), d["finished"]
            ok = isinstance(tokens, list) and tokens and all(isinstance(t, int) and 0 <= t < vocab_size for t in tokens)
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok or not isinstance(finished, bool):
            raise UserError(f"{path}:{n}: expected {{\"tokens\": [ids in [0, {vocab_size})], \"score\": number, "
                            "\"finished\": true|false}")
        out.append(Hypothesis(tokens, score, finished))
    return out


def _test_examples(run_dir: Path, tok, beams: list[int], limit: int | None):
    """Sources, references, outputs and predictions of the test split, from the run's own files."""
    sources = refs = None
    outputs, preds = {}, {}
    for b in beams:
        path = run_dir / rundir.predictions(b)
        cols = read_columns(path)
        if cols is None:
            raise UserError(f"{path}: expected a predictions TSV (header source, reference, prediction)")
        hyps = read_hypotheses(run_dir / rundir.hypotheses(b), len(tok))
        if len(hyps) != len(cols["prediction"]):
            raise UserError(f"{run_dir / rundir.hypotheses(b)}: {len(hyps)} hypotheses, expected "
                            f"{len(cols['prediction'])} (the rows of {path.name})")
        if sources is None:
            sources, refs = cols["source"], cols["reference"]
        elif (sources, refs) != (cols["source"], cols["reference"]):
            raise UserError(f"{path}: not the examples of {rundir.predictions(beams[0])}")
        outputs[b], preds[b] = hyps[:limit], cols["prediction"][:limit]
    return sources[:limit], refs[:limit], outputs, preds


def _decoded_examples(model, tok, spec, split: str, beams: list[int], limit: int | None, device):
    """Another split has no decoder output on disk: decode it (the run's decoder and options)."""
    try:
        pairs = read_pairs(getattr(spec.data, split))[:limit]
    except UserError as e:
        raise UserError(f"data.{split} of the run's spec.yaml, relative to the current directory: {e}") from None
    sources, refs = [p.source for p in pairs], [p.target for p in pairs]
    outputs, preds = {}, {}
    for b in beams:
        outputs[b] = [hs[0] for hs in decode_hypotheses(model, tok, sources, b, spec.model.source_len(),
                                                        spec.decode.max_len, device, **decode_options(spec.decode))]
        preds[b] = [tok.decode(h.tokens) for h in outputs[b]]
    return sources, refs, outputs, preds


def load_run_data(run_dir: Path, opts: Options, device) -> RunData:
    """A finished run's model, tokenizer, spec and the split's examples with the decoder's outputs."""
    metrics = fileio.read_json(run_dir / rundir.METRICS, "metrics file")
    if not isinstance(metrics, dict) or not {"method", "seed"} <= metrics.keys():
        raise UserError(f"{run_dir / rundir.METRICS}: expected an object with 'method' and 'seed'")
    model, tok, spec = load_run(run_dir, device)
    beams = sorted(set(opts.beams) | {1})  # greedy is the beam curse's point of comparison
    if opts.split == "test":
        data = _test_examples(run_dir, tok, beams, opts.limit)
    else:
        data = _decoded_examples(model, tok, spec, opts.split, beams, opts.limit, device)
    if not data[0]:
        raise UserError(f"{run_dir}: no {opts.split} examples")
    model.float().eval()
    return RunData(run_dir, str(metrics["method"]), int(metrics["seed"]), model, tok, spec, *data,
                   eval_seconds=metrics.get("eval_seconds"))


# ---------------------------------------------------------------------- per-run diagnosis


@dataclass
class RunResult:
    method: str
    seed: int
    dir: Path
    ratios: dict[str, dict[str, Ratio]]  # diagnostic → statistic → per-example ratio
    values: dict[str, dict[str, float]]  # diagnostic → statistic → run-level value (derived ones too)
    record: dict = field(default_factory=dict)  # the run's diagnostics.json
    spec_methods: list[str] = field(default_factory=list)  # the spec's method labels, in its order


def _clean(x) -> float | None:
    """A JSON-safe number: NaN (a statistic with no example to average) becomes null."""
    x = float(x)
    return None if math.isnan(x) else round(x, 6)


def diagnose_run(run: RunData, opts: Options) -> RunResult:
    """Every registered diagnostic of one run; writes the run's diagnostics.json."""
    t0 = time.perf_counter()
    ctx = Context(run, opts)
    ratios, values = {}, {}
    for d in diagnostics(opts):
        ratios[d.name] = d.stats(ctx)
        v = {k: r.value for k, r in ratios[d.name].items()}
        values[d.name] = {**v, **d.derive(v)}
    seconds = time.perf_counter() - t0
    record = {"method": run.method, "seed": run.seed, "split": opts.split, "n_examples": ctx.n,
              "options": _options_record(opts),
              "values": {d: {k: _clean(x) for k, x in v.items()} for d, v in values.items()},
              "checks": {"decoder_score_max_abs_diff": _clean(ctx.score_check()),
                         "references_truncated": ctx.truncated},
              "seconds": round(seconds, 2), "eval_seconds": run.eval_seconds,
              "per_example": {d: {k: _per_example(r) for k, r in rs.items()} for d, rs in ratios.items()}}
    write_run_record(run.dir / rundir.DIAGNOSTICS, record)
    return RunResult(run.method, run.seed, run.dir, ratios, values, record,
                     [method_label(m) for m in run.spec.methods])


def write_run_record(path: Path, record: dict) -> None:
    """JSON, indented except the per-example arrays (one line each: a tenth of the size)."""
    head = json.dumps({**record, "per_example": None}, ensure_ascii=False, indent=2)
    arrays = ",\n".join(f'    "{d}": ' + json.dumps(v, separators=(",", ":")) for d, v in record["per_example"].items())
    text = head.replace('"per_example": null', '"per_example": {\n' + arrays + "\n  }")
    fileio.write_text(path, text + "\n")


def _per_example(r: Ratio) -> dict:
    out = {"num": [round(float(x), 6) for x in r.num]}
    if not np.all(r.den == 1):
        out["den"] = [round(float(x), 6) for x in r.den]
    return out


def _options_record(opts: Options) -> dict:
    d = asdict(opts)
    d["beams"], d["errors"] = list(opts.beams), list(opts.errors)
    return d


# ------------------------------------------------------------------------- across runs


def resample_counts(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """(R, n): how often each example is drawn in each bootstrap resample (one draw for every run)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_resamples, n))
    counts = np.zeros((n_resamples, n))
    np.add.at(counts, (np.arange(n_resamples)[:, None], idx), 1.0)
    return counts


def _resampled(res: RunResult, counts: np.ndarray, diags: list[Diagnostic]) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for d in diags:
        rs = res.ratios[d.name]
        with np.errstate(invalid="ignore", divide="ignore"):
            v = {k: np.where((den := counts @ r.den) > 0, (counts @ r.num) / den, np.nan) for k, r in rs.items()}
        out[d.name] = {**v, **d.derive(v)}
    return out


def _interval(point: float, boot: np.ndarray) -> dict:
    if math.isnan(point) or np.all(np.isnan(boot)):
        return {"mean": _clean(point), "lo": None, "hi": None}
    lo, hi = np.nanpercentile(boot, [2.5, 97.5])
    return {"mean": _clean(point), "lo": _clean(lo), "hi": _clean(hi)}


def _seed_mean(xs):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the mean over seeds that are all NaN is NaN
        return np.nanmean(np.stack([np.asarray(x, dtype=np.float64) for x in xs]), axis=0)


def method_order(results: list[RunResult], baseline: str = "baseline") -> list[str]:
    """Baseline first, then the spec's order of methods, then any other method found."""
    labels = list(dict.fromkeys(r.method for r in results))
    ordered = [m for m in [baseline, *results[0].spec_methods] if m in labels]
    return list(dict.fromkeys(ordered + labels))


def aggregate(results: list[RunResult], opts: Options, baseline: str = "baseline") -> dict:
    """Per method: each statistic's mean over seeds with its 95% bootstrap interval, and the
    difference to baseline with its paired interval (one set of resampled examples for all runs)."""
    ns = {r.record["n_examples"] for r in results}
    if len(ns) != 1:
        raise UserError("the runs do not share one set of examples (" + ", ".join(
            f"{r.method} seed {r.seed}: {r.record['n_examples']} examples" for r in results) + ")")
    diags = diagnostics(opts)
    counts = resample_counts(ns.pop(), opts.n_resamples, opts.seed)
    boots = [_resampled(r, counts, diags) for r in results]
    # (method, diagnostic, statistic) → (mean over seeds, its resamples)
    est: dict[tuple[str, str, str], tuple[float, np.ndarray]] = {}
    methods = {}
    for m in method_order(results, baseline):
        mine = [i for i, r in enumerate(results) if r.method == m]
        methods[m] = {"seeds": [results[i].seed for i in mine], "values": {}, "vs_baseline": {}}
        for d in diags:
            for stat in results[mine[0]].values[d.name]:
                point = float(_seed_mean([results[i].values[d.name][stat] for i in mine]))
                est[(m, d.name, stat)] = point, _seed_mean([boots[i][d.name][stat] for i in mine])
                cell = _interval(*est[(m, d.name, stat)])
                cell["per_seed"] = [_clean(results[i].values[d.name][stat]) for i in mine]
                methods[m]["values"].setdefault(d.name, {})[stat] = cell
    for (m, d, stat), (point, boot) in est.items():
        if m != baseline and (baseline, d, stat) in est:
            bp, bb = est[(baseline, d, stat)]
            cell = _interval(point - bp, boot - bb)
            sig = cell["lo"] is not None and (cell["lo"] > 0 or cell["hi"] < 0)
            methods[m]["vs_baseline"].setdefault(d, {})[stat] = {"diff": cell["mean"], "lo": cell["lo"],
                                                                 "hi": cell["hi"], "significant": sig}
    return {"split": opts.split, "n_examples": results[0].record["n_examples"], "options": _options_record(opts),
            "interval": INTERVAL_NOTE, "methods": methods,
            "runs": [{"method": r.method, "seed": r.seed, "dir": f"{r.dir.parent.name}/{r.dir.name}",
                      "values": r.record["values"], "checks": r.record["checks"]} for r in results]}


INTERVAL_NOTE = ("95% percentile bootstrap over examples: 1,000 resamples of the examples, the same for every run; "
                 "in each resample a statistic is recomputed per run and averaged over the method's seeds, so the "
                 "interval covers the choice of test examples, not the spread between seeds (per_seed lists that). "
                 "Differences to baseline use the same resamples on both sides (paired).")


# ------------------------------------------------------------------------------ reports


def matrices(agg: dict, opts: Options) -> list[Matrix]:
    """Two tables: per method (teacher forced, robustness) and per method × beam (search, curse)."""
    diags = diagnostics(opts)
    per_method, per_beam = _table_cols(diags, per_beam=False), _table_cols(diags, per_beam=True)
    rows_m, rows_b = [], []
    for m, v in agg["methods"].items():
        rows_m.append({"method": m, "seeds": len(v["seeds"]), **_cells(v, per_method, None)})
        for b in opts.beams:
            rows_b.append({"method": m, "beam": b, **_cells(v, per_beam, b)})
    keys_m = [Col("method", "method"), Col("seeds", "seeds", "int")]
    keys_b = [Col("method", "method"), Col("beam", "beam", "int")]
    # The markdown writer prints a group's note above its table: the note opens with the group's name.
    notes = {c.group or d.title: f"**{c.group or d.title}**: {d.note_for(c.group or d.title)}"
             for d in diags for c in d.columns()}
    notes[DELTA_GROUP] = f"**{DELTA_GROUP}**: {DELTA_NOTE}"
    title = f"exposure-bias diagnostics, {agg['split']} split ({agg['n_examples']} examples)"
    return [Matrix(f"{title}: per method", keys_m + [c for c, _ in per_method], rows_m, notes),
            Matrix(f"{title}: per method and beam", keys_b + [c for c, _ in per_beam], rows_b, notes)]


DELTA_GROUP = "difference to baseline"
DELTA_NOTE = ("Method minus baseline, with its paired 95% bootstrap interval over examples; * marks an interval "
              "that excludes 0.")


def _table_cols(diags: list[Diagnostic], per_beam: bool) -> list[tuple[Col, tuple[str, str, bool]]]:
    cols, deltas = [], []
    for d in diags:
        for c in d.columns():
            if ("{beam}" in c.stat) != per_beam:
                continue
            cols.append((Col(f"{d.name}.{c.stat}", c.header, c.kind, c.group or d.title), (d.name, c.stat, False)))
            if c.vs_baseline:
                header = f"Δ {c.stat.split('_')[0]} {c.header}" if c.group else f"Δ {c.header}"
                deltas.append((Col(f"d.{d.name}.{c.stat}", header, "delta", DELTA_GROUP),
                               (d.name, c.stat, True)))
    return cols + deltas


def _cells(v: dict, cols, beam: int | None) -> dict:
    row = {}
    for col, (d, stat, delta) in cols:
        key = stat.format(beam=beam) if beam is not None else stat
        src = v["vs_baseline"] if delta else v["values"]
        row[col.key] = src.get(d, {}).get(key)
    return row


PLOTS = ("diagnostics.robustness.png", "diagnostics.search_errors.png", "diagnostics.beam_curse.png")


def write_report(out_dir: Path, agg: dict, opts: Options) -> list[Matrix]:
    """OUT/diagnostics.json, diagnostics.md and the PNG plots; returns the tables."""
    mxs = matrices(agg, opts)
    fileio.write_json(out_dir / rundir.DIAGNOSTICS, agg)
    plots = write_plots(out_dir, agg, opts)
    text = "\n".join(markdown(mx) for mx in mxs)
    text += "\n" + INTERVAL_NOTE + "\n\n" + "".join(f"![{p}]({p})\n\n" for p in plots)
    fileio.write_text(out_dir / "diagnostics.md", text)
    return mxs


def _errorbar(ax, xs, cells, shift: float = 0.0, **kw):
    """Means with their intervals; `shift` moves a method's points sideways so the bars do not overlap."""
    xs = np.asarray(xs, dtype=np.float64) + shift
    ys = [c["mean"] if c and c["mean"] is not None else math.nan for c in cells]
    lo = [y - c["lo"] if c and c.get("lo") is not None else 0.0 for y, c in zip(ys, cells)]
    hi = [c["hi"] - y if c and c.get("hi") is not None else 0.0 for y, c in zip(ys, cells)]
    ax.errorbar(xs, ys, yerr=[np.maximum(lo, 0), np.maximum(hi, 0)], capsize=3, **kw)


def write_plots(out_dir: Path, agg: dict, opts: Options) -> list[str]:
    """Accuracy after the errors against k, search-error share against beam, beam-curse share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = agg["methods"]
    names = []
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, kind in zip(axes, KINDS):
        for i, (m, v) in enumerate(methods.items()):
            rob = v["values"]["robustness"]
            _errorbar(ax, opts.errors, [rob.get(f"{kind}_k{k}_acc") for k in opts.errors], _shift(i, methods),
                      color=f"C{i}", marker="o", label=m)
            ax.plot(np.asarray(opts.errors) + _shift(i, methods),
                    [rob.get(f"{kind}_k{k}_clean_acc", {}).get("mean") for k in opts.errors],
                    color=f"C{i}", linestyle=":", alpha=0.7)
        ax.set(title=f"{'model-made' if kind == 'model' else 'random'} errors", xlabel="injected errors k",
               xticks=list(opts.errors))
    axes[0].set_ylabel("accuracy after the last error (%)\n(dotted: same tokens, clean prefix)")
    axes[0].legend()
    names.append(_save(fig, out_dir / PLOTS[0]))
    fig, ax = plt.subplots(figsize=(5, 4))
    for i, (m, v) in enumerate(methods.items()):
        _errorbar(ax, opts.beams, [v["values"]["search"].get(f"b{b}_search") for b in opts.beams],
                  _shift(i, methods), color=f"C{i}", marker="o", label=m)
    ax.set(xlabel="beam size", ylabel="search errors (% of examples)", xticks=list(opts.beams),
           title="reference scores higher than the output")
    ax.legend()
    names.append(_save(fig, out_dir / PLOTS[1]))
    names.append(_curse_plot(out_dir, methods, opts, plt))
    return names


def _shift(i: int, methods) -> float:
    return 0.06 * (i - (len(methods) - 1) / 2)


def _curse_plot(out_dir: Path, methods: dict, opts: Options, plt) -> str:
    beams = [b for b in opts.beams if b != 1]
    fig, ax = plt.subplots(figsize=(5, 4))
    width = 0.8 / max(1, len(beams))
    for j, b in enumerate(beams):
        cells = [v["values"]["beam_curse"].get(f"b{b}_curse") for v in methods.values()]
        xs = np.arange(len(methods)) + (j - (len(beams) - 1) / 2) * width
        ys = [c["mean"] if c and c["mean"] is not None else 0.0 for c in cells]
        err = [[max(0.0, y - (c["lo"] if c and c["lo"] is not None else y)) for y, c in zip(ys, cells)],
               [max(0.0, (c["hi"] if c and c["hi"] is not None else y) - y) for y, c in zip(ys, cells)]]
        ax.bar(xs, ys, width, yerr=err, capsize=3, label=f"beam {b}")
    ax.set_xticks(np.arange(len(methods)), list(methods), rotation=15)
    ax.set(ylabel="beam curse (% of examples)", title="scores higher than greedy, lower Rouge-L")
    if beams:
        ax.legend()
    return _save(fig, out_dir / PLOTS[2])


def _save(fig, path: Path) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    fileio.write_bytes(path, buf.getvalue())
    return path.name


def check_options(opts: Options) -> None:
    if opts.split not in SPLITS:
        raise UserError(f"--split {opts.split}: expected one of {', '.join(SPLITS)}")
    if not opts.beams or min(opts.beams) < 1 or len(set(opts.beams)) != len(opts.beams):
        raise UserError("--beams: expected distinct beam sizes ≥ 1, e.g. 1,2,3")
    if not opts.errors or min(opts.errors) < 0 or len(set(opts.errors)) != len(opts.errors):
        raise UserError("--errors: expected distinct error counts ≥ 0, e.g. 0,1,2,3")
    if opts.window not in WINDOWS:
        raise UserError(f"--window {opts.window}: expected one of {', '.join(WINDOWS)}")
    if opts.limit is not None and opts.limit < 1:
        raise UserError("--limit: expected at least 1")
