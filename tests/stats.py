"""Pearson's chi-square goodness-of-fit test, for tests whose truth is a distribution (no scipy here)."""

import torch


def chi_square_p(counts, probs, min_expected: float = 5.0) -> float:
    """The p-value of observed `counts` under category probabilities `probs` (bins expected fewer than
    `min_expected` times are pooled into one, the usual rule for the chi-square approximation)."""
    counts = torch.as_tensor(counts, dtype=torch.float64)
    probs = torch.as_tensor(probs, dtype=torch.float64)
    probs = probs / probs.sum()
    expected = probs * counts.sum()
    big = expected >= min_expected
    obs, exp = counts[big], expected[big]
    if (~big).any():
        obs = torch.cat([obs, counts[~big].sum()[None]])
        exp = torch.cat([exp, expected[~big].sum()[None]])
    if (exp == 0).any():  # a pooled bin with no mass: any count there is impossible
        return 0.0 if obs[exp == 0].sum() > 0 else chi_square_p(obs[exp > 0], exp[exp > 0], 0.0)
    stat = ((obs - exp) ** 2 / exp).sum()
    df = len(obs) - 1
    return float(torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64), stat / 2))
