"""The report's numbers as flat tables: `tables` in `scaleworld report --json F`.

Each table is a list of rows, each row a flat dict with the keys of `TABLES[name]`, no value nested (an
interval is three keys: x, x_lo, x_hi). Rows of every table name their cell by the same keys where
they have one: variant, mode, game, size, seed, trial. So `pandas.DataFrame(doc["tables"]["regimes"])`
is one call, and tables join on those keys. null is a number that could not be computed (NaN) or a
test left untested (its `untested` key says why). The nested analysis.json each row comes from stays
under `regimes` in the same file.
"""

from __future__ import annotations

from typing import Any

from scaleworld.report.export import CONTROL_COLUMNS, NLL_COLUMNS

TABLES: dict[str, tuple[str, ...]] = {
    "nll": NLL_COLUMNS,  # every held-out NLL reading (export.NLL_COLUMNS says what each key is)
    "control": CONTROL_COLUMNS,  # every control run's real-game score, raw and normalised
    # a game's scaling regime per mode; best_params: the best size's parameter count; reason: the evidence
    "regimes": ("variant", "mode", "game", "regime", "best_params", "reason", "regime_best_checkpoint"),
    # held-out NLL = E + A / N^alpha per (mode, game); held_out_error: the largest size predicted from the rest
    "fits": ("variant", "mode", "game", "alpha", "alpha_lo", "alpha_hi", "E", "E_lo", "E_hi", "held_out_error",
             "untested"),
    # one aggregate (median, iqm, mean, optimality_gap) of normalised scores per (mode, size)
    "scores": ("variant", "mode", "size", "statistic", "value", "value_lo", "value_hi", "games", "runs"),
    # P(x beats y) per size, of held-out NLL (measure nll: lower wins) or normalised score (measure score)
    "improvement": ("variant", "measure", "x", "y", "size", "p_improvement", "p_improvement_lo",
                    "p_improvement_hi", "games"),
    # matched - joint held-out NLL per size, the mean over games with the seed as the unit
    "matched_vs_joint": ("variant", "size", "games", "seeds", "paired", "difference", "difference_lo",
                         "difference_hi", "p", "untested"),
    # "x stabilises y" per game: the largest rise of each curve with size and the intersection-union test
    "stabilises": ("variant", "x", "y", "game", "rise_y", "rise_x", "p_rise", "p_no_rise", "p_bh", "stabilised",
                   "untested"),
    # the imagination-trained policies against random per (mode, size, game)
    "versus_random": ("variant", "mode", "size", "game", "score", "random_score", "p_holm", "p_bh", "beats_random",
                      "runs_beating", "runs", "imagined_reward_per_step", "real_reward_per_step"),
    # the premise test per (source, mode, game): the change in NLL from the smallest to the largest size
    "source_changes": ("source", "mode", "game", "delta_base", "delta_source", "difference", "difference_lo",
                       "difference_hi", "p", "p_bh", "changed", "untested"),
    # each tokenizer's quality per game against the gate of its tokens job
    "tokenizers": ("tokenizer", "scope", "game", "residual_fraction", "perplexity_median", "distinct_codes",
                   "psnr_db", "max_residual", "passed"),
}
"""Every flat table of the --json file and its keys, in order."""


def _interval(prefix: str, ci: dict[str, Any] | None) -> dict[str, Any]:
    ci = ci or {}
    return {prefix: ci.get("point"), f"{prefix}_lo": ci.get("lo"), f"{prefix}_hi": ci.get("hi")}


def tidy_tables(results: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """`results` (terminal.collect_results) as the flat tables of `TABLES`."""
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in TABLES}
    out["nll"] = [{k: r[k] for k in NLL_COLUMNS} for r in results["nll"]]
    out["control"] = [dict(zip(CONTROL_COLUMNS, (variant, mode, r["game"], r["size"], r["seed"], r["trial"],
                                                 r["score"], r["normalised"], r["upper_kind"], r["id"])))
                      for r in results["control"]["runs"] for variant in r["variants"] for mode in r["modes"]]
    for variant, a in results["regimes"].items():
        best = a.get("modes_best") or {}
        for mode, games in a.get("modes", {}).items():
            for game, r in games.items():
                out["regimes"].append({"variant": variant, "mode": mode, "game": game, "regime": r["regime"],
                                       "best_params": r["best_params"], "reason": r["reason"],
                                       "regime_best_checkpoint": best.get(mode, {}).get(game, {}).get("regime")})
        for mode, games in (a.get("fits") or {}).items():
            for game, f in games.items():
                held = f.get("held_out")
                out["fits"].append({"variant": variant, "mode": mode, "game": game,
                                    **_interval("alpha", f.get("alpha_ci")), **_interval("E", f.get("E_ci")),
                                    "held_out_error": held and held.get("relative_error"),
                                    "untested": f["reason"] if f["fit"] is None else None})
        for mode, sizes in ((a.get("scores") or {}).get("aggregates") or {}).items():
            for size, row in sizes.items():
                for statistic in ("median", "iqm", "mean", "optimality_gap"):
                    out["scores"].append({"variant": variant, "mode": mode, "size": size, "statistic": statistic,
                                          **_interval("value", row.get(statistic)), "games": len(row["games"]),
                                          "runs": sum(row["runs"].values())})
        for measure, improvement in (("nll", (a.get("fidelity") or {}).get("improvement")),
                                     ("score", (a.get("scores") or {}).get("improvement"))):
            for name, sizes in (improvement or {}).items():
                x, y = name.split("_vs_")
                for size, c in sizes.items():
                    out["improvement"].append({"variant": variant, "measure": measure, "x": x, "y": y, "size": size,
                                               **_interval("p_improvement", c), "games": len(c.get("games", []))})
        for size, p in (a.get("matched_vs_joint") or {}).items():
            out["matched_vs_joint"].append({"variant": variant, "size": size, "games": len(p.get("games") or []),
                                            "seeds": len(p.get("seeds") or []), "paired": p.get("paired"),
                                            **_interval("difference", p.get("mean_difference")), "p": p.get("p"),
                                            "untested": p.get("untested") or None})
        for name, test in (a.get("interaction") or {}).items():
            x, y = name.split("_stabilises_")
            for game, g in test["games"].items():
                out["stabilises"].append({"variant": variant, "x": x, "y": y, "game": game,
                                          **{k: g.get(k) for k in ("rise_y", "rise_x", "p_rise", "p_no_rise", "p_bh",
                                                                   "stabilised")}, "untested": None})
            for game, why in test.get("left_out", {}).items():
                out["stabilises"].append({"variant": variant, "x": x, "y": y, "game": game, "rise_y": None,
                                          "rise_x": None, "p_rise": None, "p_no_rise": None, "p_bh": None,
                                          "stabilised": None, "untested": why})
        for mode, sizes in (a.get("control") or {}).items():
            for size, games in sizes.items():
                for game, c in games.items():
                    out["versus_random"].append({
                        "variant": variant, "mode": mode, "size": size, "game": game, "score": c["score"],
                        "random_score": c["random"]["score"], "p_holm": c.get("p_holm"), "p_bh": c.get("p_bh"),
                        "beats_random": c["beats_random"], "runs_beating": c["runs_beating"], "runs": len(c["runs"]),
                        "imagined_reward_per_step": c["imagined_reward_per_step"],
                        "real_reward_per_step": c["real_reward_per_step"]})
    for source, modes in ((results.get("sources") or {}).get("changes") or {}).items():
        for mode, games in modes.items():
            for game, c in games.items():
                out["source_changes"].append({"source": source, "mode": mode, "game": game,
                                              **{k: c[k] for k in ("delta_base", "delta_source", "p", "p_bh",
                                                                   "changed", "untested")},
                                              **_interval("difference", c["difference"])})
    for r in results["tokenizers"]:
        q = r["quality"] or {}
        out["tokenizers"].append({"tokenizer": r["tokenizer"], "scope": r["scope"], "game": r["game"],
                                  **{k: q.get(k) for k in ("residual_fraction", "perplexity_median", "distinct_codes",
                                                           "psnr_db")},
                                  "max_residual": r["max_residual"], "passed": r["passed"]})
    for name, rows in out.items():  # every row has exactly its table's keys, in order
        out[name] = [{k: row[k] for k in TABLES[name]} for row in rows]
    return out
