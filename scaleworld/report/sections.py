"""The report's sections for what `analysis.json` adds to the regimes: scaling-law fits, matched
vs joint, joint stabilises scaling, aggregate normalised control scores, P(improvement) and the
policies against random.

Each section takes one analysis (one variant) and says so when its numbers are missing, rather than
failing: an analysis.json written before a section existed simply lacks its key. Intervals print as
"point [lo, hi]"; they are 95% intervals (the analysis functions' default confidence; analysis.json
records the bootstrap's reps and seed, shown in the settings line).
"""

from __future__ import annotations

import math
from typing import Any

from scaleworld.analysis.interaction import HYPOTHESES
from scaleworld.analysis.summary import MATCHED_HYPOTHESES
from scaleworld.report import COLLAPSE_ABOVE
from scaleworld.report.collapse import print_table
from scaleworld.report.control_scores import upper_kinds

AGGREGATE_COLUMNS = (("median", "median"), ("iqm", "IQM"), ("mean", "mean"), ("optimality_gap", "optimality gap"))
COMPARISONS = (("joint_vs_single", "joint vs single"), ("joint_vs_matched", "joint vs matched"),
               ("matched_vs_single", "matched vs single"), ("joint_vs_joint_short", "joint vs joint_short"),
               ("joint_short_vs_single", "joint_short vs single"))
"""Columns of the P(improvement) tables; the last two only where the study has a joint_short mode."""


def interval_text(ci: dict[str, float | None] | None, sep: str = " ") -> str:
    """"point [lo, hi]" with 3 decimals; "n/a" where the analysis wrote null (NaN); a point without
    bounds says why (one seed)."""
    if not ci or ci.get("point") is None:
        return "n/a"

    def num(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    if ci.get("lo") is None and ci.get("hi") is None:  # the analysis had one seed: no spread to go on
        return f"{num(ci['point'])}{sep}(no interval: needs >= 2 seeds)"
    return f"{num(ci['point'])}{sep}[{num(ci.get('lo'))}, {num(ci.get('hi'))}]"


def score_text(v: float | None, *, signed: bool = False) -> str:
    """A raw game score: 3 significant digits, whole numbers with thousands separators from 1,000 on;
    "n/a" where analysis.json holds null (a number that could not be computed, e.g. the SEM of one episode)."""
    if v is None:
        return "n/a"
    sign = "+" if signed else ""
    return f"{v:{sign},.0f}" if abs(v) >= 1000 else f"{v:{sign}.3g}"


def _point(ci: dict[str, float | None] | None) -> str:
    return "n/a" if not ci or ci.get("point") is None else f"{ci['point']:.3f}"


def size_key(size_params: dict[str, int]) -> Any:
    """Sizes in order of parameters (names sort paper-d12 before paper-d2); unknown sizes last."""
    return lambda size: (size_params.get(size, math.inf), size)


def render_settings(variant: str, analysis: dict[str, Any], console: Any) -> None:
    boot = analysis.get("bootstrap")
    if boot:
        console.print(f"settings ({variant}): bootstrap {boot['reps']} reps, seed {boot['seed']}; "
                      "intervals are 95%: expanded percentile bootstrap or t intervals, chosen per statistic from "
                      "measured coverage (ARCHITECTURE.md, 'Statistics, calibrated')")


def _section(analysis: dict[str, Any], key: str, what: str, console: Any, *, empty: str | None = None) -> Any:
    """analysis[key], or None after one line saying why `what` is not shown: an analysis.json written
    before the section existed, or (with `empty`) a study without what it needs."""
    value = analysis.get(key)
    if value is None:
        console.print(f"{what}: not in this analysis.json (written before it)")
        return None
    if not value and empty is not None:
        console.print(f"{what}: not in this study ({empty})")
        return None
    return value


def render_missing(variant: str, analysis: dict[str, Any], console: Any) -> None:
    """What the analysis went without (analysis.json ``missing``): inputs that failed or never ran
    because a failure upstream blocked them; it runs again when they finish."""
    missing = analysis.get("missing") or {}
    for u in missing.get("unmeasured", []):
        console.print(f"not measured ({variant}): {u['game']} by {u['job']}: {u['reason']}")
    if not missing.get("inputs"):
        render_could_change(missing.get("could_change"), console)
        return
    kinds = "; ".join(f"{kind} {c['failed']} failed, {c['not_run']} never ran"
                      for kind, c in missing["by_kind"].items())
    console.print(f"analysis of what finished ({variant}): {missing['inputs']} of its {missing['of']} inputs missing "
                  f"({kinds}); games with missing results: {', '.join(missing['games']) or 'none'}; it is redone "
                  "when they finish")
    for reason in missing.get("reasons", []):
        console.print(f"  failed: {reason}")
    render_could_change(missing.get("could_change"), console)


def render_could_change(could: dict[str, Any] | None, console: Any) -> None:
    """Which conclusions the missing games could change (analysis.json ``missing.could_change``,
    `scaleworld.analysis.missing_games`): each aggregate's bounds over every value they could take,
    the orders between modes they could reverse, and the regime counts they could add to."""
    if not could:
        return
    bound = lambda v, sign: f"{v:.3f}" if v is not None else f"{sign}unbounded"  # noqa: E731
    for r in could["scores"]:
        console.print(f"  {r['statistic']} of game means, {r['mode']} {r['size']}: {r['observed']:.3f} on "
                      f"{r['games_present']} games; with {', '.join(r['missing'])} at any value: "
                      f"{bound(r['low'], '-')} to {bound(r['high'], '+')}")
    for c in could["order"]:
        console.print(f"  could change: {c['higher']} above {c['lower']} in {c['statistic']} at {c['size']} "
                      f"({c['observed'][0]:.3f} vs {c['observed'][1]:.3f})")
    for r in could["regimes"]:
        counts = ", ".join(f"{regime} {n}" for regime, n in r["counts"].items())
        console.print(f"  regimes of {r['mode']}: {counts} of {r['games_present']} games; each count could "
                      f"gain up to {len(r['missing'])} ({', '.join(r['missing'])})")
    if not could["order"] and could["scores"]:
        console.print("  no order between modes in these aggregates could change, whatever the missing games show")


def render_comparison_modes(variant: str, analysis: dict[str, Any], console: Any) -> None:
    """One line per mode compared with the joint run: what it holds equal to it (analysis.json
    ``comparison_modes``; an analysis written before the name holds them as ``controls``)."""
    for mode, held in analysis.get("comparison_modes", analysis.get("controls", {})).items():
        console.print(f"comparison mode {mode} ({variant}) holds equal: {held}")


def render_experts(variant: str, analysis: dict[str, Any], console: Any, style: Any) -> None:
    """Each expert's raw score against random, the human reference and the standard PPO run's; weak ones flagged."""
    from rich.table import Table

    experts = _section(analysis, "experts", f"experts ({variant})", console,
                       empty="no expert was scored: expert.source random, or no policy stage")
    if experts is None:
        return
    table = Table(title=f"experts ({variant}): raw scores under the protocol, +- SEM, against the references",
                  box=style.box)
    for col in ("game", "expert", "random", "margin (SE)", "human", "PPO ref", "share of PPO", ""):
        table.add_column(col)
    for game, e in sorted(experts.items()):
        table.add_row(game, f"{e['score']:.4g} +- {e['sem']:.2g}", f"{e['random']:.4g} +- {e['random_sem']:.2g}",
                      f"{e['margin_se']:.1f}", f"{e['human']:g}", f"{e['ppo_reference']:g}",
                      f"{e['reference_share']:.2f}", "weak" if e["weak"] else "")
    console.print(table)
    weak = [game for game, e in sorted(experts.items()) if e["weak"]]
    threshold = next(iter(experts.values()))["weak_below"]
    console.print(f"share of PPO = (expert - random) / (PPO reference - random), random measured here; the PPO "
                  f"reference is CleanRL's at 40M frames under another protocol. Weak: below {threshold:g} "
                  f"(analysis.weak_expert){': ' + ', '.join(weak) if weak else ': none'}")


def render_baselines(variant: str, analysis: dict[str, Any], console: Any, style: Any, order: Any) -> None:
    """Every model's mean held-out NLL beside the unigram and copy-last-frame baselines; a size with a
    seed whose NLL is not below both is flagged (analysis.json ``baselines``)."""
    from rich.table import Table

    baselines = _section(analysis, "baselines", f"baselines ({variant})", console,
                         empty="no fidelity record holds baselines (written before fidelity/3)")
    if baselines is None:
        return
    table = Table(title=f"held-out NLL (nats/frame) against trivial predictors ({variant}): a model must beat both",
                  box=style.box)
    for col in ("game", "unigram", "copy last", "mode", "mean NLL per size (seeds not beating both)"):
        table.add_column(col)
    for game, b in sorted(baselines.items()):
        for i, (mode, sizes) in enumerate(sorted(b["models"].items())):
            cells = [f"{size} {c['nll']:.3f}" + (f" ({len(c['not_beating'])}/{c['seeds']})" if c["not_beating"] else "")
                     for size, c in sorted(sizes.items(), key=lambda kv: order(kv[0]))]
            table.add_row(game if i == 0 else "", f"{b['unigram']:.3f}" if i == 0 else "",
                          f"{b['copy']:.3f}" if i == 0 else "", mode, ", ".join(cells))
    console.print(table)
    flagged = [f"{game}: {', '.join(b['flagged'])}" for game, b in sorted(baselines.items()) if b["flagged"]]
    console.print("unigram: per-variable code frequencies of the training split; copy last: z_t+1 = z_t mixed with "
                  "the unigram at each variable's change rate (scaleworld/evaluation/baselines.py). Not beating "
                  "both: " + ("; ".join(flagged) if flagged else "none"))


def render_fits(variant: str, analysis: dict[str, Any], console: Any, style: Any) -> None:
    fits = _section(analysis, "fits", f"scaling-law fits ({variant})", console)
    if fits is None:
        return
    blocks = any(f.get("params") == "blocks" for games in fits.values() for f in games.values())
    n = "N = block (non-embedding) parameters" if blocks else "N = total parameters"
    title = (f"scaling-law fits ({variant}): held-out NLL = E + A / N^alpha, {n}; held-out error: the largest size "
             "predicted from the rest; a curve that rises with size is not fitted")
    columns = ("mode", "game", "alpha [95% CI]", *(("alpha (total N)",) if blocks else ()), "E [95% CI]",
               "held-out error", "no fit because")
    rows = []
    for mode, games in sorted(fits.items()):
        for game, f in sorted(games.items()):
            if f["fit"] is None:
                rows.append((mode, game, "-", *(("-",) if blocks else ()), "-", "-", f["reason"]))
                continue
            held = f.get("held_out")
            rows.append((mode, game, interval_text(f["alpha_ci"]),
                         *((_point(f.get("alpha_total_ci")),) if blocks else ()), interval_text(f["E_ci"]),
                         "-" if held is None else f"{held['relative_error']:+.1%}", f.get("reason") or ""))
    print_table(console, style, title, columns, rows)


def render_paired(variant: str, analysis: dict[str, Any], console: Any, style: Any, order: Any) -> None:
    from rich.table import Table

    paired = _section(analysis, "matched_vs_joint", f"matched vs joint ({variant})", console,
                      empty="it needs the matched and joint modes")
    if paired is None:
        return
    if any("wilcoxon_p" in p for p in paired.values()):
        console.print(f"matched vs joint ({variant}): written by an earlier scaleworld (games as the unit); "
                      "re-run the analysis job for the test with the seed as the unit")
        return
    table = Table(title=f"matched vs joint ({variant}): held-out NLL, matched - joint (below 0: matched better)",
                  box=style.box)
    for col in ("size", "games", "seeds", "mean difference [95% CI]", "p", "games matched better"):
        table.add_column(col)
    for size in sorted(paired, key=order):
        p = paired[size]
        n = len(p["games"])
        if p["untested"]:
            table.add_row(size, str(n), str(len(p["seeds"])), "-", p["untested"], f"{p['games_matched_better']} of {n}")
            continue
        table.add_row(size, str(n), f"{len(p['seeds'])}{'' if p['paired'] else ' (unpaired)'}",
                      interval_text(p["mean_difference"]), f"{p['p']:.3g}", f"{p['games_matched_better']} of {n}")
    console.print(table)
    console.print(MATCHED_HYPOTHESES)


def render_interaction(variant: str, analysis: dict[str, Any], console: Any, style: Any) -> None:
    """The paper's claim "joint training stabilises scaling" (scaleworld.analysis.interaction)."""
    tests = _section(analysis, "interaction", f"joint stabilises scaling ({variant})", console,
                     empty="it needs joint and single or matched")
    if tests is None:
        return
    if any("margin" not in t for t in tests.values()):
        console.print(f"joint stabilises scaling ({variant}): written by an earlier scaleworld (a test of the worst "
                      "step, which noise and slope moved); re-run the analysis job for the intersection-union test")
        return
    for name, test in tests.items():
        x, y = name.split("_stabilises_")
        overall, margin = test["overall"], test["margin"]
        rows = [(game, f"{g['rise_y']:.3f}", f"{g['rise_x']:.3f}", f"{g['p_rise']:.2g}", f"{g['p_no_rise']:.2g}",
                 f"{g['p_bh']:.2g}", "yes" if g["stabilised"] else "no") for game, g in test["games"].items()]
        rows += [(game, "-", "-", "-", "-", "-", why) for game, why in test.get("left_out", {}).items()]
        print_table(console, style, f"{x} stabilises {y} ({variant}): per game, the largest rise of mean held-out "
                    f"NLL with size (nats/frame; margin {margin:g})",
                    ("game", f"{y} rises by", f"{x} rises by", f"p ({y} rises)", f"p ({x} below margin)", "p (BH)",
                     "stabilised"), rows)
        console.print(HYPOTHESES.format(x=x, y=y, m=f"{margin:g}"))
        if overall is None:
            console.print(f"{x} stabilises {y} ({variant}): untested (no game has enough sizes and seeds)")
            continue
        names = lambda games: ", ".join(games) if games else "none"  # noqa: E731
        console.print(f"{x} stabilises {y} ({variant}): overall p = {overall['p']:.3g} over {overall['games']} games; "
                      f"stabilised: {names(overall['stabilised'])}; {y} rises: {names(overall['y_rises'])}; "
                      f"of those, {x} rises too: {names(overall['x_rises_too'])}")


def render_scores(variant: str, analysis: dict[str, Any], control: dict[str, Any], console: Any, style: Any,
                  order: Any) -> None:
    """Aggregates per mode and size, the upper anchor they are normalised by, then P(improvement)."""
    from rich.table import Table

    scores = _section(analysis, "scores", f"normalised control scores ({variant})", console)
    if scores is None:
        return
    if not scores["aggregates"]:
        console.print(f"normalised control scores ({variant}): not measured (this study trains no policies)")
        return
    table = Table(title=f"normalised control scores ({variant}): aggregates over games, point and [95% CI]",
                  box=style.box)
    for col in ("mode", "size", "games", "runs", *(label for _, label in AGGREGATE_COLUMNS)):
        table.add_column(col)
    for mode, sizes in sorted(scores["aggregates"].items()):
        for size in sorted(sizes, key=order):
            row = sizes[size]
            table.add_row(mode, size, str(len(row["games"])), str(sum(row["runs"].values())),
                          # Four intervals on one line need ~130 columns; under the point they fit in 120.
                          *(interval_text(row[key], sep="\n") for key, _ in AGGREGATE_COLUMNS))
    console.print(table)
    if scores.get("bootstrap") == "hierarchical":
        console.print("median and mean: of the game means; IQM and optimality gap: over all runs of all games "
                      "(rliable); intervals: bootstrap of the world-model seeds, each with its policy trials (joint "
                      "modes draw their seeds once for all games), expanded percentile (the median of per-game "
                      "seeds: plain)")
    kinds = upper_kinds(control["games"].get(variant, {}))
    if kinds:  # the upper anchor is a per-game setting of the anchor jobs: say which one each game used
        used = "; ".join(f"{kind} ({', '.join(games)})" for kind, games in kinds.items())
        console.print(f"normalised score = (score - random) / (upper - random); upper anchor: {used}")

    render_improvement(f"P(improvement) ({variant}) of normalised scores", scores.get("improvement", {}), console,
                       style, order)


def render_fidelity_improvement(variant: str, analysis: dict[str, Any], console: Any, style: Any,
                                order: Any) -> None:
    fidelity = _section(analysis, "fidelity", f"P(improvement) ({variant}) of held-out NLL", console)
    if fidelity is None:
        return
    render_improvement(f"P(improvement) ({variant}) of held-out NLL (lower wins)", fidelity["improvement"],
                       console, style, order)


def render_improvement(title: str, improvement: dict[str, Any], console: Any, style: Any, order: Any) -> None:
    """One row per size: P(x beats y) run against run, mean over games, with its interval."""
    from rich.table import Table

    if not improvement:
        console.print(f"{title}: no two modes measured at the same size")
        return
    table = Table(title=f"{title}: x beats y, run against run, mean over games; 0.5 = no difference", box=style.box)
    shown = [(key, label) for key, label in COMPARISONS if key in improvement or "joint_short" not in key]
    for col in ("size", *(label for _, label in shown), "games"):
        table.add_column(col)
    for size in sorted({s for per_size in improvement.values() for s in per_size}, key=order):
        cells = [improvement.get(key, {}).get(size) for key, _ in shown]
        games = max((len(c["games"]) for c in cells if c), default=0)
        table.add_row(size, *("-" if c is None else interval_text(c) for c in cells), str(games))
    console.print(table)


def _versus_random_row(mode: str, size: str, game: str, cell: dict[str, Any]) -> tuple[str, ...]:
    tested = [run for run in cell["runs"] if run["p"] is not None]
    best, r = min(tested, key=lambda run: run["p"]) if tested else None, cell["random"]
    imagined, real = cell["imagined_reward_per_step"], cell["real_reward_per_step"]
    return (mode, size, game, f"{score_text(cell['score'])} ({score_text(r['score'])} +- {score_text(r['sem'])})",
            "untested: 1 episode" if best is None else
            f"{score_text(best['difference'], signed=True)} [{score_text(best['lo'], signed=True)}, "
            f"{score_text(best['hi'], signed=True)}]",
            "-" if best is None else f"{cell['p_holm']:.2g} / {cell['p_bh']:.2g}"
            if cell.get("p_bh") is not None else f"{cell['p_holm']:.2g}",
            f"{cell['runs_beating']}/{len(cell['runs'])}",
            "-" if best is None else "yes" if cell["beats_random"] else "no",
            f"{'-' if imagined is None else f'{imagined:.3g}'} / {score_text(real)}")


def render_versus_random(variant: str, analysis: dict[str, Any], console: Any, style: Any, order: Any) -> None:
    """Per (mode, size, game): the imagination-trained policies' raw real-game score against the random
    policy's, the Holm-corrected one-sided test, and reward per step in imagination vs the real game
    (analysis.json ``control``; definitions in scaleworld/analysis/versus_random.py)."""
    evidence = _section(analysis, "control", f"control against random ({variant})", console,
                        empty="this study trains no policies")
    if evidence is None:
        return
    columns = ("mode", "size", "game", "score (random)", "best run - random", "p Holm / BH", "runs won", "beats",
               "per step: imagined / real")
    rows, many = [], not style.full and len({g for sz in evidence.values() for gs in sz.values() for g in gs}) > \
        COLLAPSE_ABOVE
    for mode, sizes in sorted(evidence.items()):
        for size in sorted(sizes, key=order):
            cells = sorted(sizes[size].items())
            rest = [(game, cell) for game, cell in cells if many and not cell["beats_random"]]
            rows += [_versus_random_row(mode, size, game, cell) for game, cell in cells
                     if not many or cell["beats_random"]]
            if rest:  # many games: the cells that beat random, then one row for the rest of this mode and size
                tested = [c["p_holm"] for _, c in rest if c["p_holm"] is not None]
                won, runs = sum(c["runs_beating"] for _, c in rest), sum(len(c["runs"]) for _, c in rest)
                rows.append((mode, size, f"all {len(rest)} games" if len(rest) == len(cells) else
                             f"the other {len(rest)} games", "-", "-",
                             f"smallest Holm p {min(tested):.2g}" if tested else "-", f"{won}/{runs}",
                             "no" if tested else "-", "-"))
    print_table(console, style, f"control against random ({variant}): raw real-game score per episode; reward per "
                "agent step in imagination and in the real game", columns, rows, merged=many)
    if many:
        console.print("cells that do not beat random are merged per mode and size (scaleworld report --full: every "
                      "cell; --csv: every run)")
    alpha = next(c["alpha"] for sizes in evidence.values() for games in sizes.values() for c in games.values())
    family = analysis.get("control_family")
    correction = (f"a cell beats random when BH over the table's {family['cells']} tested cells (over "
                  f"{family['games']} games, {family['sizes']} sizes, {family['modes']} modes) of its best run's p x "
                  "runs (Holm) "
                  f"is <= {alpha:g}; games that beat random: "
                  f"{', '.join(family['any_games']) if family['any_games'] else 'none'}" if family else
                  f"a cell beats random when its best run's p x runs (Holm) <= {alpha:g} (no correction across the "
                  "table: written by an earlier scaleworld)")
    console.print(f"H1 per cell: the policy's expected real-game return exceeds random's. Per run (a world-model "
                  f"seed's policy trial): Welch's one-sided t test of its episodes against the random anchor's; "
                  f"{correction}. "
                  "imagined/step: the final update's imagined rollouts; real/step: total return / agent steps; a "
                  "large gap with no win over random means the policy learned the model's errors")
