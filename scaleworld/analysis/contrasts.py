"""Contrasts between the sizes of a scaling curve, and their one-sided tests against a margin.

A curve is K arrays of per-seed values (lower is better). Every pair of sizes (i, j) is compared:

- Welch (`paired=False`): diff[i, j] = m_i - m_j of the seed means, standard error
  sqrt(s_i^2 / n_i + s_j^2 / n_j), Welch-Satterthwaite degrees of freedom.
- Paired (`paired=True`, every size the same seeds in the same order): one-sample t on the per-seed
  differences v_i - v_j: their mean, sd / sqrt(n), n - 1 degrees of freedom. A seed's effect shared
  by its sizes (with a fixed seed every size sees the same batch order) cancels.

`p_above(diff, se, dof, margin)` tests H0: mu_i - mu_j <= margin (small p: i lies more than margin
above j); `p_below` tests H0: mu_i - mu_j >= margin (small p: i lies less than margin above j). With
zero spread (noiseless data) the sign of diff - margin decides outright (p = 0 or 1).
"""

from __future__ import annotations

import numpy as np

Contrasts = tuple[np.ndarray, np.ndarray, np.ndarray]
"""(diff [K, K], standard error [K, K], degrees of freedom [K, K])."""


def welch(values: list[np.ndarray]) -> Contrasts:
    means = np.array([v.mean() for v in values])
    counts = np.array([v.size for v in values], dtype=float)
    var_of_mean = np.array([v.var(ddof=1) for v in values]) / counts
    se2 = var_of_mean[:, None] + var_of_mean[None, :]
    dof_denominator = (var_of_mean**2 / (counts - 1))[:, None] + (var_of_mean**2 / (counts - 1))[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        dof = np.where(dof_denominator > 0, se2**2 / dof_denominator, counts[:, None] + counts[None, :] - 2)
    return means[:, None] - means[None, :], np.sqrt(se2), dof


def paired(values: list[np.ndarray]) -> Contrasts:
    runs = np.stack(values)  # [K, n]
    differences = runs[:, None, :] - runs[None, :, :]  # [K, K, n]
    n = runs.shape[1]
    se = differences.std(axis=-1, ddof=1) / np.sqrt(n)
    return differences.mean(axis=-1), se, np.full(se.shape, n - 1.0)


def contrasts(values: list[np.ndarray], *, paired_by_seed: bool) -> Contrasts:
    """Every pair's contrast (module docstring); `paired_by_seed` needs equal-length arrays."""
    return paired(values) if paired_by_seed else welch(values)


def p_above(diff: np.ndarray, se: np.ndarray, dof: np.ndarray, margin: float) -> np.ndarray:
    """One-sided p of H0: mu_i - mu_j <= margin."""
    from scipy import stats  # here, not at the top: the spec checks RegimeRule without scipy

    excess = diff - margin
    with np.errstate(invalid="ignore", divide="ignore"):
        p = stats.t.sf(excess / se, dof)
    return np.where(se > 0, p, np.where(excess > 0, 0.0, 1.0))


def p_below(diff: np.ndarray, se: np.ndarray, dof: np.ndarray, margin: float) -> np.ndarray:
    """One-sided p of H0: mu_i - mu_j >= margin."""
    from scipy import stats  # here, not at the top: the spec checks RegimeRule without scipy

    excess = diff - margin
    with np.errstate(invalid="ignore", divide="ignore"):
        p = stats.t.cdf(excess / se, dof)
    return np.where(se > 0, p, np.where(excess < 0, 0.0, 1.0))
