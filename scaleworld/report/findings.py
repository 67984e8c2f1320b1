"""The report's first screen: the study's answers, one line each, before any table.

Per analysed variant (several variants, e.g. data sources: one line per question, each variant's
answer side by side): the scaling regimes per mode (counts, and the games of every class but the
largest), whether joint training stabilises scaling (the intersection-union test's overall p), the
joint model against the single and matched ones at the largest size (P(improvement) of held-out NLL,
and the matched-vs-joint paired test), the median and IQM of normalised scores per mode at the
largest size with their intervals; then every failed check on a line starting "CHECK": a game its
tokenizer's gate refused, model sizes that do not beat the trivial baselines, policies that beat
random nowhere, weak experts. The tables behind each line follow in the full report; the numbers
are analysis.json's, defined where they are computed (scaleworld.analysis).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from scaleworld.report.exploitation import exploitation_line
from scaleworld.report.sections import interval_text

MAX_NAMED = 6  # games named on a line before "and N more"


def _games(names: list[str]) -> str:
    names = sorted(names)
    if len(names) <= MAX_NAMED:
        return ", ".join(names)
    return f"{', '.join(names[:MAX_NAMED])} and {len(names) - MAX_NAMED} more"


def _ci(cell: dict[str, Any] | None) -> str:
    return "-" if cell is None else interval_text(cell)


def findings(results: dict[str, Any], order: Any) -> list[tuple[str, bool]]:
    """The block's lines: (text, is it a failed check)."""
    lines: list[tuple[str, bool]] = []
    jobs = results["jobs"]
    done = sum(c.get("done", 0) for c in jobs.values())
    total = sum(sum(c.values()) for c in jobs.values())
    games = sorted({g for mode in results["curves"].values() for g in mode})
    lines.append((f"{len(games)} games with results; {done:,} of {total:,} jobs done", False))
    answers: dict[tuple[str, bool], list[tuple[str, str]]] = {}  # (question, check) -> [(variant, answer)]
    for variant, analysis in results["regimes"].items():
        for text, check in (_regime_lines(analysis, "") + _stabilises_lines(analysis, "")
                            + _comparison_lines(analysis, "", order) + _score_lines(analysis, "", order)
                            + _check_lines(analysis, "")):
            question, _, answer = text.partition(": ")
            answers.setdefault((question, check), []).append((variant, answer))
    variants = list(results["regimes"])
    for (question, check), said in answers.items():  # variants side by side: one line per question
        alike: dict[str, list[str]] = {}  # an answer -> the variants that give it
        for variant, answer in said:
            alike.setdefault(answer, []).append(variant)
        if len(variants) == 1:
            lines.append((f"{question}: {said[0][1]}" if said[0][1] else question, check))
            continue
        named = {answer: "every variant" if who == variants else ", ".join(who) for answer, who in alike.items()}
        if len(named) == 1:  # one answer for all who give it
            answer, who = next(iter(named.items()))
            lines.append((f"{question}: {answer} ({who})" if answer else f"{question} ({who})", check))
        else:
            lines.append((f"{question}: " + " | ".join(f"{who}: {answer}" if answer else who
                                                       for answer, who in named.items()), check))
    lines += _source_lines(results.get("sources"))
    exploited = exploitation_line(results)
    if exploited:
        lines.append((exploited, False))
    if not results["regimes"]:
        lines.append(("no analysis yet: the answers come once the analysis job has run", False))
    gated = [r["game"] for r in results["tokenizers"] if r["passed"] is False]
    if gated:
        lines.append((f"CHECK tokenizer gate refused {len(gated)} games (their chains did not run): "
                      f"{_games(gated)}", True))
    failed = len(results["failed"])
    if failed:
        lines.append((f"CHECK {failed} jobs failed: `scaleworld status` names each with its log", True))
    return lines


def _regime_lines(analysis: dict[str, Any], tag: str) -> list[tuple[str, bool]]:
    lines = []
    for mode, by_game in analysis["modes"].items():
        counts = Counter(cell["regime"] for cell in by_game.values())
        parts = [f"{regime} {n} ({_games([g for g, c in by_game.items() if c['regime'] == regime])})"
                 for regime, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
        lines.append((f"regimes, {mode}{tag}: {'; '.join(parts)}", False))
    return lines


def _stabilises_lines(analysis: dict[str, Any], tag: str) -> list[tuple[str, bool]]:
    lines = []
    for name, test in analysis.get("interaction", {}).items():
        x, y = name.split("_stabilises_")
        overall = test.get("overall")
        if "margin" not in test:
            continue  # written by an earlier scaleworld: the full report says so
        if overall is None:
            lines.append((f"{x} stabilises {y}'s scaling{tag}: untested (no game has enough sizes and seeds)", False))
        else:
            lines.append((f"{x} stabilises {y}'s scaling{tag}: p = {overall['p']:.3g} over {overall['games']} games; "
                          f"stabilised in {len(overall['stabilised'])}" +
                          (f" ({_games(overall['stabilised'])})" if overall["stabilised"] else ""), False))
    return lines


def _largest(sizes: Any, order: Any) -> str | None:
    return max(sizes, key=order) if sizes else None


def _comparison_lines(analysis: dict[str, Any], tag: str, order: Any) -> list[tuple[str, bool]]:
    lines = []
    improvement = analysis.get("fidelity", {}).get("improvement", {})
    size = _largest({s for per_size in improvement.values() for s in per_size}, order)
    if size is not None:
        parts = [f"{key.replace('_vs_', ' beats ')} {_ci(per_size.get(size))}"
                 for key, per_size in sorted(improvement.items()) if per_size.get(size)]
        lines.append((f"held-out NLL at {size}{tag}, P(x beats y) [95% CI]: {'; '.join(parts)}", False))
    paired = analysis.get("matched_vs_joint") or {}
    size = _largest(paired, order)
    if size is not None and "wilcoxon_p" not in paired[size]:
        p = paired[size]
        lines.append((f"matched - joint held-out NLL at {size}{tag}: " +
                      (p["untested"] if p["untested"] else
                       f"{_ci(p['mean_difference'])} nats/frame, p = {p['p']:.3g} over {len(p['seeds'])} seeds"),
                      False))
    return lines


def _score_lines(analysis: dict[str, Any], tag: str, order: Any) -> list[tuple[str, bool]]:
    aggregates = analysis.get("scores", {}).get("aggregates", {})
    size = _largest({s for sizes in aggregates.values() for s in sizes}, order)
    if size is None:
        return []
    parts = [f"{mode} {_ci(sizes[size]['median'])} / {_ci(sizes[size]['iqm'])}"
             for mode, sizes in sorted(aggregates.items()) if size in sizes]
    return [(f"normalised score at {size}{tag}, median / IQM [95% CI]: {'; '.join(parts)}", False)]


def _source_lines(sources: dict[str, Any] | None) -> list[tuple[str, bool]]:
    """One line: per data source, in how many (mode, game) cells its scaling differs from the base data's."""
    parts = []
    for name, modes in (sources or {}).get("changes", {}).items():
        cells = [(mode, game, c) for mode, games in modes.items() for game, c in games.items()]
        tested = [(m, g) for m, g, c in cells if c["p"] is not None]
        changed = [f"{g} {m}" for m, g, c in cells if c["changed"]]
        parts.append(f"{name}: changed in {len(changed)} of {len(tested)} tested (mode, game) cells"
                     + (f" ({_games(changed)})" if changed else "") if tested else
                     f"{name}: untested in all {len(cells)} cells (too few sizes or seeds)")
    return [("scaling under each data source vs the base data (premise test, BH): " + " | ".join(parts), False)] \
        if parts else []


def _check_lines(analysis: dict[str, Any], tag: str) -> list[tuple[str, bool]]:
    lines = []
    baselines = analysis.get("baselines", {})
    flagged = sorted({cell for game in baselines.values() for cell in game.get("flagged", [])})
    if flagged:
        games = [g for g, b in baselines.items() if b.get("flagged")]
        lines.append((f"CHECK{tag} models not beating the unigram and copy-last-frame baselines in {len(games)} of "
                      f"{len(baselines)} games: {', '.join(flagged)}", True))
    family = analysis.get("control_family") or {}
    if family.get("cells") and not family.get("any_games"):
        lines.append((f"CHECK{tag} no policy beats random in any game ({family['cells']} cells tested, BH at "
                      f"{family['alpha']:g})", True))
    missing = analysis.get("missing") or {}
    if missing.get("inputs") or missing.get("unmeasured"):
        parts = [f"{missing['inputs']} of {missing['of']} inputs missing"] if missing.get("inputs") else []
        parts += [f"{len(missing['unmeasured'])} game readings a joint model could not take"] \
            if missing.get("unmeasured") else []
        lines.append((f"CHECK{tag} analysed without some results ({'; '.join(parts)}), games: "
                      f"{_games(missing['games'])}; what they could change: `--section regimes`", True))
    experts = analysis.get("experts") or {}
    weak = [g for g, e in experts.items() if e.get("weak")]
    if weak:
        below = next(iter(experts.values()))["weak_below"]
        lines.append((f"CHECK{tag} weak experts, {len(weak)} of {len(experts)} (below {below:g} of the standard "
                      f"PPO run's score): {_games(weak)}", True))
    return lines


def render_findings(results: dict[str, Any], console: Any, order: Any) -> None:
    """The findings block: a title, then one line per answer; failed checks stand out (bold red on a
    terminal, the word CHECK everywhere)."""
    console.print("findings (the tables behind each line follow; `--section` picks them)", style="bold")
    for text, check in findings(results, order):
        console.print(f"  {text}", style="bold red" if check else None)
