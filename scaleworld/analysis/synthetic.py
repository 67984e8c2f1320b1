"""Synthetic studies with known truth, written from the definitions, for checking the analysis.

Every statistical procedure of `scaleworld.analysis` is checked on data drawn here, where the truth
is known (tools/stats_calibration.py prints the table; the tests run reduced versions). Nothing
here imports the code under test: the data and the true values follow from the model below and
the published definitions (rliable's aggregates, P(improvement)), so a bug in the analysis cannot
hide in its own yardstick.

The noise model of a study's runs. A value (a held-out NLL, a normalised score) of game g, model
size k, world-model seed s is

    truth[g, k] + seed_sd * (sqrt(c) u[s] + sqrt(1 - c) v[g, s])          (a seed's effect: every size)
                + run_sd  * (sqrt(c) w[k, s] + sqrt(1 - c) z[g, k, s])     (a run's own noise)

with u, v, w, z independent standard normals. The seed term is shared by a seed's sizes (a fixed
seed gives every size the same batch order); `common` = c is the share of each term that every
game shares: 0 for single-game modes (every game's seed s is another model), above 0 for joint
modes, where one model per (seed, size) plays every game. Policy trials add trial noise on top of
the run's value: trial_sd * t[g, k, s, trial].

Truths of the aggregates (games fixed, as rliable's stratified bootstrap assumes), for runs whose
marginal distribution in game g is N(mu_g, sigma^2) with sigma^2 = seed_sd^2 + run_sd^2 + trial_sd^2:

- mean: mean_g mu_g; median: median_g mu_g (the mean of the two middle games when G is even);
- IQM (rliable: the 25% trimmed mean of all runs pooled): the trimmed mean of the mixture
  (1/G) sum_g N(mu_g, sigma^2), i.e. E[X | q25 < X < q75] with q the mixture's quantiles;
- optimality gap (rliable: gamma - mean(min(run, gamma)) over all runs): gamma - mean_g
  E[min(X_g, gamma)], with E[min(X, gamma)] = mu - E[(X - gamma)+] and for a normal X
  E[(X - gamma)+] = sigma phi(d) + (mu - gamma) Phi(d), d = (mu - gamma) / sigma;
- P(X improves on Y): mean_g P(X_g > Y_g) = mean_g Phi((mu_x,g - mu_y,g) / sqrt(sigma_x^2 + sigma_y^2))
  for runs of two independent settings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats


@dataclass(frozen=True, kw_only=True)
class Noise:
    """The noise model of the module docstring (standard deviations in the values' units)."""

    seed_sd: float = 0.0
    """A seed's effect, shared by all its sizes."""
    run_sd: float = 0.02
    """A run's own noise."""
    common: float = 0.0
    """Share of each term's variance common to every game (joint modes: one model plays every game)."""
    trial_sd: float = 0.0
    """Policy trials: noise of one trial around its world model's value."""

    @property
    def run_total_sd(self) -> float:
        """sd of one run's value (one trial of it) around the truth."""
        return float(np.sqrt(self.seed_sd**2 + self.run_sd**2 + self.trial_sd**2))


def draw(truth: np.ndarray, noise: Noise, *, seeds: int, rng: np.random.Generator, trials: int = 0) -> np.ndarray:
    """Values of one mode: truth [G, K] -> [G, K, S] (trials = 0) or [G, K, S, T] (trials >= 1)."""
    truth = np.asarray(truth, dtype=float)
    games, sizes = truth.shape
    c = noise.common
    seed = np.sqrt(c) * rng.standard_normal(seeds) + np.sqrt(1 - c) * rng.standard_normal((games, seeds))  # [G, S]
    run = (np.sqrt(c) * rng.standard_normal((sizes, seeds))
           + np.sqrt(1 - c) * rng.standard_normal((games, sizes, seeds)))  # [G, K, S]
    values = truth[:, :, None] + noise.seed_sd * seed[:, None, :] + noise.run_sd * run
    if trials == 0:
        return values
    return values[..., None] + noise.trial_sd * rng.standard_normal((games, sizes, seeds, trials))


def as_curves(values: np.ndarray, *, sizes: list[str], games: list[str] | None = None) -> dict:
    """[G, K, S] -> curves[game][size][seed] -> value (the analysis' nested input)."""
    names = games or [f"g{g:02d}" for g in range(values.shape[0])]
    return {name: {size: {s: float(values[g, k, s]) for s in range(values.shape[2])} for k, size in enumerate(sizes)}
            for g, name in enumerate(names)}


def as_runs(values: np.ndarray) -> dict:
    """[G, S, T] -> runs[game][seed] -> trial values (the hierarchical bootstrap's input)."""
    return {f"g{g:02d}": {s: [float(v) for v in values[g, s]] for s in range(values.shape[1])}
            for g in range(values.shape[0])}


# ---------------------------------------------------------------------------------------------
# Scaling curves (held-out NLL, lower is better), per size k = 0..K-1 from the smallest.


def falling(sizes: int, *, drop: float, level: float = 2.4) -> np.ndarray:
    """A monotone curve that falls by `drop` nats from the smallest to the largest size, fastest at
    first (as a power law does): level + drop * (1 - (k + 1)^-0.5) / (1 - K^-0.5), reversed."""
    k = np.arange(sizes, dtype=float)
    shape = ((k + 1) ** -0.5 - sizes**-0.5) / (1 - sizes**-0.5)  # 1 at the smallest, 0 at the largest
    return level + drop * shape


def with_step(curve: np.ndarray, *, at: int, height: float) -> np.ndarray:
    """`curve` with every size from `at` on raised so that size `at` lies `height` above size at - 1."""
    out = np.array(curve, dtype=float)
    out[at:] += height - (out[at] - out[at - 1])
    return out


def with_u(curve: np.ndarray, *, top: int, height: float) -> np.ndarray:
    """`curve` whose top `top` sizes rise: the largest lies `height` above the size before them,
    linearly between (a U whose right arm spans the top sizes)."""
    out = np.array(curve, dtype=float)
    base = out[-top - 1]
    out[-top:] = base + height * np.arange(1, top + 1) / top
    return out


# ---------------------------------------------------------------------------------------------
# The true values of the aggregates (module docstring).


def _mixture_quantile(q: float, means: np.ndarray, sd: float) -> float:
    lo, hi = means.min() - 10 * sd, means.max() + 10 * sd
    return float(optimize.brentq(lambda x: stats.norm.cdf((x - means) / sd).mean() - q, lo, hi, xtol=1e-12))


def true_iqm(means: np.ndarray, sd: float) -> float:
    """The 25% trimmed mean of the mixture (1/G) sum_g N(means[g], sd^2)."""
    means = np.asarray(means, dtype=float)
    if sd == 0:
        return float(stats.trim_mean(means, 0.25))
    a, b = _mixture_quantile(0.25, means, sd), _mixture_quantile(0.75, means, sd)
    alpha, beta = (a - means) / sd, (b - means) / sd
    # per game: integral of x N(x; mu, sd) over (a, b) = mu (Phi(beta) - Phi(alpha)) - sd (phi(beta) - phi(alpha))
    inner = means * (stats.norm.cdf(beta) - stats.norm.cdf(alpha)) - sd * (stats.norm.pdf(beta) - stats.norm.pdf(alpha))
    return float(inner.mean() / 0.5)


def true_optimality_gap(means: np.ndarray, sd: float, *, gamma: float = 1.0) -> float:
    """gamma - mean_g E[min(X_g, gamma)] for X_g ~ N(means[g], sd^2)."""
    means = np.asarray(means, dtype=float)
    if sd == 0:
        return float(gamma - np.minimum(means, gamma).mean())
    d = (means - gamma) / sd
    excess = sd * stats.norm.pdf(d) + (means - gamma) * stats.norm.cdf(d)
    return float(gamma - (means - excess).mean())


def true_improvement(x_means: np.ndarray, y_means: np.ndarray, *, x_sd: float, y_sd: float) -> float:
    """mean_g P(X_g > Y_g) for independent X_g ~ N(x_means[g], x_sd^2), Y_g ~ N(y_means[g], y_sd^2)."""
    return float(stats.norm.cdf((np.asarray(x_means) - np.asarray(y_means)) / np.hypot(x_sd, y_sd)).mean())


def true_aggregates(means: np.ndarray, sd: float) -> dict[str, float]:
    """The truths of rliable's four aggregates for runs N(means[g], sd^2)."""
    means = np.asarray(means, dtype=float)
    return {"median": float(np.median(means)), "iqm": true_iqm(means, sd), "mean": float(means.mean()),
            "optimality_gap": true_optimality_gap(means, sd)}
