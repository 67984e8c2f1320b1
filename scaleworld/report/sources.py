"""The report's view of a study with a data-source axis (`sources` in the spec): what each source
is, each game's regime under each source side by side with the premise test (does the scaling
change with the source: scaleworld.analysis.sources), whether joint training stabilises scaling
under each, and the normalised scores per source."""

from __future__ import annotations

from typing import Any

from scaleworld.analysis.sources import SOURCE_HYPOTHESES, scaling_changes
from scaleworld.report.collapse import TableStyle, print_table
from scaleworld.study.spec import BASE_VARIANT


def study_sources(spec_text: str) -> dict[str, dict[str, Any]]:
    """name -> its settings, from the run root's spec.yaml (safely parsed; a spec without the axis, or
    one that cannot be read, has none)."""
    import yaml

    try:
        spec = yaml.safe_load(spec_text) or {}
        sources = (spec.get("sources") or {}) if isinstance(spec, dict) else {}
        return {str(k): dict(v or {}) for k, v in sources.items()} if isinstance(sources, dict) else {}
    except (yaml.YAMLError, TypeError, ValueError, AttributeError):
        return {}


def describe(settings: dict[str, Any]) -> str:
    """A source in words, from its spec settings (scaleworld.study.spec.SourceSpec)."""
    if settings.get("policy") == "random":
        return "the random policy (uniform legal actions)"
    who = f"the experts in {settings['checkpoint']}" if settings.get("checkpoint") else "the spec's expert"
    if settings.get("budget_fraction", 1.0) != 1.0:
        who = f"a weaker expert: PPO on {settings['budget_fraction']:g} of the expert's budget"
    if settings.get("epsilon") is not None:
        who += f", with {settings['epsilon']:g} of its actions uniformly random"
    return who


def collect_sources(results: dict[str, Any]) -> dict[str, Any] | None:
    """{"sources": name -> settings, "changes": scaling_changes(...)} for a study with the axis, else None."""
    sources = study_sources(results["spec"])
    if not sources:
        return None
    rows = [{**r, "nll": r["nll_nats_per_frame"]} for r in results["nll"] if r["reading"] == "final"]
    alpha = next((a["rule"]["alpha"] for a in results["regimes"].values()), 0.05)
    return {"sources": sources, "changes": scaling_changes(rows, base=BASE_VARIANT, sources=list(sources),
                                                           alpha=alpha)}


def render_sources(results: dict[str, Any], console: Any, style: TableStyle) -> None:
    data = results.get("sources")
    if not data:
        return
    console.print(f"data sources: {BASE_VARIANT} = the spec's own data; "
                  + "; ".join(f"{name} = {describe(s)}" for name, s in data["sources"].items())
                  + ". Every source's models: the base tokenizer, scored on the base data's held-out episodes")
    names = [BASE_VARIANT, *data["sources"]]
    regimes = {v: a.get("modes", {}) for v, a in results["regimes"].items()}
    modes = sorted({m for v in names for m in regimes.get(v, {})})
    rows = []
    for mode in modes:
        for game in sorted({g for v in names for g in regimes.get(v, {}).get(mode, {})}):
            cells = []
            for v in names:
                regime = regimes.get(v, {}).get(mode, {}).get(game, {}).get("regime", "-")
                test = data["changes"].get(v, {}).get(mode, {}).get(game) if v != BASE_VARIANT else None
                if test and test["p"] is not None:
                    regime += f"; {test['delta_source']:+.3f} vs {test['delta_base']:+.3f}, p(BH) {test['p_bh']:.2g}" \
                              + (" CHANGED" if test["changed"] else "")
                cells.append(regime)
            rows.append((mode, game, *cells))
    print_table(console, style, "regime under each data source; for a source: its scaling change (NLL at the largest "
                "size - at the smallest, nats/frame, mean over seeds) vs the base data's, and the premise test",
                ("mode", "game", *names), rows)
    console.print(SOURCE_HYPOTHESES)
    for v in names:
        for name, test in (results["regimes"].get(v, {}).get("interaction") or {}).items():
            x, y = name.split("_stabilises_")
            overall = test.get("overall")
            said = ("untested (too few sizes or seeds)" if overall is None else
                    f"overall p = {overall['p']:.3g}; stabilised: {', '.join(overall['stabilised']) or 'none'}")
            console.print(f"{x} stabilises {y} under {v}: {said}")
