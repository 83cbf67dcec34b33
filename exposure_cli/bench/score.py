"""Timing study-mode scoring against the packages the study used (`rouge==1.0.0` + nltk).

Kept apart from `metrics` because it needs those packages, which are test extras, not runtime deps.
"""

from __future__ import annotations

import random
import time
from typing import Callable, Sequence

import numpy as np

from ..errors import UserError
from ..metrics import STUDY_KEYS, study_per_example

# Frequent characters of Chinese titles; drawn with Zipf-like weights so that repeats (which
# decide the slow paths of both implementations) occur about as often as in real titles.
_POOL = (
    "的基于一种研究分析方法模型系统中和在与算法应用网络设计数据控制技术结构问题理论及对特性影响"
    "实验优化识别学习检测信息发展评价动态性能区域管理图像机制因素计算策略高效新型多目标关系综合"
    "自适应非线性特征融合深度神经卷积时间空间序列预测估计参数条件下的我国城市企业经济社会环境"
)
_LATIN = ["svm", "gps", "dna", "lstm", "cnn", "web", "ieee", "2016", "3d", "ii"]


def _title(rng: random.Random) -> str:
    weights = [1 / (k + 1) for k in range(len(_POOL))]
    chars = rng.choices(_POOL, weights=weights, k=rng.randint(8, 30))
    if rng.random() < 0.15:
        chars.insert(rng.randrange(len(chars) + 1), rng.choice(_LATIN))
    return "".join(chars)


def _perturb(title: str, rng: random.Random) -> str:
    # Model-output-like errors: dropped, substituted, repeated and swapped characters, truncation,
    # now and then a space or a "." so the slower general path is timed too.
    chars = list(title)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(6)
        k = rng.randrange(len(chars)) if chars else 0
        if kind == 0 and len(chars) > 1:
            del chars[k]
        elif kind == 1 and chars:
            chars[k] = rng.choice(_POOL)
        elif kind == 2 and chars:
            chars.insert(k, chars[k])
        elif kind == 3 and len(chars) > 2:
            chars = chars[: rng.randint(len(chars) // 2, len(chars))]
        elif kind == 4 and len(chars) > 1:
            j = min(k + 1, len(chars) - 1)
            chars[k], chars[j] = chars[j], chars[k]
        elif kind == 5 and rng.random() < 0.2:
            chars.insert(k, rng.choice(" ."))
    return "".join(chars)


def bench_pairs(n: int, seed: int = 0, titles: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """n deterministic (prediction, reference) pairs: references are `titles` (cycled) or built-in
    synthetic titles, predictions perturbed copies of them."""
    rng = random.Random(seed)
    refs = [titles[k % len(titles)] for k in range(n)] if titles else [_title(rng) for _ in range(n)]
    preds = [_perturb(t, rng) for t in refs]
    return preds, refs


def reference_scorer() -> Callable[[Sequence[str], Sequence[str]], dict[str, np.ndarray]]:
    """Per-example study scores computed the study's way: its loop over `rouge==1.0.0` and nltk,
    one pair at a time (the independent truth the tests hold `metrics` to)."""
    try:
        from importlib.metadata import version

        from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
        from rouge import Rouge

        rouge_version = version("rouge")
    except ImportError as e:
        raise UserError(f"the reference packages are missing ({e}): pip install rouge==1.0.0 nltk") from e
    if rouge_version != "1.0.0":
        # 1.0.1 counts n-grams as sets, so it is a different metric, not a slower one.
        raise UserError(f"rouge {rouge_version} is installed, the study used 1.0.0: pip install rouge==1.0.0 nltk")

    rouge, smooth = Rouge(), SmoothingFunction().method1

    def score(preds: Sequence[str], refs: Sequence[str]) -> dict[str, np.ndarray]:
        rows = []
        for pred, ref in zip(preds, refs):
            h, r = " ".join(pred).lower(), " ".join(ref).lower()
            if not h.strip():
                rows.append((0.0, 0.0, 0.0, 0.0))
                continue
            b = sentence_bleu(references=[r.split(" ")], hypothesis=h.split(" "), smoothing_function=smooth)
            try:
                s = rouge.get_scores(hyps=h, refs=r)[0]
            except ValueError:
                # The package raises on a text that is just "." (no sentence left); ours scores
                # Rouge 0 there, a case the study's titles never contain.
                rows.append((0.0, 0.0, 0.0, b))
                continue
            rows.append((s["rouge-1"]["f"], s["rouge-2"]["f"], s["rouge-l"]["f"], b))
        table = np.array(rows, dtype=np.float64).reshape(len(rows), 4)
        return {key: table[:, k] for k, key in enumerate(STUDY_KEYS)}

    return score


def _best_time(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def bench_score(n: int = 1000, repeat: int = 3, seed: int = 0, titles: Sequence[str] | None = None) -> dict:
    """Best-of-`repeat` wall times of ours and of the reference on the same n pairs, their ratio,
    and the largest per-example disagreement (which should be ~0)."""
    reference = reference_scorer()
    preds, refs = bench_pairs(n, seed=seed, titles=titles)
    ours_s, ours = _best_time(lambda: study_per_example(preds, refs), repeat)
    ref_s, theirs = _best_time(lambda: reference(preds, refs), repeat)
    max_diff = max(float(np.max(np.abs(ours[k] - theirs[k]))) for k in STUDY_KEYS) if n else 0.0
    return {"ours_s": ours_s, "reference_s": ref_s, "ratio": ref_s / ours_s, "n": n, "max_abs_diff": max_diff}
