"""The premise test (scaleworld.analysis.sources) on synthetic curves written from its definition:
size under the nulls a sceptic would pick (a source that only shifts the level, steeper curves,
less noise, a seed effect shared by both sources' runs of that seed), and power against a source
that flattens the curve. Each game is one independent replicate, so the share of games whose raw
p is <= 0.05 estimates the test's size (or power)."""

from __future__ import annotations

import numpy as np
import pytest

from scaleworld.analysis.sources import scaling_changes

SIZES = {"s1": 1_000, "s2": 2_000, "s3": 4_000, "s4": 8_000}
GAMES = 400


def _rows(rng, *, curve, source_curve, noise, seed_effect, seeds=(0, 1, 2), level=0.0):
    """NLL rows of `GAMES` games under the base data and a source: curve[k] + a per-(run, size) noise
    + a per-seed effect shared by every size and both sources' run of that seed."""
    rows = []
    for g in range(GAMES):
        shared = rng.normal(0.0, seed_effect, size=len(seeds))
        for variant, means, shift in (("base", curve, 0.0), ("src", source_curve, level)):
            for i, seed in enumerate(seeds):
                for k, (size, params) in enumerate(SIZES.items()):
                    nll = means[k] + shift + shared[i] + rng.normal(0.0, noise)
                    rows.append({"variant": variant, "mode": "single", "game": f"g{g}", "size": size,
                                 "params": params, "seed": seed, "nll": nll})
    return rows


def _rejections(rows) -> float:
    cells = scaling_changes(rows, base="base", sources=["src"])["src"]["single"]
    return float(np.mean([cell["p"] <= 0.05 for cell in cells.values()]))


@pytest.mark.parametrize("null", ["level shift", "steep curves", "little noise", "shared seed effects"])
def test_the_premise_test_holds_its_size_under_sceptics_nulls(null):
    rng = np.random.default_rng(["level shift", "steep curves", "little noise", "shared seed effects"].index(null))
    curve = [3.0, 2.8, 2.7, 2.65]
    settings = {"level shift": dict(curve=curve, source_curve=curve, noise=0.05, seed_effect=0.0, level=0.7),
                "steep curves": dict(curve=[5.0, 3.0, 2.0, 1.0], source_curve=[5.0, 3.0, 2.0, 1.0], noise=0.05,
                                     seed_effect=0.0),
                "little noise": dict(curve=curve, source_curve=curve, noise=1e-4, seed_effect=0.0),
                "shared seed effects": dict(curve=curve, source_curve=curve, noise=0.05, seed_effect=0.3)}[null]
    size = _rejections(_rows(rng, **settings))
    assert 0.02 <= size <= 0.08, f"size {size:.3f} under {null}"  # 400 games: +-0.022 at two standard errors


def test_the_premise_test_finds_a_source_that_flattens_scaling():
    rng = np.random.default_rng(7)
    power = _rejections(_rows(rng, curve=[3.0, 2.8, 2.7, 2.65], source_curve=[3.0, 3.0, 3.05, 3.1], noise=0.05,
                              seed_effect=0.1))
    assert power >= 0.9, f"power {power:.3f}"


def test_too_few_seeds_or_sizes_is_untested_and_bh_marks_the_changed_games():
    rows = [{"variant": v, "mode": "joint", "game": "Pong", "size": s, "params": p, "seed": 0, "nll": 1.0}
            for v in ("base", "src") for s, p in SIZES.items()]
    cell = scaling_changes(rows, base="base", sources=["src"])["src"]["joint"]["Pong"]
    assert cell["p"] is None and cell["untested"] == "needs >= 2 seeds a side at both ends"
    rng = np.random.default_rng(3)
    rows = _rows(rng, curve=[3.0, 2.8, 2.7, 2.65], source_curve=[3.0, 3.2, 3.4, 3.6], noise=0.01, seed_effect=0.0)
    cells = scaling_changes(rows, base="base", sources=["src"])["src"]["single"]
    assert all(c["changed"] and c["p_bh"] >= c["p"] for c in cells.values())
    assert abs(cells["g0"]["delta_source"] - 0.6) < 0.05 and abs(cells["g0"]["delta_base"] + 0.35) < 0.05


def test_every_source_shares_the_base_tokenizer_held_out_episodes_and_anchors():
    from pathlib import Path

    from scaleworld.study.expand import build_graph
    from scaleworld.study.spec_load import load_spec

    smoke = Path(__file__).resolve().parent.parent / "studies" / "smoke.yaml"
    sources = ["sources.eps.epsilon=0.5", "sources.weak.budget_fraction=0.5", "sources.rand.policy=random"]
    graph, plain = build_graph(load_spec(smoke, sources)), build_graph(load_spec(smoke))
    assert set(plain.jobs) <= set(graph.jobs)  # the base variant's jobs are the spec's own, unchanged
    (tokenizer,) = graph.by_kind("tokenizer")  # one tokenizer, trained on the base data alone
    base_collect = {j.id for j in plain.by_kind("collect")}
    assert set(tokenizer.inputs) == base_collect
    assert all(tokenizer.id in t.inputs for t in graph.by_kind("tokens")) and len(graph.by_kind("tokens")) == 8
    assert len(graph.by_kind("anchor")) == 2 and set(graph.by_kind("anchor")[0].labels["variants"]) == {
        "base", "eps", "weak", "rand"}
    base_tokens = {j.id for j in plain.by_kind("tokens")}
    for job in graph.by_kind("fidelity"):  # every model is scored on the base data's held-out episodes
        held_out = [i for i in job.inputs if graph.jobs[i].kind == "tokens"]
        assert set(held_out) & base_tokens, job.labels
    budgets = sorted(j.config["agent_steps"] for j in graph.by_kind("expert"))
    assert budgets == [512, 512, 1024, 1024]  # the weaker experts: half the budget
    policies = {j.config["policy"]["source"] for j in graph.by_kind("collect")}
    assert policies == {"ppo", "random"} and len(graph.by_kind("collect")) == 8
    eps = [j for j in graph.by_kind("collect") if j.config["policy"].get("epsilon") == 0.5]
    assert len(eps) == 2 and all(j.labels["variants"] == ["eps"] for j in eps)
