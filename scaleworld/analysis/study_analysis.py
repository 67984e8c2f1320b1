"""analysis.json: everything the analysis job computes from a study's finished records.

The study layer reads the records (`scaleworld.study.results`: one NLL row per fidelity job, mode
and game; the control runs' episodes and scores; the anchors' expert quality records) and hands them
here as plain rows; `analyse` returns the JSON-safe record (numbers that are not finite written as
null). Every bootstrap draws from streams fixed by the rule's seed, in a fixed order (sorted modes,
sizes and games), so a seed fixes every number.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from scaleworld.analysis.hierarchical import episode_size_means
from scaleworld.analysis.interaction import interaction_tests
from scaleworld.analysis.regimes import RegimeRule, classify_games
from scaleworld.analysis.summary import (
    baseline_comparison,
    fidelity_improvement,
    interval,
    matched_vs_joint,
    scaling_fits,
    score_summary,
)
from scaleworld.analysis.versus_random import control_evidence, family_summary

Rows = list[dict[str, Any]]


def analyse(*, rows: Rows, best_rows: Rows, control_runs: Rows, control_scores: Rows, experts: dict[str, Any],
            rule: RegimeRule, seed: int, reps: int, episode_intervals: bool,
            comparison_modes: dict[str, str]) -> dict[str, Any]:
    """The analysis.json record. `rows`, `best_rows`: NLL rows at the final and the best checkpoints
    (`scaleworld.study.results.nll_rows`); `control_runs`: the control runs with their episodes
    (`control_episodes`); `control_scores`: their normalised scores (`control_rows`); `experts`:
    per game the expert quality record (`expert_quality`); `comparison_modes`: what each mode compared
    with the joint run (matched, joint_short) holds equal to it, its report label. (``control`` is the
    control jobs' real-game scores against random.)"""
    result = _regimes(rows, rule=rule, seed=seed)
    # [mode][game][x][seed] -> NLL, x the total parameters, block parameters or size name
    curves, by_blocks, by_seed = (_by_seed(rows, key) for key in ("params", "blocks", "size"))
    blocks_of = {row["size"]: row["blocks"] for row in rows}  # orders the sizes of the interaction test
    # the best reading's bootstraps draw from a stream of their own: the final reading's stay as they were
    best = {"modes_best": _regimes(best_rows, rule=rule, seed=[seed, 2]),
            "best_steps": _grouped(best_rows, ("mode", "game", "size"), "step")} if best_rows else {}
    rng = np.random.default_rng([seed, 1])  # a stream of its own: the regimes' intervals stay as they were
    control = control_evidence(control_runs, alpha=rule.alpha)
    return plain({
        "rule": rule.to_dict(), "modes": result, **best, "comparison_modes": comparison_modes,
        "bootstrap": {"reps": reps, "seed": seed},
        "fits": scaling_fits(by_blocks, total=curves, rng=rng, reps=reps),
        "matched_vs_joint": matched_vs_joint(by_seed),
        "fidelity": {"improvement": fidelity_improvement(by_seed, rng=rng, reps=reps)},
        "baselines": baseline_comparison(rows),
        **({"size_means_episodes": _episode_intervals(rows)} if episode_intervals else {}),
        "interaction": interaction_tests(by_seed, order=sorted(blocks_of, key=lambda size: (blocks_of[size], size)),
                                         margin=rule.margin_nats, alpha=rule.alpha),
        "scores": score_summary(_scores(control_scores), rng=rng, reps=reps),
        "experts": experts,
        "control": control, "control_family": family_summary(control, alpha=rule.alpha),
    })


def expert_quality(records: list[dict[str, Any]], *, weak_below: float) -> dict[str, Any]:
    """experts[game]: an anchor record's expert quality record, flagged ``weak`` when its share of
    the PPO reference's margin over random is below `weak_below`; records without one left out."""
    experts = {}
    for record in records:
        if "expert" in record:
            share = record["expert"]["reference_share"]
            experts[record["game"]] = {**record["expert"], "weak": bool(share < weak_below), "weak_below": weak_below}
    return experts


def _scores(rows: Rows) -> dict[str, dict[str, dict[str, dict[int, list[float]]]]]:
    """scores[mode][size][game][world-model seed] -> normalised mean score of each policy trial."""
    scores: dict[str, dict[str, dict[str, dict[int, list[float]]]]] = {}
    for row in rows:
        for mode in row["modes"]:
            scores.setdefault(mode, {}).setdefault(row["size"], {}).setdefault(row["game"], {}).setdefault(
                row["seed"], []).append(row["normalised"])
    return scores


def _episode_intervals(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """[mode][game] -> per size (ascending parameters) the mean NLL with an interval over seeds and
    held-out episodes (`scaleworld.analysis.hierarchical.episode_size_means`); games whose fidelity
    records lack the episodes are left out."""
    runs = _grouped(rows, ("mode", "game", "params"), "episodes")
    out: dict[str, dict[str, Any]] = {}
    for mode, games in sorted(runs.items()):
        for game, sizes in sorted(games.items()):
            params = sorted(sizes)
            if any(e is None for p in params for e in sizes[p]):
                continue
            cis = episode_size_means([np.array(sizes[p]) for p in params])
            out.setdefault(mode, {})[game] = {"params": params, "size_means": [interval(ci) for ci in cis]}
    return out


def _regimes(rows: list[dict[str, Any]], *, rule: Any, seed: Any) -> dict[str, dict[str, Any]]:
    """Scaling regime per (mode, game) of NLL rows (`scaleworld.study.results.nll_rows`). Per size
    the runs are ordered by seed; where every size of a game has the same seeds its contrasts are
    paired (regime-rule/2 on), and where every run has a training-split NLL the mechanism check reads it."""
    runs: dict[str, dict[str, dict[int, dict[int, tuple[float, float | None]]]]] = {}  # [mode][game][params][seed]
    for row in rows:
        runs.setdefault(row["mode"], {}).setdefault(row["game"], {}).setdefault(row["params"], {})[row["seed"]] = (
            row["nll"], row.get("train_nll"))
    result = {}
    for mode, games in sorted(runs.items()):
        inputs, train, paired = {}, {}, {}
        for game, sizes in games.items():
            params = sorted(sizes)
            inputs[game] = (params, [[sizes[p][s][0] for s in sorted(sizes[p])] for p in params])
            paired[game] = len({tuple(sorted(sizes[p])) for p in params}) == 1  # per game: one missing seed
            # elsewhere leaves this game's contrasts paired
            if all(v[1] is not None for p in params for v in sizes[p].values()):
                train[game] = [[sizes[p][s][1] for s in sorted(sizes[p])] for p in params]
        curves_ok = {g: v for g, v in inputs.items() if len(v[0]) >= 2}  # a curve needs two sizes
        regimes = classify_games(curves_ok, rule=rule, rng=np.random.default_rng(seed), train=train,
                                 paired=paired) if curves_ok else {}
        result[mode] = {
            game: {"regime": res.regime, "best_params": res.best_params, "reason": res.reason,
                   "params": inputs[game][0], "nll": inputs[game][1], "train_nll": train.get(game),
                   "evidence": plain(asdict(res.evidence))}
            for game, res in regimes.items()
        }
        for game in sorted(set(inputs) - set(curves_ok)):
            result[mode][game] = {"regime": "inconclusive", "best_params": inputs[game][0][0],
                                  "reason": "one model size: no scaling curve", "params": inputs[game][0],
                                  "nll": inputs[game][1], "train_nll": train.get(game), "evidence": None}
    return result


def _by_seed(rows: list[dict[str, Any]], key: str) -> dict[str, dict[str, dict[Any, dict[int, float]]]]:
    """NLL rows as curves[mode][game][row[key]][seed] -> held-out NLL."""
    out: dict[str, dict[str, dict[Any, dict[int, float]]]] = {}
    for row in rows:
        out.setdefault(row["mode"], {}).setdefault(row["game"], {}).setdefault(row[key], {})[row["seed"]] = row["nll"]
    return out


def _grouped(rows: list[dict[str, Any]], keys: tuple[str, ...], value: str) -> dict[Any, Any]:
    """rows nested by `keys` (outermost first), each leaf the list of the rows' `value`, in row order:
    e.g. keys (mode, game, params) and value nll give curves[mode][game][params] -> per-seed NLLs."""
    out: dict[Any, Any] = {}
    for row in rows:
        node = out
        for key in keys[:-1]:
            node = node.setdefault(row[key], {})
        node.setdefault(row[keys[-1]], []).append(row[value])
    return out


def plain(value: Any) -> Any:
    """numpy scalars, NaN and infinities -> JSON-safe values (None for a number that is not finite)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
