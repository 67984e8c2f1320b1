"""Analysis of finished studies: bootstrap statistics, scaling-regime classification, scaling-law fits.

Everything here is pure numpy/scipy on plain arrays and mappings, so it can be tested on synthetic
data and reused outside scaleworld's run folders:

- `scaleworld.analysis.statistics`: expert-random normalisation, aggregates over games (median, IQM,
  mean, optimality gap), expanded percentile and t intervals, comparisons with the seed as the unit,
  and Benjamini-Hochberg adjustment; `hierarchical`: rliable's aggregates and P(improvement) with a
  bootstrap over world-model seeds (shared by games in joint modes), and crossed seeds x episodes means.
- `scaleworld.analysis.regimes`: the versioned, published rule that classifies a game's scaling curve
  as monotonic / classical / degrading / optimisation_limited / double_descent / flat / inconclusive,
  with the evidence behind each call; `contrasts`: the pairwise size contrasts it and `interaction`
  (does joint training stabilise scaling?) share.
- `scaleworld.analysis.versus_random`: trained policies against the random policy, corrected over
  the whole table; `synthetic`: studies with known truth, written from the definitions, on which
  every procedure here is checked (tools/stats_calibration.py).
- `scaleworld.analysis.scaling_fit`: the Chinchilla-style fit of L(N) = E + A / N^alpha with a
  bootstrap interval on alpha and a held-out-size check.

Randomness always comes from an explicit `numpy.random.Generator` argument; a seed fixes every number.
"""
