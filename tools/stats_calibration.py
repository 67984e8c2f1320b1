"""Every test and interval the report shows, checked on synthetic studies with known truth.

    .venv/bin/python tools/stats_calibration.py                  # everything, joint26's design (~30 min on 2 cores)
    .venv/bin/python tools/stats_calibration.py --quick          # a quarter of the replicates
    .venv/bin/python tools/stats_calibration.py --only stabilisation matched_vs_joint --markdown

For each procedure: its size (how often it rejects a true null; nominal 5%) under the nulls a
sceptic would pick, its power under named alternatives, and its intervals' coverage (nominal 95%),
on designs like joint26's: 26 games x 8 seeds x 7 sizes; 2 and 16 policy trials; seed- and
trial-dominated noise; seeds per game (single) or shared by every game (joint). The data and the
truths come from `scaleworld.analysis.synthetic`, which is written from the definitions and does not
import the code under test. Targets: size <= 6%, coverage 93-97% (a row outside is marked "!!");
power is reported, not judged. The tests run reduced versions of these checks
(tests/test_stats_calibration.py); ARCHITECTURE.md holds this table for the landed code.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from scaleworld.analysis.hierarchical import aggregate_cis, episode_size_means, improvement_ci
from scaleworld.analysis.interaction import stabilisation
from scaleworld.analysis.regimes import RegimePValues, RegimeRule, classify_games
from scaleworld.analysis.scaling_fit import fit_scaling_law
from scaleworld.analysis.statistics import seed_unit_comparison, t_interval
from scaleworld.analysis.synthetic import (
    Noise,
    as_curves,
    as_runs,
    draw,
    falling,
    true_aggregates,
    true_improvement,
    with_step,
    with_u,
)
from scaleworld.analysis.versus_random import control_evidence

GAMES, SEEDS, SIZES = 26, 8, 7
NAMES = [f"s{k}" for k in range(SIZES)]
PAPER = np.array([6.3e6, 12.6e6, 25e6, 38e6, 76e6, 151e6, 302e6])  # the paper ladder's 7 sizes (parameters)
ALPHA, MARGIN = 0.05, 0.05  # the regime rule's defaults


@dataclass
class Row:
    check: str
    case: str
    measure: str
    """size, power, coverage, recovery or rate."""
    value: float
    target: str
    ok: bool | None
    replicates: int


def _size(check: str, case: str, value: float, n: int) -> Row:
    return Row(check, case, "size", float(value), "<= 6%", bool(value <= 0.06), n)


def _coverage(check: str, case: str, value: float, n: int) -> Row:
    return Row(check, case, "coverage", float(value), "93-97%", bool(0.93 <= value <= 0.97), n)


def _report(check: str, case: str, measure: str, value: float, n: int) -> Row:
    return Row(check, case, measure, float(value), "report", None, n)


# ---------------------------------------------------------------------------------------------
# "Joint stabilises scaling" (scaleworld.analysis.interaction).

NLL_NOISE = Noise(seed_sd=0.02, run_sd=0.02)  # a seed's effect and a run's own noise, 0.02 nats each
JOINT_NOISE = Noise(seed_sd=0.02, run_sd=0.02, common=0.5)  # half of both shared by every game


def _stabilisation_rates(rng: np.random.Generator, n: int, single: np.ndarray, joint: np.ndarray, *,
                         single_noise: Noise, joint_noise: Noise, true_games: range = range(0)) -> tuple[float, ...]:
    """(overall rejections, stabilised calls among games where H0 holds, among games where H1 holds)."""
    overall = false = false_n = hits = 0
    for _ in range(n):
        x = as_curves(draw(joint, joint_noise, seeds=SEEDS, rng=rng), sizes=NAMES)
        y = as_curves(draw(single, single_noise, seeds=SEEDS, rng=rng), sizes=NAMES)
        result = stabilisation(x, y, order=NAMES, margin=MARGIN, alpha=ALPHA)
        overall += result["overall"]["p"] <= ALPHA
        for game, g in result["games"].items():
            if int(game[1:]) in true_games:
                hits += g["stabilised"]
            else:
                false += g["stabilised"]
                false_n += 1
    return overall / n, false / max(false_n, 1), hits / max(n * len(true_games), 1)


def check_stabilisation(rng: np.random.Generator, n: int) -> list[Row]:
    base = np.tile(falling(SIZES, drop=0.2), (GAMES, 1))
    steep = np.tile(falling(SIZES, drop=0.4), (GAMES, 1))
    quiet = Noise(seed_sd=0.01, run_sd=0.01, common=0.5)
    at_margin = np.array([with_step(c, at=4, height=MARGIN) for c in base])
    rising = np.array([with_step(c, at=4, height=0.15) for c in base])
    nulls = {
        "identical curves and noise": (base, base, JOINT_NOISE),
        "joint only less noisy (sd 0.01 vs 0.02)": (base, base, quiet),
        "joint only steeper (0.4 vs 0.2 nats)": (base, steep, JOINT_NOISE),
        "both rise by exactly the margin, 90% of joint's noise shared by games": (
            at_margin, at_margin, Noise(seed_sd=0.02, run_sd=0.02, common=0.9)),
        "both rise by 0.15 (joint does not stabilise)": (rising, rising, JOINT_NOISE),
    }
    rows = []
    for case, (single, joint, joint_noise) in nulls.items():
        overall, per_game, _ = _stabilisation_rates(rng, n, single, joint, single_noise=NLL_NOISE,
                                                    joint_noise=joint_noise)
        rows += [_size("stabilisation", f"{case}: overall", overall, n),
                 _size("stabilisation", f"{case}: per game after BH", per_game, n)]
    for height in (0.10, 0.15):
        for label, games in (("a step", 5), ("a U in the top two sizes", 8)):
            single = base.copy()
            single[:games] = [with_step(c, at=4, height=height) if games == 5 else with_u(c, top=2, height=height)
                              for c in base[:games]]
            overall, false, power = _stabilisation_rates(rng, n, single, base, single_noise=NLL_NOISE,
                                                         joint_noise=JOINT_NOISE, true_games=range(games))
            case = f"single: {label} of {height:g} nats in {games} of 26 games, joint falls"
            rows += [_report("stabilisation", f"{case}: overall", "power", overall, n),
                     _report("stabilisation", f"{case}: per rising game (BH)", "power", power, n),
                     _size("stabilisation", f"{case}: other games called stabilised", false, n)]
    return rows


# ---------------------------------------------------------------------------------------------
# Matched vs joint with the seed as the unit (statistics.seed_unit_comparison).


def check_matched_vs_joint(rng: np.random.Generator, n: int) -> list[Row]:
    truth = np.linspace(2.0, 3.0, GAMES)[:, None]  # [G, 1]: one size
    rows = []
    for common in (0.5, 0.9):
        for shift, label in ((0.0, "no difference"), (0.02, "matched worse by 0.02 nats in every game")):
            rejected = covered = 0
            for _ in range(n):
                matched = draw(truth + shift, NLL_NOISE, seeds=SEEDS, rng=rng)[:, 0]  # [G, S]
                joint = draw(truth, Noise(seed_sd=0.02, run_sd=0.02, common=common), seeds=SEEDS, rng=rng)[:, 0]
                c = seed_unit_comparison({g: dict(enumerate(matched[g])) for g in range(GAMES)},
                                         {g: dict(enumerate(joint[g])) for g in range(GAMES)}, lower_is_better=True)
                rejected += c.p <= ALPHA
                covered += c.mean_difference.contains(shift)
            case = f"{label}; {common:.0%} of the joint seed's effect shared by games"
            rows.append(_size("matched_vs_joint", case, rejected / n, n) if shift == 0 else
                        _report("matched_vs_joint", case, "power", rejected / n, n))
            rows.append(_coverage("matched_vs_joint", f"{case}: mean difference interval", covered / n, n))
    return rows


# ---------------------------------------------------------------------------------------------
# The regime rule's paired tests and its adjustment of no_worsening (scaleworld.analysis.regimes).


def _u_curve(effect: float) -> np.ndarray:
    """Best at the 4th of the 7 sizes; the smallest and the largest `effect` above it (log-parabolic arms)."""
    x = np.log(PAPER / PAPER[3])
    return 2.5 + effect * np.where(x < 0, (x / x.min()) ** 2, (x / x.max()) ** 2)


def _classify(rng: np.random.Generator, truths: np.ndarray, noise: Noise, rule: RegimeRule, *,
              adjust: tuple[str, ...] | None = None) -> tuple[list[str], list[float]]:
    """One study: (regime per game, size-effect p per game); a training split that keeps improving."""
    values = draw(truths, noise, seeds=SEEDS, rng=rng)  # [G, K, S]
    train = draw(np.tile(2.2 + 0.5 * (PAPER / PAPER[0]) ** -0.3, (len(truths), 1)), noise, seeds=SEEDS, rng=rng)
    curves = {f"g{g:02d}": (PAPER, list(values[g])) for g in range(len(truths))}
    results = classify_games(curves, rule=rule, rng=rng, train={g: list(train[i]) for i, g in enumerate(curves)},
                             paired=True, adjust=adjust)
    return [r.regime for r in results.values()], [r.evidence.p_raw.size_effect for r in results.values()]


def check_size_effect(rng: np.random.Generator, n: int) -> list[Row]:
    """95% of a run's noise shared by its seed's sizes (sd 0.1), 10 games a study."""
    noise = Noise(seed_sd=0.1 * np.sqrt(0.95), run_sd=0.1 * np.sqrt(0.05))
    truths = {"flat": np.full(SIZES, 2.5), "classical": _u_curve(0.1),
              "degrading": 2.5 + 0.1 * np.log(PAPER / PAPER[0]) / np.log(PAPER[-1] / PAPER[0])}
    rows = []
    studies = max(1, n // 10)
    for version, test in (("regime-rule/2", "Kruskal-Wallis"), ("regime-rule/3", "Friedman within seeds")):
        rule = RegimeRule(version=version, bootstrap_reps=200, permutation_reps=1000)
        for shape, truth in truths.items():
            calls, gate = [], []
            for _ in range(studies):
                c, p = _classify(rng, np.tile(truth, (10, 1)), noise, rule)
                calls += c
                gate += p
            passed = float(np.mean(np.array(gate) <= ALPHA))
            case = f"{shape} curve (effect 0.1), {test}"
            if shape == "flat":
                rows.append(_size("size_effect", f"{case}: gate passes", passed, len(gate)))
            else:
                rows.append(_report("size_effect", f"{case}: gate passes", "power", passed, len(gate)))
            rows.append(_report("size_effect", f"{case}: called {shape}", "recovery", calls.count(shape) / len(calls),
                                len(calls)))
    return rows


def check_no_worsening(rng: np.random.Generator, n: int) -> list[Row]:
    """26-game studies, sd 0.05 (half a seed's effect): BH on no_worsening or not."""
    noise = Noise(seed_sd=0.05 / np.sqrt(2), run_sd=0.05 / np.sqrt(2))
    rule = RegimeRule(bootstrap_reps=200, permutation_reps=1000)
    monotonic = falling(SIZES, drop=0.2)
    boundary = with_step(falling(SIZES, drop=0.3), at=SIZES - 1, height=MARGIN)  # the largest worse by exactly d
    every = tuple(f.name for f in dataclasses.fields(RegimePValues))
    rows = []
    studies = max(1, n // 10)
    for label, adjust in (("BH on no_worsening (the rule)", every),
                          ("no BH on no_worsening", tuple(f for f in every if f != "no_worsening"))):
        mono = np.array([_classify(rng, np.tile(monotonic, (GAMES, 1)), noise, rule, adjust=adjust)[0]
                         for _ in range(studies)])
        edge = np.array([_classify(rng, np.tile(boundary, (GAMES, 1)), noise, rule, adjust=adjust)[0]
                         for _ in range(studies)])
        rows += [_report("no_worsening", f"{label}: 26 monotonic curves (drop 0.2) called monotonic", "recovery",
                         float(np.mean(mono == "monotonic")), mono.size),
                 _size("no_worsening", f"{label}: 26 curves whose largest size is worse by d, per curve",
                       float(np.mean(edge == "monotonic")), edge.size),
                 _size("no_worsening", f"{label}: the same, studies with any curve called monotonic",
                       float(np.mean((edge == "monotonic").any(axis=1))), studies)]
    return rows


# ---------------------------------------------------------------------------------------------
# Intervals: aggregates, P(improvement), per-size means, held-out episodes, scaling fits.

SCORES = np.linspace(0.1, 1.5, GAMES)  # true normalised scores per game
DESIGNS = {"seed-dominated": (0.3, 0.1), "trial-dominated": (0.05, 0.3)}  # (seed sd, trial sd)


def check_aggregates(rng: np.random.Generator, n: int, *, reps: int = 1000) -> list[Row]:
    rows = []
    for trials in (2, 16):
        for design, (seed_sd, trial_sd) in DESIGNS.items():
            for shared in (False, True):
                noise = Noise(seed_sd=seed_sd, run_sd=0.0, trial_sd=trial_sd, common=0.5 if shared else 0.0)
                truth = true_aggregates(SCORES, noise.run_total_sd)
                hits = dict.fromkeys(truth, 0)
                for _ in range(n):
                    runs = as_runs(draw(SCORES[:, None], noise, seeds=SEEDS, rng=rng, trials=trials)[:, 0])
                    cis = aggregate_cis(runs, shared_seeds=shared, rng=rng, reps=reps)
                    for name in truth:
                        hits[name] += cis[name].contains(truth[name])
                case = f"{trials} trials, {design}, seeds {'shared by games (joint)' if shared else 'per game'}"
                rows += [_coverage("aggregates", f"{name}: {case}", hits[name] / n, n) for name in truth]
    return rows


def check_improvement(rng: np.random.Generator, n: int, *, reps: int = 1000) -> list[Row]:
    rows = []
    for design, (seed_sd, trial_sd) in DESIGNS.items():
        joint_noise = Noise(seed_sd=seed_sd, run_sd=0.0, trial_sd=trial_sd, common=0.5)
        single_noise = Noise(seed_sd=seed_sd, run_sd=0.0, trial_sd=trial_sd)
        joint_means = SCORES + 0.1
        truth = true_improvement(joint_means, SCORES, x_sd=joint_noise.run_total_sd, y_sd=single_noise.run_total_sd)
        hits = 0
        for _ in range(n):
            x = as_runs(draw(joint_means[:, None], joint_noise, seeds=SEEDS, rng=rng, trials=2)[:, 0])
            y = as_runs(draw(SCORES[:, None], single_noise, seeds=SEEDS, rng=rng, trials=2)[:, 0])
            hits += improvement_ci(x, y, x_shared=True, y_shared=False, rng=rng, reps=reps).contains(truth)
        rows.append(_coverage("improvement", f"joint vs single, 2 trials, {design} (truth {truth:.3f})", hits / n, n))
    return rows


def check_size_means(rng: np.random.Generator, n: int, *, reps: int = 1000) -> list[Row]:
    """The regime evidence's per-size intervals (statistics.t_interval), beside a plain percentile
    bootstrap of the same seeds (what they were before)."""
    rows = []
    for seeds in (4, 8):
        t_hits = boot_hits = 0
        for _ in range(n):
            values = 2.5 + 0.02 * rng.standard_normal(seeds)
            t_hits += t_interval(values).contains(2.5)
            means = values[rng.integers(0, seeds, size=(reps, seeds))].mean(axis=1)
            boot_hits += bool(np.quantile(means, 0.025) <= 2.5 <= np.quantile(means, 0.975))
        rows += [_coverage("size_means", f"one size's mean over {seeds} seeds, t interval", t_hits / n, n),
                 _report("size_means", f"one size's mean over {seeds} seeds, plain percentile bootstrap", "coverage",
                         boot_hits / n, n)]
    return rows


def check_episode_means(rng: np.random.Generator, n: int, *, reps: int = 1000) -> list[Row]:
    """Per-size means over seeds and held-out episodes (hierarchical.episode_size_means): every seed
    scored on the same E episodes; an episode's difficulty and a seed's effect both vary."""
    rows = []
    designs = {"episode-dominated": (0.3, 0.02, 0.01), "seed-dominated": (0.02, 0.1, 0.01),
               "seed x episode interaction as large as the episodes' spread": (0.1, 0.0, 0.1)}
    for episodes in (3, 10):
        for design, (episode_sd, seed_sd, interaction_sd) in designs.items():
            hits = 0
            for _ in range(n):
                difficulty = 3.0 + episode_sd * rng.standard_normal(episodes)  # [E]
                frames = rng.integers(50, 150, size=episodes).astype(float)
                per_frame = difficulty[None, :] + seed_sd * rng.standard_normal((SEEDS, 1))  # [S, E]
                per_frame = per_frame + interaction_sd * rng.standard_normal((SEEDS, episodes))
                runs = np.stack([per_frame * frames, np.broadcast_to(frames, per_frame.shape)], axis=-1)
                (ci,) = episode_size_means([runs])
                hits += ci.contains(3.0)
            rows.append(_coverage("episode_means", f"{episodes} held-out episodes, {design}", hits / n, n))
    return rows


def check_fits(rng: np.random.Generator, n: int, *, reps: int = 200) -> list[Row]:
    """L = 1.8 + 40 N^-0.3 on the paper ladder, 8 seeds, sd 0.02; a quarter of `n` studies (each
    bootstrap refits `reps` times)."""
    e, a, alpha = 1.8, 40.0, 0.3
    truth = e + a * PAPER**-alpha
    rows = []
    studies = max(1, n // 4)
    for shared in (0.0, 0.9):
        hits = {"alpha": 0, "E": 0}
        for _ in range(studies):
            seed = rng.standard_normal(SEEDS)
            values = [t + 0.02 * (np.sqrt(shared) * seed + np.sqrt(1 - shared) * rng.standard_normal(SEEDS))
                      for t in truth]
            f = fit_scaling_law(PAPER, values, rng=rng, reps=reps, paired=True)
            hits["alpha"] += f.alpha_ci.contains(alpha)
            hits["E"] += f.E_ci.contains(e)
        case = f"8 seeds, {shared:.0%} of a seed's noise shared by its sizes"
        rows += [_coverage("fits", f"{name}: {case}", hits[name] / studies, studies) for name in hits]
    return rows


# ---------------------------------------------------------------------------------------------
# Policies against random (scaleworld.analysis.versus_random).


def check_versus_random(rng: np.random.Generator, n: int, *, sizes: int = SIZES,
                        modes: tuple[str, ...] = ("single", "joint", "matched")) -> list[Row]:
    """Per cell 8 seeds x 2 trials x 16 episodes against 32 random episodes (unit-variance returns);
    26 games x 7 sizes x 3 modes = 546 cells by default. Holm within cells alone against the table's
    BH; a tenth of `n` studies (each scores 8,736 runs)."""
    studies = max(1, n // 10)
    rows = []
    for better_games, label in ((0, "no policy better than random"), (5, "5 games' policies better by 0.5 sd")):
        holm_any = bh_any = false_share = found = 0.0
        for _ in range(studies):
            runs = []
            for g in range(GAMES):
                random_returns = list(rng.standard_normal(32))
                shift = 0.5 if g < better_games else 0.0
                for mode in modes:
                    for k in range(sizes):
                        for s in range(SEEDS):
                            for t in range(2):
                                runs.append({"modes": [mode], "size": NAMES[k], "game": f"g{g:02d}", "seed": s,
                                             "trial": t, "returns": list(shift + rng.standard_normal(16)),
                                             "lengths": [100] * 16, "random_returns": random_returns,
                                             "imagined_reward": None})
            cells = [(int(game[1:]) < better_games, cell) for sizes in control_evidence(runs, alpha=ALPHA).values()
                     for games in sizes.values() for game, cell in games.items()]
            holm_any += any(cell["p_holm"] <= ALPHA for true, cell in cells if not true)
            bh_any += any(cell["beats_random"] for true, cell in cells if not true)
            calls = [true for true, cell in cells if cell["beats_random"]]
            false_share += (len(calls) - sum(calls)) / max(len(calls), 1)
            found += np.mean([cell["beats_random"] for true, cell in cells if true]) if better_games else 0.0
        rows.append(_report("versus_random", f"{label}: any null cell beats random, Holm within cells only", "rate",
                            holm_any / studies, studies))
        if better_games:
            rows += [_size("versus_random", f"{label}: false discovery rate, Holm then BH over the table",
                           false_share / studies, studies),
                     _report("versus_random", f"{label}: their cells found (BH)", "power", found / studies, studies)]
        else:
            rows.append(_size("versus_random", f"{label}: any cell beats random, Holm then BH over the table",
                              bh_any / studies, studies))
    return rows


CHECKS: dict[str, Callable[..., list[Row]]] = {
    "stabilisation": check_stabilisation, "matched_vs_joint": check_matched_vs_joint,
    "size_effect": check_size_effect, "no_worsening": check_no_worsening, "aggregates": check_aggregates,
    "improvement": check_improvement, "size_means": check_size_means, "episode_means": check_episode_means,
    "fits": check_fits, "versus_random": check_versus_random,
}


def _text(rows: list[Row], *, markdown: bool) -> str:
    lines = []
    if markdown:
        lines += ["| check | case | measure | value | target | replicates |", "|---|---|---|---|---|---|"]
    for r in rows:
        flag = "" if r.ok is None or r.ok else " !!"
        if markdown:
            lines.append(f"| {r.check} | {r.case} | {r.measure} | {r.value:.1%}{flag} | {r.target} | {r.replicates} |")
        else:
            lines.append(f"{r.check:<17} {r.measure:<9} {r.value:7.1%}{flag:<3} {r.target:<7} n={r.replicates:<6} "
                         f"{r.case}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(CHECKS), help="run these checks only")
    parser.add_argument("--replicates", type=int, default=1000, help="synthetic studies per case (default 1000)")
    parser.add_argument("--quick", action="store_true", help="a quarter of the replicates")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", action="store_true", help="print a markdown table (for ARCHITECTURE.md)")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    if args.replicates < 1:
        parser.error(f"--replicates {args.replicates}: give at least 1")
    n = max(1, args.replicates // 4) if args.quick else args.replicates
    rows: list[Row] = []
    for name in args.only or CHECKS:
        start = time.time()
        got = CHECKS[name](np.random.default_rng([args.seed, list(CHECKS).index(name)]), n)
        rows += got
        print(_text(got, markdown=False), flush=True)
        print(f"# {name}: {time.time() - start:.0f} s", file=sys.stderr, flush=True)
    if args.markdown:
        print(_text(rows, markdown=True))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in rows], f, indent=1)
    failed = [r for r in rows if r.ok is False]
    print(f"{len(rows)} rows, {len(failed)} outside their target", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
