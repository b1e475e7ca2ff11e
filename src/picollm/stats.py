"""Uncertainty over training seeds: a Student-t interval for a mean, and for the difference of two runs
paired by seed.

A handful of seeds is a small sample whose spread is itself estimated, so the interval uses Student's t
with n - 1 degrees of freedom rather than the normal's 1.96 (at n = 3 the 95% quantile is 4.30).
"""
from __future__ import annotations

import math

import numpy as np


def t_factor(n: int, confidence: float = 0.95) -> float:
    """Student's t quantile of a two-sided `confidence` interval over n values (n - 1 degrees of freedom)."""
    # stdtrit is what scipy.stats.t.ppf calls, without importing scipy.stats. Imported here: every figure job
    # imports this module (through picollm.tables), and most draw no interval
    from scipy.special import stdtrit

    return float(stdtrit(n - 1, (1 + confidence) / 2))


def t_interval(values, confidence: float = 0.95) -> dict:
    """{n, mean, std, ci_low, ci_high}: the mean of `values`, their sample std (ddof=1) and the Student-t
    confidence interval of the mean. NaNs (a seed without this measurement) are left out; with one value
    std and the bounds are NaN, since one seed says nothing about the spread.

    t_interval([1, 2, 3]) == {n: 3, mean: 2, std: 1, ci_low: 2 - 4.303/sqrt(3), ci_high: 2 + 4.303/sqrt(3)}
    """
    x = np.asarray(list(values), dtype=float)
    x = x[~np.isnan(x)]
    n = len(x)
    nan = float("nan")
    if n == 0:
        return {"n": 0, "mean": nan, "std": nan, "ci_low": nan, "ci_high": nan}
    mean = float(x.mean())
    if n == 1:
        return {"n": 1, "mean": mean, "std": nan, "ci_low": nan, "ci_high": nan}
    std = float(x.std(ddof=1))
    half = t_factor(n, confidence) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half}


def few_seeds_note(n: int, confidence: float = 0.95) -> str:
    """Why an interval over `n` seeds is wide, for a figure's title: "" from 4 seeds on."""
    if not 2 <= n <= 3:
        return ""
    factor = t_factor(n, confidence)
    return f"with {n} seeds the 95% t factor is {factor:.3g}: wide intervals by construction"


def paired_difference(a: dict, b: dict, confidence: float = 0.95) -> dict:
    """{n, mean_diff, ci_low, ci_high, verdict} of a - b over the seeds both runs have.

    Pairing by seed removes what two runs of one seed share (data order, initialisation stream), so the
    interval is often much narrower than the two runs' own intervals suggest. The verdict is for a
    lower-is-better measure (loss, bits per byte): "a better" when the whole interval is below 0, "b better"
    when it is above, "within noise" otherwise and whenever fewer than two seeds pair up.
    """
    seeds = sorted(set(a) & set(b))
    diffs = [a[s] - b[s] for s in seeds]
    ci = t_interval(diffs, confidence)
    if ci["n"] >= 2 and ci["ci_high"] < 0:
        verdict = "a better"
    elif ci["n"] >= 2 and ci["ci_low"] > 0:
        verdict = "b better"
    else:
        verdict = "within noise"
    return {"n": ci["n"], "mean_diff": ci["mean"], "ci_low": ci["ci_low"], "ci_high": ci["ci_high"],
            "verdict": verdict}
