"""Analysis of finished studies: bootstrap statistics, scaling-regime classification, scaling-law fits.

Everything here is pure numpy/scipy on plain arrays and mappings, so it can be tested on synthetic
data and reused outside scaleworld's run folders:

- `scaleworld.analysis.statistics`: expert-random normalisation, aggregates over games (median, IQM,
  mean, optimality gap) with stratified bootstrap confidence intervals, probability of improvement,
  paired comparisons with a Wilcoxon signed-rank test, and Benjamini-Hochberg adjustment.
- `scaleworld.analysis.regimes`: the versioned, published rule that classifies a game's scaling curve
  as monotonic / classical / double_descent / flat / inconclusive, with the evidence behind each call.
- `scaleworld.analysis.scaling_fit`: the Chinchilla-style fit of L(N) = E + A / N^alpha with a
  bootstrap interval on alpha and a held-out-size check.

Randomness always comes from an explicit `numpy.random.Generator` argument; a seed fixes every number.
"""
