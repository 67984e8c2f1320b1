"""Chinchilla-style scaling-law fit: L(N) = E + A / N^alpha.

How the fit works (following Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models"):

- The model is fitted in log space: minimise sum_k Huber_delta(log L_pred(N_k) - log L_obs(N_k)), with
  log L_pred = logsumexp(e, a - alpha * log N), E = exp(e), A = exp(a). The exponential
  parametrisation keeps E and A positive and the log-sum-exp keeps the prediction finite for any
  parameters; the Huber loss (delta = 1e-3 by default) keeps one odd size from dragging the fit.
- Observations are the per-size means over seeds, so every size weighs the same whatever its seed
  count; seed-to-seed spread enters through the bootstrap.
- Internally N is divided by the geometric mean of the sizes (A is converted back on output), so the
  optimiser sees numbers of order one. Starts form a grid (alpha x E as a fraction of the smallest
  loss, A set so the curve passes through the middle of the data); the objective is evaluated on the
  whole grid at once and L-BFGS-B (analytic gradient, alpha bounded to [0, 5]) runs from the best
  few grid points; the best end point wins. (Chinchilla ran L-BFGS from every grid point; screening
  first gives the same optimum on this 3-parameter problem at a fraction of the cost.)
- Bootstrap: resample seeds with replacement, refit (warm-started at the full-data fit), take
  expanded percentile intervals of alpha and E (`scaleworld.analysis.statistics.expanded_interval`:
  n = the fewest seeds of a size). When every size has the same seeds (`paired`: with a fixed seed
  every size sees the same batch order) one draw of seeds serves every size, keeping what a seed's
  sizes share (dof n - 1); else each size is drawn alone (dof: the sum over sizes of n_k - 1).
  Measured coverage of 95% intervals of alpha (tools/stats_calibration.py, 8 seeds, 7 sizes):
  plain percentiles drawn per size cover 100% when 90% of a seed's noise is shared by its sizes
  (the shared part moves the curve, not its shape, but independent draws break it up); drawn by
  seed with n - 1 dof, 95% there and 98% when the sizes share nothing (the pooled dof would give
  95% and 92%: the conservative choice is kept, as the share is unknown in a real study).
- Held-out-size check: fit without the largest size and report how far the prediction for the
  largest size lands from its observed mean (relative error). A fit that cannot extrapolate one
  step up the ladder should not be trusted further.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import glob
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import scipy
from scipy import optimize
from scipy.special import expit

from scaleworld.analysis.statistics import ConfidenceInterval, as_values, check_bootstrap, expanded_interval
from scaleworld.errors import ScaleworldError

DEFAULT_HUBER_DELTA = 1e-3  # as in Chinchilla: residuals are log-ratios, so 1e-3 is 0.1%
_ALPHA_BOUNDS = (0.0, 5.0)
_START_ALPHAS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5)
_START_E_FRACTIONS = (0.0, 0.3, 0.6, 0.8, 0.9, 0.97)  # E as a fraction of the smallest observed loss
_REFINED_STARTS = 6  # grid points L-BFGS-B starts from


@dataclass(frozen=True)
class PowerLawFit:
    """L(N) = E + A / N^alpha, N in parameters."""

    E: float
    """Irreducible loss: the limit for infinitely large models."""
    A: float
    alpha: float
    huber_loss: float
    """The minimised objective: sum of Huber(log residual) (divided by delta^2, see _huber)."""
    sizes: int
    """How many sizes the fit saw."""

    def predict(self, params: object) -> np.ndarray:
        n = np.asarray(params, dtype=float)
        return self.E + np.exp(np.log(self.A) - self.alpha * np.log(n))  # A / N^alpha without overflow


@dataclass(frozen=True)
class HeldOutCheck:
    params: float
    """The held-out (largest) size."""
    observed: float
    """Its mean over seeds."""
    predicted: float
    """What the fit on the smaller sizes predicts for it."""
    relative_error: float
    """(predicted - observed) / observed."""


@dataclass(frozen=True)
class ScalingLawFit:
    fit: PowerLawFit
    alpha_ci: ConfidenceInterval
    E_ci: ConfidenceInterval
    held_out: HeldOutCheck | None
    """None when there are fewer than 4 sizes (the fit without the largest needs 3)."""


@functools.cache
def _scipy_openblas() -> ctypes.CDLL | None:
    """The OpenBLAS bundled in scipy's Linux wheels (already loaded by scipy), or None elsewhere."""
    try:
        path = glob.glob(os.path.join(os.path.dirname(scipy.__file__) + ".libs", "libscipy_openblas*.so*"))[0]
        library = ctypes.CDLL(path)
        library.scipy_openblas_get_num_threads.restype = ctypes.c_int
        library.scipy_openblas_set_num_threads.argtypes = [ctypes.c_int]
        return library
    except (IndexError, OSError, AttributeError):
        return None


@contextlib.contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """Run scipy's BLAS on one thread inside the block (best effort; a no-op where not possible).

    Why: scipy's L-BFGS-B makes a few tiny LAPACK calls per iteration, and a multi-threaded OpenBLAS
    wakes its worker threads for each. On a busy machine (a shared CI runner, a cluster node) that
    makes one 3-parameter fit 15-40x slower (measured: 250 ms instead of 6-16 ms), which the
    bootstrap multiplies by its reps. The previous thread count is restored on exit.
    """
    library = _scipy_openblas()
    if library is None:
        yield
        return
    previous = library.scipy_openblas_get_num_threads()
    library.scipy_openblas_set_num_threads(1)
    try:
        yield
    finally:
        library.scipy_openblas_set_num_threads(previous)


def _check_sizes(params: Sequence[float], *, minimum: int) -> np.ndarray:
    sizes = np.asarray(params, dtype=float).reshape(-1)
    if sizes.size < minimum:
        raise ScaleworldError(f"a scaling-law fit needs at least {minimum} sizes, got {sizes.size}; "
                              "add sizes to the ladder")
    if not np.all(np.isfinite(sizes) & (sizes > 0)):
        raise ScaleworldError("parameter counts must be finite and positive; check the size ladder")
    if np.unique(sizes).size != sizes.size:
        raise ScaleworldError("parameter counts must be distinct; merge runs of the same size")
    return sizes


def _check_losses(losses: object, *, count: int, what: str) -> np.ndarray:
    values = as_values(losses, what=what)
    if values.size != count:
        raise ScaleworldError(f"got {count} sizes but {values.size} {what}; pass one per size")
    if np.any(values <= 0):
        raise ScaleworldError(f"{what} must be positive: the fit works in log space (shift the metric if needed)")
    return values


def _log_predictions(thetas: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log L_pred for parameter rows theta = (e, a, alpha): (..., 3) -> (..., sizes); also the power term."""
    e, a, alpha = thetas[..., 0:1], thetas[..., 1:2], thetas[..., 2:3]
    power_term = a - alpha * u
    return np.logaddexp(e, power_term), power_term


def _huber(residual: np.ndarray, huber_delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Huber(residual) / delta^2 and its derivative. Dividing by delta^2 leaves the minimum where it
    is but keeps the objective of order one near it, so the optimiser's tolerances do not stop early."""
    small = np.abs(residual) <= huber_delta
    loss = np.where(small, 0.5 * residual**2 / huber_delta**2, np.abs(residual) / huber_delta - 0.5)
    slope = np.where(small, residual / huber_delta**2, np.sign(residual) / huber_delta)
    return loss, slope


def _objective(theta: np.ndarray, u: np.ndarray, log_loss: np.ndarray, huber_delta: float) -> tuple[float, np.ndarray]:
    """The fit objective and its gradient in theta = (e, a, alpha); u = log(N / N_ref)."""
    log_pred, power_term = _log_predictions(theta, u)
    loss, slope = _huber(log_pred - log_loss, huber_delta)
    weight_e = expit(theta[0] - power_term)  # d log_pred / d e; the power term gets the rest
    gradient = np.array([
        np.sum(slope * weight_e),
        np.sum(slope * (1 - weight_e)),
        np.sum(slope * (1 - weight_e) * -u),
    ])
    return float(loss.sum()), gradient


def _minimise(starts: np.ndarray, u: np.ndarray, log_loss: np.ndarray,
              huber_delta: float) -> tuple[np.ndarray, float]:
    """Best L-BFGS-B end point over the start rows (S, 3)."""
    low, high = log_loss.min(), log_loss.max()
    bounds = [(low - 30.0, high + 1.0), (low - 30.0, high + 30.0), _ALPHA_BOUNDS]
    best_theta, best_value = starts[0], np.inf
    with _single_threaded_blas():
        for start in starts:
            result = optimize.minimize(_objective, start, args=(u, log_loss, huber_delta), jac=True,
                                       method="L-BFGS-B", bounds=bounds,
                                       options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-10})
            if result.fun < best_value:
                best_theta, best_value = result.x, float(result.fun)
    return best_theta, best_value


def _screened_starts(u: np.ndarray, losses: np.ndarray, huber_delta: float) -> np.ndarray:
    """The grid points with the lowest objective, best first."""
    middle = float(np.exp(np.mean(np.log(losses))))  # the curve's level near u = 0 (N = N_ref)
    grid = []
    for fraction in _START_E_FRACTIONS:
        irreducible = max(fraction * losses.min(), 1e-6 * losses.min())
        a = np.log(max(middle - irreducible, 1e-3 * middle))
        grid.extend((np.log(irreducible), a, alpha) for alpha in _START_ALPHAS)
    grid = np.array(grid)
    log_pred, _ = _log_predictions(grid, u)
    values = _huber(log_pred - np.log(losses), huber_delta)[0].sum(axis=1)
    return grid[np.argsort(values, kind="stable")[:_REFINED_STARTS]]


def _to_fit(theta: np.ndarray, value: float, reference: float, sizes: int) -> PowerLawFit:
    e, a, alpha = (float(t) for t in theta)
    # L = E + A' (N / N_ref)^-alpha = E + (A' N_ref^alpha) N^-alpha
    return PowerLawFit(E=float(np.exp(e)), A=float(np.exp(a + alpha * np.log(reference))), alpha=alpha,
                       huber_loss=value, sizes=sizes)


def fit_power_law(params: Sequence[float], losses: object, *,
                  huber_delta: float = DEFAULT_HUBER_DELTA) -> PowerLawFit:
    """Fit L(N) = E + A / N^alpha to one loss per size (e.g. the seed means)."""
    sizes = _check_sizes(params, minimum=3)
    values = _check_losses(losses, count=sizes.size, what="losses")
    if not huber_delta > 0:
        raise ScaleworldError(f"huber_delta={huber_delta} must be positive (Chinchilla uses 1e-3)")
    reference = float(np.exp(np.mean(np.log(sizes))))
    u = np.log(sizes / reference)
    theta, value = _minimise(_screened_starts(u, values, huber_delta), u, np.log(values), huber_delta)
    return _to_fit(theta, value, reference, sizes.size)


def _per_size_values(params: Sequence[float], values: Sequence[object], *,
                     minimum: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Sizes ascending with their per-seed loss arrays."""
    sizes = _check_sizes(params, minimum=minimum)
    if len(values) != sizes.size:
        raise ScaleworldError(f"got {sizes.size} parameter counts but {len(values)} value arrays; "
                              "pass one array of per-seed losses per size")
    arrays = [_check_losses(v, count=np.size(v), what=f"losses for size {n:.4g}") for n, v in zip(sizes, values)]
    order = np.argsort(sizes)
    return sizes[order], [arrays[i] for i in order]


def held_out_size_check(params: Sequence[float], values: Sequence[object], *,
                        huber_delta: float = DEFAULT_HUBER_DELTA) -> HeldOutCheck:
    """Fit on every size but the largest (per-size seed means) and predict the largest."""
    sizes, arrays = _per_size_values(params, values, minimum=4)
    means = np.array([a.mean() for a in arrays])
    fit = fit_power_law(sizes[:-1], means[:-1], huber_delta=huber_delta)
    predicted = float(fit.predict(sizes[-1]))
    return HeldOutCheck(params=float(sizes[-1]), observed=float(means[-1]), predicted=predicted,
                        relative_error=(predicted - float(means[-1])) / float(means[-1]))


def fit_scaling_law(params: Sequence[float], values: Sequence[object], *, rng: np.random.Generator,
                    reps: int = 1000, confidence: float = 0.95, paired: bool = False,
                    huber_delta: float = DEFAULT_HUBER_DELTA) -> ScalingLawFit:
    """Fit per-size seed means, bootstrap alpha and E over seeds, and check a held-out size.

    values: per size, the per-seed losses (any seed count per size; lower is better); `paired`: the
    arrays are aligned by seed (every size the same seeds, in the same order: drawn together).
    """
    check_bootstrap(rng=rng, reps=reps, confidence=confidence)
    sizes, arrays = _per_size_values(params, values, minimum=3)
    means = np.array([a.mean() for a in arrays])
    fit = fit_power_law(sizes, means, huber_delta=huber_delta)
    reference = float(np.exp(np.mean(np.log(sizes))))
    u = np.log(sizes / reference)
    warm_start = np.array([np.log(fit.E), np.log(fit.A) - fit.alpha * np.log(reference), fit.alpha])
    paired = paired and len({a.size for a in arrays}) == 1
    if paired:
        picks = rng.integers(0, arrays[0].size, size=(reps, arrays[0].size))  # [reps, n]: one draw for every size
        resampled = np.column_stack([a[picks].mean(axis=1) for a in arrays])
    else:
        resampled = np.column_stack([a[rng.integers(0, a.size, size=(reps, a.size))].mean(axis=1) for a in arrays])
    seeds = min(a.size for a in arrays)
    expansion = {"seeds": seeds, "dof": seeds - 1 if paired else sum(a.size - 1 for a in arrays)}
    alphas, irreducibles = np.empty(reps), np.empty(reps)
    with _single_threaded_blas():  # once around the loop, not once per refit
        for rep, rep_means in enumerate(resampled):
            theta, _ = _minimise(warm_start[None, :], u, np.log(rep_means), huber_delta)
            alphas[rep], irreducibles[rep] = theta[2], np.exp(theta[0])
    held_out = held_out_size_check(sizes, arrays, huber_delta=huber_delta) if sizes.size >= 4 else None
    return ScalingLawFit(fit=fit, alpha_ci=expanded_interval(fit.alpha, alphas, confidence=confidence, **expansion),
                         E_ci=expanded_interval(fit.E, irreducibles, confidence=confidence, **expansion),
                         held_out=held_out)
