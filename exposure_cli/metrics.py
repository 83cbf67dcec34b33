"""Scoring generated texts against references.

Study mode reproduces, number for number, what the study's scripts computed with `rouge==1.0.0` and
nltk's `sentence_bleu`, quirks included, but fast enough to score a whole test set per epoch. The
standard scorers (sacrebleu, rouge-score) sit beside it so results can also be read on a common scale.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

import numpy as np

from .tokenizers.char import normalize

STUDY_KEYS = ("rouge_1", "rouge_2", "rouge_l", "bleu")

# rouge 1.0.0 adds this to every F-score denominator; it is why a perfect match scores 0.99999999.
_ROUGE_EPS = 1e-8
# nltk SmoothingFunction().method1: an n-gram order with no match counts epsilon matches instead.
_BLEU_EPS = 0.1


def _study_text(text: str, lowercase: bool = True) -> str:
    # The scripts scored characters: every character (spaces too) becomes a space-separated token.
    spaced = " ".join(text)
    return spaced.lower() if lowercase else spaced


def _rouge_sentences(s: str) -> list[list[str]]:
    # rouge 1.0.0 splits on every ".", keeps non-empty pieces, collapses their whitespace, then
    # splits on " ": a whitespace-only piece survives as the sentence [""] and "" then counts as a
    # word, for Rouge-N and for Rouge-L alike.
    return [piece.split() or [""] for piece in s.split(".") if piece]


def _f_score(overlap: int, hyp_count: int, ref_count: int) -> float:
    # Same operations in the same order as rouge 1.0.0's f_r_p_rouge_n (its Rouge-L F repeats them with
    # p and r swapped, which IEEE products and sums do not notice), so the floats agree bit for bit.
    precision = overlap / hyp_count if hyp_count else 0.0
    recall = overlap / ref_count if ref_count else 0.0
    return 2.0 * ((precision * recall) / (precision + recall + _ROUGE_EPS))


def _ngrams(tokens: list[str], n: int) -> list:
    if n == 1:
        return tokens
    return list(zip(*[tokens[k:] for k in range(n)]))


def _overlap(hyp: list, ref: list) -> int:
    """Size of the multiset intersection: Σ min(count in hyp, count in ref) over n-grams.

    This is both rouge 1.0.0's list-based intersection and BLEU's clipped match count. When either
    side has no repeated n-gram every min is 0 or 1, so a C-level set intersection gives the same
    number; Counters are only needed when both sides repeat something.
    """
    hs = set(hyp)
    if len(hs) == len(hyp):
        return len(hs.intersection(ref))
    rs = set(ref)
    if len(rs) == len(ref):
        return len(hs & rs)
    hc, rc = Counter(hyp), Counter(ref)
    return sum(min(c, rc[g]) for g, c in hc.items() if g in rc)


def _lcs_rows(x: Sequence[str], y: Sequence[str]) -> tuple[list[int], list[int]]:
    """The LCS table of x and y as bit vectors (Hyyrö's bit-parallel LCS), row by row.

    Bit j-1 of rows[i] is set when table[i][j] = table[i][j-1] + 1, so table[i][j] is the number of
    set bits below bit j, and the LCS length is the popcount of the last row. masks[i] has bit j-1
    set where y[j-1] == x[i-1].
    """
    match: dict[str, int] = {}
    get = match.get
    bit = 1
    for tok in y:
        match[tok] = get(tok, 0) | bit
        bit <<= 1
    full = bit - 1
    v = full
    rows = [0]
    masks = [0]
    for tok in x:
        m = get(tok, 0)
        u = v & m
        # Carries only run upwards: bits above y's length may hold garbage, masked on storing.
        v = (v + u) | (v - u)
        rows.append(~v & full)
        masks.append(m)
    return rows, masks


def _lcs_tokens(x: Sequence[str], y: Sequence[str]) -> set[str]:
    """The token types on rouge 1.0.0's reconstructed LCS of x (reference) and y (hypothesis).

    Which LCS the package reconstructs matters, because Rouge-L then counts the *set* of its tokens.
    Its traceback, from (i, j): diagonal on a match, else up when table[i-1][j] > table[i][j-1],
    else left. On a mismatch table[i][j] = max(up, left), so "up beats left" holds exactly when
    table[i][j] > table[i][j-1], i.e. when bit j-1 of rows[i] is set. So within row i the walk goes
    left to the highest column j' <= j where y matches x[i-1] or rows[i] rises, then takes the
    diagonal (match) or goes up: one bit search per row instead of one step per cell.
    """
    rows, masks = _lcs_rows(x, y)
    i, j = len(x), len(y)
    tokens = set()
    while i and j:
        m = masks[i]
        stops = (m | rows[i]) & ((1 << j) - 1)
        if not stops:
            break
        j = stops.bit_length()
        if (m >> (j - 1)) & 1:
            tokens.add(x[i - 1])
            j -= 1
        i -= 1
    return tokens


def _lcs_type_count(x: list[str], y: list[str], x_types: int, y_types: int) -> int:
    # If either side has no repeated token, the LCS's matched positions carry distinct tokens, so
    # the number of token types on it is its length, whichever LCS the traceback would pick.
    if y_types == len(y):
        return _lcs_len_distinct(x, y)
    if x_types == len(x):
        return _lcs_len_distinct(y, x)
    return len(_lcs_tokens(x, y))


def _rouge_l(hyp_sents: list[list[str]], ref_sents: list[list[str]], hyp_types: int, ref_types: int) -> float:
    # Summary-level union LCS as in rouge 1.0.0: the union of LCS token *sets* over every
    # (reference sentence, hypothesis sentence) pair, divided by the numbers of distinct words.
    if len(ref_sents) == 1 and len(hyp_sents) == 1:
        llcs = _lcs_type_count(ref_sents[0], hyp_sents[0], ref_types, hyp_types)
    else:
        union: set[str] = set()
        for rs in ref_sents:
            for hs in hyp_sents:
                union |= _lcs_tokens(rs, hs)
        llcs = len(union)
    # rouge 1.0.0's Rouge-L F is its Rouge-N F with the LCS token count as the overlap.
    return _f_score(llcs, hyp_types, ref_types)


def _bleu(overlaps: list[int], hyp_len: int, ref_len: int) -> float:
    # nltk sentence_bleu, uniform 4-gram weights, method1 smoothing, one reference.
    if overlaps[0] == 0:
        return 0.0
    logs = []
    for n, o in enumerate(overlaps, start=1):
        denominator = max(1, hyp_len - n + 1)
        # nltk takes log(Fraction(o, d)); float(Fraction) is o / d correctly rounded, as here.
        logs.append(0.25 * math.log(o / denominator if o else _BLEU_EPS / denominator))
    if hyp_len > ref_len:
        bp = 1.0
    else:
        bp = math.exp(1 - ref_len / hyp_len)
    return bp * math.exp(math.fsum(logs))


def _lcs_len_distinct(x: list[str], y: list[str]) -> int:
    # LCS length when y has no repeated token: its match masks are one bit each, so the table
    # is built by one C-level dict() call. LCS length is symmetric, so either side may play y.
    match = dict(zip(y, _POW2[: len(y)] if len(y) <= len(_POW2) else [1 << j for j in range(len(y))]))
    full = (1 << len(y)) - 1
    v = full
    # A token absent from y leaves v unchanged, so only matching tokens are visited. Carries
    # only run upwards, so bits above y's length may hold garbage: mask once at the end.
    for m in filter(None, map(match.get, x)):
        u = v & m
        v = (v + u) | (v - u)
    return (~v & full).bit_count()


_POW2 = [1 << j for j in range(256)]


def _score_plain(h: list[str], r: list[str]) -> tuple[float, float, float, float]:
    """Scores for the usual pair: both texts free of ".", whitespace and case-folding surprises.

    Then every character is one token for BLEU and one word in a single rouge sentence, so the
    two scorers share their n-gram counts, and Rouge-L needs only the one LCS.
    """
    nh, nr = len(h), len(r)
    hs, rs = set(h), set(r)
    common = hs & rs
    if not common:
        # No shared character: every precision, the LCS and nltk's BLEU are 0.
        return 0.0, 0.0, 0.0, 0.0
    if len(hs) == nh or len(rs) == nr:
        o1 = len(common)
    else:
        hc, rc = Counter(h), Counter(r)
        o1 = sum(map(min, map(hc.__getitem__, common), map(rc.__getitem__, common)))
    # Higher-order overlaps are bounded by lower-order ones (a matched n-gram needs two matched
    # (n-1)-grams, even "aaa"), so once one is below 2 the next is 0. Written out per order
    # because this is the hot loop of every evaluation.
    o2 = o3 = o4 = 0
    if o1 > 1:
        h1, r1 = h[1:], r[1:]
        g = set(zip(h, h1))
        o2 = len(g.intersection(zip(r, r1))) if len(g) == nh - 1 else _overlap(_ngrams(h, 2), _ngrams(r, 2))
        if o2 > 1:
            h2, r2 = h[2:], r[2:]
            g = set(zip(h, h1, h2))
            o3 = len(g.intersection(zip(r, r1, r2))) if len(g) == nh - 2 else _overlap(_ngrams(h, 3), _ngrams(r, 3))
            if o3 > 1:
                h3, r3 = h[3:], r[3:]
                g = set(zip(h, h1, h2, h3))
                o4 = (
                    len(g.intersection(zip(r, r1, r2, r3)))
                    if len(g) == nh - 3
                    else _overlap(_ngrams(h, 4), _ngrams(r, 4))
                )
    bleu = _bleu([o1, o2, o3, o4], nh, nr)
    r1 = _f_score(o1, nh, nr)
    r2 = _f_score(o2, nh - 1, nr - 1)
    rl = _f_score(_lcs_type_count(r, h, len(rs), len(hs)), len(hs), len(rs))
    return r1, r2, rl, bleu


def _plain(text: str, lowercase: bool = True) -> str | None:
    """text (lower-cased) when the study's tokens of `text` are exactly its (lower-cased) characters.

    That holds when lower-casing maps each character to one character with no context rule (the
    Greek final sigma is CPython's only one), and there is no "." (rouge's sentence split) and no
    whitespace (which rouge collapses and BLEU turns into "" tokens). Otherwise None.
    """
    low = text.lower() if lowercase else text
    if len(low) != len(text) or "." in low or (lowercase and "Σ" in text) or low.split() != [low]:
        return None
    return low


def _score_pair(pred: str, ref: str, lowercase: bool = True) -> tuple[float, float, float, float]:
    hp, rp = _plain(pred, lowercase), _plain(ref, lowercase)
    if hp is not None and rp is not None:
        return _score_plain(list(hp), list(rp))

    h = _study_text(pred, lowercase)
    # The scripts only scored a prediction when `pred.strip()` was non-empty and added 0 otherwise,
    # so a whitespace-only prediction is "empty" too.
    if not h.strip():
        return 0.0, 0.0, 0.0, 0.0
    r = _study_text(ref, lowercase)

    # BLEU splits on single spaces: a space inside a text becomes two "" tokens.
    hb, rb = h.split(" "), r.split(" ")
    b_overlaps = [_overlap(_ngrams(hb, n), _ngrams(rb, n)) for n in (1, 2, 3, 4)]
    bleu = _bleu(b_overlaps, len(hb), len(rb))

    hyp_sents, ref_sents = _rouge_sentences(h), _rouge_sentences(r)
    if not hyp_sents or not ref_sents:
        # rouge 1.0.0 raises here (a text that is just "."); the study never met one. Score 0.
        return 0.0, 0.0, 0.0, bleu
    # Rouge-N n-grams run across sentence boundaries (the package flattens the words first).
    hw = [w for s in hyp_sents for w in s]
    rw = [w for s in ref_sents for w in s]
    r1 = _f_score(_overlap(hw, rw), len(hw), len(rw))
    r2 = _f_score(_overlap(_ngrams(hw, 2), _ngrams(rw, 2)), max(0, len(hw) - 1), max(0, len(rw) - 1))
    rl = _rouge_l(hyp_sents, ref_sents, len(set(hw)), len(set(rw)))
    return r1, r2, rl, bleu


def _check_pairs(preds: Sequence[str], refs: Sequence[str]) -> None:
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predictions but {len(refs)} references")


def study_per_example(preds: Sequence[str], refs: Sequence[str], lowercase: bool = True) -> dict[str, np.ndarray]:
    """Per-example study metrics in [0, 1]: keys rouge_1, rouge_2, rouge_l, bleu. `lowercase`: the
    scripts lower-cased both texts from September 2020 on (the article's tables predate that)."""
    _check_pairs(preds, refs)
    rows = [_score_pair(p, r, lowercase) for p, r in zip(preds, refs)]
    table = np.array(rows, dtype=np.float64).reshape(len(rows), 4)
    return {key: table[:, k].copy() for k, key in enumerate(STUDY_KEYS)}


def study_scores(preds: Sequence[str], refs: Sequence[str], lowercase: bool = True) -> dict[str, float]:
    """Study metrics averaged over examples, ×100 (unrounded), plus n."""
    if not preds:
        raise ValueError("nothing to score: no predictions")
    per = study_per_example(preds, refs, lowercase)
    out: dict[str, float] = {key: float(per[key].mean() * 100) for key in STUDY_KEYS}
    out["n"] = len(preds)
    return out


class _Characters:
    """rouge-score tokenizer: one token per non-whitespace character, lower-cased (the char
    tokenizer's own normalisation). rouge-score's default keeps only [a-z0-9], so Chinese would
    score 0; lower-casing mirrors both that default and the study."""

    tokenize = staticmethod(normalize)


def standard_scores(preds: Sequence[str], refs: Sequence[str]) -> dict[str, float]:
    """Peer-standard scores on the raw texts, ×100: sacrebleu corpus BLEU (zh) and rouge-score's
    Rouge-L F mean over characters."""
    _check_pairs(preds, refs)
    if not preds:
        raise ValueError("nothing to score: no predictions")
    # Imported here: rouge-score pulls in nltk, which a study-mode score never needs.
    import sacrebleu
    from rouge_score import rouge_scorer

    bleu = sacrebleu.corpus_bleu(list(preds), [list(refs)], tokenize="zh").score
    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_Characters())
    # RougeScorer.score takes (target, prediction): reference first.
    fs = [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(preds, refs)]
    return {"sacrebleu": float(bleu), "rouge_score_l": float(np.mean(fs) * 100)}


WORD_KEYS = ("word_rouge_1", "word_rouge_2", "word_rouge_l")


def word_tokens(text: str) -> list[str]:
    """jieba's words of the lower-cased text, whitespace dropped: the unit of the word-level Rouge
    that Chinese summarisation papers report beside character-level scores."""
    import logging

    import jieba

    # jieba logs a "Building prefix dict ..." banner to stderr the first time it segments.
    jieba.setLogLevel(logging.WARNING)
    return [w for w in jieba.lcut(text.lower()) if w.strip()]


class _Words:
    """rouge-score tokenizer over jieba words (its default keeps only [a-z0-9]: Chinese would score 0)."""

    tokenize = staticmethod(word_tokens)


def word_scores(preds: Sequence[str], refs: Sequence[str]) -> dict[str, float]:
    """Word-level Rouge-1/2/L, ×100: rouge-score's F per example over jieba words, averaged over
    examples (an empty prediction scores 0). A common-scale extra; the study's scores are characters."""
    _check_pairs(preds, refs)
    if not preds:
        raise ValueError("nothing to score: no predictions")
    from rouge_score import rouge_scorer

    types = {"word_rouge_1": "rouge1", "word_rouge_2": "rouge2", "word_rouge_l": "rougeL"}
    scorer = rouge_scorer.RougeScorer(list(types.values()), tokenizer=_Words())
    # RougeScorer.score takes (target, prediction): reference first.
    per = [scorer.score(r, p) for p, r in zip(preds, refs)]
    return {key: float(np.mean([s[t].fmeasure for s in per]) * 100) for key, t in types.items()}
