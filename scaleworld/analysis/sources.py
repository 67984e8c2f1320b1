"""Does a game's scaling change with the data source? The premise test of a study with a `sources`
axis (scaleworld.study.spec.SourceSpec).

Every source's models are scored on the same held-out episodes (the base data's), tokenized by the
same tokenizer, so their NLLs are in the same units. Per (mode, game) and per seed s of a source v,
the scaling change is

    delta_v,s = NLL(largest size, s) - NLL(smallest size, s)      (nats per frame; below 0: bigger is better)

over the sizes both the source and the base measured. H0 per (mode, game, source): E[delta_source]
= E[delta_base], two-sided; paired by seed (a one-sample t on the per-seed differences) where both
have the same >= 2 seeds, else Welch's t (>= 2 seeds a side); Benjamini-Hochberg across the games
of a (mode, source). A game whose adjusted p is <= alpha "changes its scaling with the source": its
curve's direction or steepness differs, which is what moves a game between regimes. The regime
each source's own analysis gives is shown beside it (a classification, not a test). Size and power
on synthetic curves: tests/test_sources.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from scaleworld.analysis.statistics import benjamini_hochberg, difference_test

SOURCE_HYPOTHESES = ("H0 per (mode, game, source): the change in held-out NLL from the smallest to the largest size "
                     "(on the base data's held-out episodes) is the same as under the base data; seeds the unit, "
                     "paired t or Welch's t, two-sided, BH across games")


def scaling_changes(rows: list[dict[str, Any]], *, base: str, sources: list[str],
                    alpha: float = 0.05) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """source -> mode -> game -> {delta_base, delta_source (means over seeds), difference [point, lo,
    hi], p, p_bh, changed, sizes, seeds, untested}: the module docstring's test. `rows`: NLL rows
    {variant, mode, game, size, params, seed, nll} (the final reading)."""
    curves: dict[tuple[str, str, str], dict[str, dict[int, float]]] = {}  # (variant, mode, game) -> size -> seed
    params: dict[str, int] = {}
    for r in rows:
        curves.setdefault((r["variant"], r["mode"], r["game"]), {}).setdefault(r["size"], {})[r["seed"]] = r["nll"]
        params[r["size"]] = min(params.get(r["size"], r["params"]), r["params"])
    out: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for source in sources:
        for (variant, mode, game), curve in sorted(curves.items()):
            if variant != source or (base, mode, game) not in curves:
                continue
            reference = curves[(base, mode, game)]
            sizes = sorted(set(curve) & set(reference), key=lambda s: (params[s], s))
            out.setdefault(source, {}).setdefault(mode, {})[game] = _test(curve, reference, sizes)
        for games in out.get(source, {}).values():
            tested = [g for g, cell in games.items() if cell["p"] is not None]
            adjusted = benjamini_hochberg([games[g]["p"] for g in tested]) if tested else []
            for g, p_bh in zip(tested, adjusted):
                games[g]["p_bh"] = float(p_bh)
                games[g]["changed"] = bool(p_bh <= alpha)
    return out


def _deltas(curve: dict[str, dict[int, float]], sizes: list[str]) -> dict[int, float]:
    small, large = curve[sizes[0]], curve[sizes[-1]]
    return {s: large[s] - small[s] for s in sorted(set(small) & set(large))}


def _test(curve: dict[str, dict[int, float]], reference: dict[str, dict[int, float]],
          sizes: list[str]) -> dict[str, Any]:
    cell: dict[str, Any] = {"sizes": sizes, "delta_base": None, "delta_source": None, "difference": None,
                            "p": None, "p_bh": None, "changed": None, "seeds": 0, "untested": None}
    if len(sizes) < 2:
        return cell | {"untested": "needs >= 2 sizes measured under both sources"}
    x, y = _deltas(curve, sizes), _deltas(reference, sizes)
    cell |= {"delta_source": float(np.mean(list(x.values()))) if x else None,
             "delta_base": float(np.mean(list(y.values()))) if y else None}
    both = sorted(set(x) & set(y))
    paired = len(both) >= 2 and sorted(x) == sorted(y)
    if not paired and (len(x) < 2 or len(y) < 2):
        return cell | {"seeds": min(len(x), len(y)), "untested": "needs >= 2 seeds a side at both ends"}
    a = np.array([x[s] for s in both] if paired else list(x.values()))
    b = np.array([y[s] for s in both] if paired else list(y.values()))
    interval, _, _, p = difference_test(a, b, paired=paired, confidence=0.95)
    return cell | {"difference": {"point": interval.point, "lo": interval.lo, "hi": interval.hi}, "p": p,
                   "seeds": len(both) if paired else min(a.size, b.size), "paired": paired}
