"""`scaleworld report` on a synthetic run root with fixed numbers, laid out by the real RunStore,
Graph and Job classes: a snapshot of the rendering, partial run roots, and the --json / --csv /
--figures exports. No job runs, so these tests take seconds.

The snapshot is tests/snapshots/report_synthetic.txt. After an intended change to the report,
rewrite it with `SCALEWORLD_UPDATE_SNAPSHOTS=1 pytest tests/test_report.py`, read the diff, and commit it.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

from scaleworld.analysis.versus_random import control_evidence, family_summary
from scaleworld.report.sections import interval_text
from scaleworld.report.terminal import collect_results, render
from scaleworld.study.graph import Graph, Job
from scaleworld.study.store import RunStore
from scaleworld.training.config import MATCH_RULES

SNAPSHOT = Path(__file__).parent / "snapshots" / "report_synthetic.txt"
GAMES = ("Breakout", "Pong")
# Names in the paper ladder's style: by name paper-d12 sorts before paper-d2, by parameters after.
SIZES = {"paper-d2": 6_300_000, "paper-d4": 12_600_000, "paper-d8": 25_200_000, "paper-d12": 37_800_000}
POLICY_SIZES = ("paper-d2", "paper-d12")
SEEDS = (0, 1)
MODE_STEPS = {"single": 100, "joint": 200, "matched": 150}  # matched: distinct jobs from single
ANCHORS = {"Breakout": (1.7, 30.5), "Pong": (-20.7, 14.6)}  # random and human scores
TAG = {"variants": ["base"]}


def _nll(mode: str, game: str, size_index: int, seed: int) -> float:
    base = {"Breakout": 4.2, "Pong": 1.1}[game] + {"single": 0.0, "matched": -0.02, "joint": -0.15}[mode]
    return round(base + 0.6 * 0.7 ** size_index + 0.01 * seed, 4)


def _normalised(mode: str, game: str, size_index: int, seed: int) -> float:
    return round(0.1 + 0.15 * size_index + {"single": 0.0, "matched": 0.03, "joint": 0.08}[mode]
                 + {"Breakout": 0.05, "Pong": -0.04}[game] + 0.02 * seed, 4)


def _quality(game: str) -> dict:
    """A tokenizer quality record (scaleworld.models.tokenizer_quality) with fixed numbers."""
    residual = {"Breakout": 0.21, "Pong": 0.34}[game]
    return {"frames": 1024, "frames_from": "held_out", "residual_fraction": residual,
            "sampled_residual_fraction": residual + 0.02, "psnr_db": 39.5, "mean_frame_psnr_db": 33.7,
            "perplexity_median": 7.5, "distinct_codes": 980, "mse": 1e-4, "mean_frame_mse": 4e-4, "perplexity": []}


def _ci(point: float, below: float, above: float) -> dict[str, float]:
    return {"point": round(point, 4), "lo": round(point - below, 4), "hi": round(point + above, 4)}


def _write(path: Path, payload: dict) -> None:
    # The same JSON as write_json_atomic, without its fsync per file (hundreds here): these tests stay fast.
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def _finish(store: RunStore, job: Job, outputs: dict, files: dict[str, dict] | None = None) -> None:
    """What run_job leaves behind: the job's files (its artifact at least: a stand-in where the
    test gives none), then done.json."""
    from scaleworld.study.kinds import STAGES

    store.prepare(job)
    for name, payload in (files or {}).items():
        _write(store.job_dir(job) / name, payload)
    artifact = store.job_dir(job) / STAGES[job.kind].ARTIFACT
    if not artifact.exists():
        artifact.write_text("a stand-in: the report reads done.json only\n")
    _write(store.job_dir(job) / "done.json", {
        "kind": job.kind, "id": job.id, "outputs": outputs, "seconds": 1.0,
        "finished_utc": "2026-01-01T00:00:00+00:00"})


def _analysis_json() -> dict:
    """A whole analysis.json with fixed, hand-picked numbers (every section the report reads)."""
    params = list(SIZES.values())
    regimes = {
        ("joint", "Breakout"): ("classical", params[2], "best is size 3 of 4; the largest is 4.1% worse, more than "
                                                        "0.02 (p=0.012)"),
        ("joint", "Pong"): ("monotonic", params[3], "improving trend (rho=-0.95, p=0.001), gain 28.0% > 0.02 "
                                                    "(p=0.001), no bigger size worse by 0.02 or more (p=0.004)"),
        ("matched", "Breakout"): ("flat", params[0], "every size within 0.02 of every other (range 1.2%, "
                                                     "equivalence p=0.003)"),
        ("matched", "Pong"): ("inconclusive", params[1], "a size has only 1 seeds; the rule needs at least 2 per "
                                                         "size"),
        ("single", "Breakout"): ("double_descent", params[3], "size 2 of 4 is a bump 3.5% above both sides, more "
                                                              "than 0.02 (p=0.03)"),
        ("single", "Pong"): ("monotonic", params[3], "improving trend (rho=-1.00, p=0.001), gain 30.2% > 0.02 "
                                                     "(p=0.001), no bigger size worse by 0.02 or more (p=0.002)"),
    }
    modes: dict = {}
    for (mode, game), (regime, best, reason) in regimes.items():
        nll = [[_nll(mode, game, i, s) for s in SEEDS] for i in range(len(SIZES))]
        modes.setdefault(mode, {})[game] = {"regime": regime, "best_params": best, "reason": reason,
                                            "params": params, "nll": nll, "evidence": None}
    fits: dict = {}
    for k, (mode, game) in enumerate(sorted(regimes)):
        if (mode, game) == ("matched", "Pong"):
            fits.setdefault(mode, {})[game] = {"fit": None, "reason": "parameter counts must be distinct"}
            continue
        alpha, e = 0.2 + 0.05 * k, 0.8 + 0.3 * k
        if (mode, game) == ("single", "Breakout"):
            fits.setdefault(mode, {})[game] = {"fit": None, "monotone": False, "reason": "not monotone: 6,600,000 "
                                               "parameters are worse than 1,200,000 by 0.09 (noise 0.02): a power "
                                               "law does not describe it"}
            continue
        fits.setdefault(mode, {})[game] = {
            "fit": {"E": e, "A": 40.0 + k, "alpha": alpha, "sizes": 4}, "params": "blocks",
            "alpha_ci": _ci(alpha, 0.06, 0.08), "alpha_total_ci": _ci(alpha - 0.03, 0.06, 0.08),
            "E_ci": _ci(e, 0.1, 0.05), "held_out": {"params": params[3], "observed": 1.5, "predicted": 1.5,
                                                    "relative_error": 0.012 * (k - 2)}, "monotone": True,
            "reason": None}
    paired = {size: {"games": list(GAMES), "seeds": list(SEEDS), "paired": True,
                     "differences": {g: _ci(0.13 + 0.01 * i, 0.02, 0.02) for g in GAMES},
                     "mean_difference": _ci(0.13 - 0.05 * i, 0.03, 0.04), "t": 3.1 - i, "dof": 1.0,
                     "p": 0.2 + 0.1 * i, "games_matched_better": min(i, 2), "untested": None}
              for i, size in enumerate(SIZES)}
    aggregates: dict = {}
    for mode in MODE_STEPS:
        for size in POLICY_SIZES:
            i = list(SIZES).index(size)
            games = {g: sum(_normalised(mode, g, i, s) for s in SEEDS) / len(SEEDS) for g in GAMES}
            point = sum(games.values()) / len(games)
            aggregates.setdefault(mode, {})[size] = {
                "games": games, "runs": {g: len(SEEDS) for g in GAMES}, "median": _ci(point, 0.05, 0.04),
                "iqm": _ci(point, 0.05, 0.04), "mean": _ci(point, 0.04, 0.03), "optimality_gap": _ci(1 - point, 0.03,
                                                                                                     0.04)}
    improvement = {
        "joint_vs_single": {"paper-d2": {**_ci(0.875, 0.25, 0.125), "games": list(GAMES)},
                            "paper-d12": {**_ci(1.0, 0.25, 0.0), "games": list(GAMES)}},
        "joint_vs_matched": {"paper-d2": {**_ci(0.75, 0.25, 0.25), "games": list(GAMES)},
                             "paper-d12": {**_ci(0.75, 0.375, 0.25), "games": list(GAMES)}},
        "matched_vs_single": {"paper-d2": {**_ci(0.625, 0.375, 0.25), "games": list(GAMES)},
                              "paper-d12": {**_ci(0.5, 0.375, 0.375), "games": list(GAMES)}},
    }
    rule = {"version": "regime-rule/3", "alpha": 0.05, "delta": 0.02, "margin_nats": 0.05, "min_sizes": 4,
            "min_seeds": 2, "bootstrap_reps": 1000, "permutation_reps": 2000, "weak_expert": 0.5}
    fidelity = {  # held-out NLL, lower wins: joint beats single at every size
        "joint_vs_single": {size: {**_ci(0.9 + 0.02 * i, 0.1, 0.04), "games": list(GAMES)}
                            for i, size in enumerate(SIZES)},
        "joint_vs_matched": {size: {**_ci(0.8, 0.2, 0.1), "games": list(GAMES)} for size in SIZES},
    }
    experts = {  # Pong's expert is strong; Breakout's reaches a fifth of the PPO reference's margin: weak
        "Breakout": {"score": 87.6, "sem": 6.1, "episodes": 30, "random": 1.4, "random_sem": 0.2, "margin_se": 14.1,
                     "human": 30.5, "ppo_reference": 432.0, "reference_share": 0.2, "weak": True, "weak_below": 0.5},
        "Pong": {"score": 19.2, "sem": 0.3, "episodes": 30, "random": -20.4, "random_sem": 0.1, "margin_se": 125.2,
                 "human": 14.6, "ppo_reference": 20.3, "reference_share": 0.97, "weak": False, "weak_below": 0.5},
    }
    baselines = {  # Breakout's smallest single size has a seed that does not beat copy-last-frame
        game: {"unigram": 3.1 + i, "copy": 1.05 + i, "flagged": ["single paper-d2"] if game == "Breakout" else [],
               "models": {mode: {size: {"nll": 1.0 + i - 0.05 * k, "seeds": len(SEEDS),
                                        "not_beating": [0] if (game, mode, k) == ("Breakout", "single", 0) else []}
                                 for k, size in enumerate(SIZES)} for mode in ("joint", "single")}}
        for i, game in enumerate(GAMES)}
    # Episodes against random: Pong's policies win clearly at the larger size, Breakout's do not
    # while imagining rewards (the exploitation gap)
    random_returns = {"Breakout": [1.0, 2.0, 1.0, 3.0, 2.0, 1.0], "Pong": [-21.0, -20.0, -21.0, -20.0, -21.0, -21.0]}
    episodes = [{"modes": [mode], "size": size, "game": game, "seed": seed, "trial": 0,
                 "returns": [r + (i * 3.0 + seed if game == "Pong" else 0.0) for r in random_returns[game][:4]],
                 "lengths": [800, 900, 1000, 700], "random_returns": random_returns[game],
                 "imagined_reward": 0.05 if game == "Breakout" else 0.001 * (i + 1)}
                for mode in MODE_STEPS for i, size in enumerate(POLICY_SIZES) for game in GAMES for seed in SEEDS]
    control = control_evidence(episodes, alpha=0.05)
    return {"rule": rule, "modes": modes, "bootstrap": {"reps": 1000, "seed": 7}, "fits": fits, "experts": experts,
            "baselines": baselines, "control": control, "control_family": family_summary(control, alpha=0.05),
            "matched_vs_joint": paired, "fidelity": {"improvement": fidelity},
            "scores": {"aggregates": aggregates, "improvement": improvement, "bootstrap": "hierarchical"},
            "comparison_modes": {"matched": MATCH_RULES["total_steps"]},
            "interaction": {"joint_stabilises_single": {  # Breakout's single curve rises and its joint one does not
                "games": {"Breakout": {"p": 0.012, "p_rise": 0.004, "p_no_rise": 0.012, "p_x_rise": 1.0,
                                       "rise_y": 0.131, "rise_x": 0.0, "seeds_x": 2, "seeds_y": 2,
                                       "paired": {"x": True, "y": True}, "p_bh": 0.024, "stabilised": True,
                                       "y_rises": True, "x_rises": False},
                          "Pong": {"p": 0.31, "p_rise": 0.31, "p_no_rise": 0.02, "p_x_rise": 1.0, "rise_y": 0.01,
                                   "rise_x": 0.0, "seeds_x": 2, "seeds_y": 2, "paired": {"x": True, "y": True},
                                   "p_bh": 0.31, "stabilised": False, "y_rises": False, "x_rises": False}},
                "left_out": {}, "sizes": list(SIZES), "margin": 0.05, "alpha": 0.05,
                "overall": {"p": 0.024, "games": 2, "stabilised": ["Breakout"], "y_rises": ["Breakout"],
                            "x_rises_too": []}}},
            "modes_best": {mode: {game: {**r, "regime": "classical" if r["regime"] == "monotonic" else r["regime"]}
                                  for game, r in games.items()} for mode, games in modes.items()},
            "best_steps": {mode: {game: {size: [1000 * (i + 1)] * len(SEEDS) for i, size in enumerate(SIZES)}
                                  for game in games} for mode, games in modes.items()}}


def build_root(root: Path, *, controls_done: int | None = None, analysis: dict | None = None) -> RunStore:
    """Two games, four sizes, two seeds, three modes; policies at two sizes. The first
    `controls_done` control jobs finish (all by default); the analysis job finishes with `analysis`
    (none: it stays pending)."""
    graph = Graph()
    anchors = {g: graph.add(Job("anchor", {"game": g, "upper": "human", "episodes": 10}, [], {"game": g, **TAG}))
               for g in GAMES}
    tokenizer = graph.add(Job("tokenizer", {"steps": 50}, [], {"games": list(GAMES), "scope": "shared", **TAG}))
    tokens = {g: graph.add(Job("tokens", {"game": g}, [tokenizer], {"game": g, **TAG}, {"max_residual": 0.5}))
              for g in GAMES}
    runs = [("single", [g]) for g in GAMES] + [("joint", list(GAMES))] + [("matched", [g]) for g in GAMES]
    fidelity, control = [], []
    for size in SIZES:
        for seed in SEEDS:
            for mode, games in runs:
                labels = {"modes": [mode], "games": games, "size": size, "seed": seed, **TAG}
                cfg = {"size": size, "games": games if len(games) > 1 else [], "steps": MODE_STEPS[mode],
                       "seed": seed}
                did = graph.add(Job("dynamics", cfg, [tokens[g] for g in games], labels))
                fidelity.append(graph.add(Job("fidelity", {"horizon": 4}, [did], labels)))
                if size not in POLICY_SIZES:
                    continue
                for game in games:
                    pid = graph.add(Job("policy", {"steps": 30}, [did, tokens[game]],
                                        {**labels, "game": game, "trial": 0}))
                    control.append(graph.add(Job("control", {"episodes": 4}, [pid, did, anchors[game]],
                                                 {**labels, "game": game, "trial": 0})))
    graph.add(Job("analysis", {"rule": {"min_seeds": 2}}, sorted(fidelity) + sorted(control),
                  {"variant": "base", **TAG}))
    store = RunStore(root)
    store.write_plan(graph, "name: synthetic\n", keep_checkpoints=False)

    for job in graph.by_kind("anchor"):
        random, human = ANCHORS[job.labels["game"]]
        _finish(store, job, {"anchor": "anchor.json", "random": random, "upper": human, "upper_kind": "human"},
                {"anchor.json": {"game": job.labels["game"], "random": {"score": random},
                                 "upper": {"kind": "human", "score": human}}})
    for job in graph.by_kind("tokenizer"):
        _finish(store, job, {"tokenizer": "tokenizer.pt", "quality": {g: _quality(g) for g in GAMES}})
    for job in graph.by_kind("tokens"):
        _finish(store, job, {"tokens": "tokens", "quality": _quality(job.labels["game"])})
    for job in graph.by_kind("dynamics"):
        extra = 2 * 512 if len(job.labels["games"]) > 1 else 0  # a joint model's game embeddings
        _finish(store, job, {"dynamics": "dynamics.pt", "params": {"total": SIZES[job.labels["size"]] + extra,
                                                                  "blocks": SIZES[job.labels["size"]] // 2}})
    for job in graph.by_kind("fidelity"):
        (mode,) = job.labels["modes"]
        i = list(SIZES).index(job.labels["size"])
        nll = {g: _nll(mode, g, i, job.labels["seed"]) for g in job.labels["games"]}
        loop = {g: {"psnr": [round(36.0 - 0.5 * h + 0.4 * i, 2) for h in range(4)],  # bigger models imagine better
                    "tokenizer_psnr": [38.5 + 0.01 * h for h in range(4)]} for g in nll}
        _finish(store, job, {"fidelity": "fidelity.json", "nll": nll},
                {"fidelity.json": {"games": {g: {"nll_nats_per_frame": v, "open_loop": loop[g]}
                                             for g, v in nll.items()}}})
    for job in graph.by_kind("policy"):
        _finish(store, job, {"policy": "policy.pt", "game": job.labels["game"], "final": {}})
    for job in graph.by_kind("control")[:controls_done]:
        (mode,) = job.labels["modes"]
        game, seed = job.labels["game"], job.labels["seed"]
        normalised = _normalised(mode, game, list(SIZES).index(job.labels["size"]), seed)
        random, human = ANCHORS[game]
        score = round(random + normalised * (human - random), 4)
        record = {"game": game, "mean": score, "returns": [score], "normalised": {
            "returns": [normalised], "mean": normalised, "random_score": random, "upper_score": human,
            "upper_kind": "human"}}
        _finish(store, job, {"control": "control.json", "game": game, "score": score, "normalised": normalised,
                             "upper_kind": "human"}, {"control.json": record})
    if analysis is not None:
        (job,) = graph.by_kind("analysis")
        _finish(store, job, {"analysis": "analysis.json"}, {"analysis.json": analysis})
    return store


def _rendered(store: RunStore) -> str:
    out = StringIO()
    from rich.console import Console

    # Not a terminal: plain ASCII, as when the report is piped into a file.
    render(collect_results(store.root), Console(file=out, width=120, force_terminal=False, color_system=None))
    # Trailing spaces (rich pads centred titles) are dropped: editors strip them from the snapshot.
    lines = out.getvalue().replace(str(store.root), "RUN_ROOT").splitlines()
    return "\n".join(line.rstrip() for line in lines) + "\n"


def test_the_report_of_a_finished_run_root_matches_its_snapshot(tmp_path):
    text = _rendered(build_root(tmp_path / "root", analysis=_analysis_json()))
    if os.environ.get("SCALEWORLD_UPDATE_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(text)
    assert text == SNAPSHOT.read_text(), "the report changed; see this module's docstring to update the snapshot"


def test_a_partial_run_root_says_what_is_missing_and_exports_what_is_done(tmp_path):
    store = build_root(tmp_path / "root", controls_done=10)
    text = " ".join(_rendered(store).split())
    assert "partial results: 15 jobs not finished" in text  # 14 control jobs and the analysis
    for missing in ("scaling regimes", "scaling-law fits", "matched vs joint"):
        assert f"{missing}: missing (the analysis job has not finished)" in text
    assert "normalised control scores: missing (the analysis job has not finished; 10 of 24 control jobs done" in text
    assert "scaling curves" in text and "| single | Pong |" in text  # what is done is shown
    assert "| shared | Pong | 1024 held-out | 7.5 | 980 | 0.340 (0.360) | 39.5 (33.7) | <= 0.5 | pass |" in text

    # A game whose residual fraction is above its tokens job's gate is shown failing.
    (tokenizer,) = store.read_plan().by_kind("tokenizer")
    done = json.loads((store.job_dir(tokenizer) / "done.json").read_text())
    done["outputs"]["quality"]["Pong"]["residual_fraction"] = 0.71
    _write(store.job_dir(tokenizer) / "done.json", done)
    assert "| shared | Pong | 1024 held-out | 7.5 | 980 | 0.710 (0.360) | 39.5 (33.7) | <= 0.5 | FAIL |" in " ".join(
        _rendered(store).split())

    results = collect_results(store.root)
    assert results["control"]["jobs"] == {"done": 10, "total": 24}
    assert sum(e["runs"] for sizes in results["control"]["games"]["base"].values() for per_game in sizes.values()
               for e in per_game.values()) == 10


def test_an_analysis_without_control_scores_or_fits_is_said_not_shown(tmp_path):
    """An analysis.json from before fits, the paired test and control scores; and a study without policies."""
    old = {k: v for k, v in _analysis_json().items() if k in ("rule", "modes")}
    store = build_root(tmp_path / "root", analysis=old)
    text = " ".join(_rendered(store).split())
    assert "scaling-law fits (base): not in this analysis.json" in text
    assert "matched vs joint (base): not in this analysis.json" in text
    assert "normalised control scores (base): not in this analysis.json" in text
    assert "P(improvement) (base) of held-out NLL: not in this analysis.json" in text
    assert "experts (base): not in this analysis.json" in text
    assert "baselines (base): not in this analysis.json" in text
    none = {**_analysis_json(), "scores": {"aggregates": {}, "improvement": {}}, "matched_vs_joint": {}, "experts": {}}
    _write(next(store.root.glob("analysis/*/analysis.json")), none)
    text = " ".join(_rendered(store).split())
    assert "normalised control scores (base): not measured (this study trains no policies)" in text
    assert "matched vs joint (base): not in this study" in text
    assert "experts (base): not in this study (no expert was scored" in text
    assert interval_text({"point": None, "lo": None, "hi": None}) == "n/a"
    assert interval_text({"point": 0.5, "lo": None, "hi": 0.75}) == "0.500 [n/a, 0.750]"
    # an analysis written before comparison_modes had its name holds them as "controls"
    old = {k: v for k, v in _analysis_json().items() if k != "comparison_modes"}
    _write(next(store.root.glob("analysis/*/analysis.json")), {**old, "controls": {"matched": "held equal"}})
    assert "comparison mode matched (base) holds equal: held equal" in " ".join(_rendered(store).split())


def test_the_report_opens_with_its_findings_and_shows_only_the_sections_asked_for(tmp_path):
    store = build_root(tmp_path / "root", analysis=_analysis_json())

    def report(*args):
        return subprocess.run([sys.executable, "-m", "scaleworld.cli", "report", store.root, "--width", "80", *args],
                              capture_output=True, text=True)

    piped = report().stdout
    assert "…" not in piped  # off a terminal a cell too long for its column folds onto the next line
    games = subprocess.run([sys.executable, "-m", "scaleworld.cli", "games"], capture_output=True, text=True,
                           env={**os.environ, "COLUMNS": "80"})
    assert games.returncode == 0 and "Alien" in games.stdout and "…" not in games.stdout
    lines = piped.splitlines()
    first_table = next(i for i, line in enumerate(lines) if line.strip() == "jobs")
    # the block fits the first screen at 80 columns
    assert any(line.startswith("findings") for line in lines[:3]) and first_table <= 25
    block = " ".join(" ".join(lines[:first_table]).split())
    for answer in ("regimes, single: double_descent 1 (Breakout); monotonic 1 (Pong)",
                   "joint stabilises single's scaling: p = 0.024 over 2 games; stabilised in 1 (Breakout)",
                   "joint beats single 0.960 [0.860, 1.000]", "normalised score at paper-d12, median / IQM",
                   "CHECK weak experts, 1 of 2", "CHECK models not beating the unigram and copy-last-frame"):
        assert answer in block, block
    only = " ".join(report("--section", "scores", "--section", "regimes").stdout.split())
    assert "scaling regimes (base" in only and "normalised control scores (base)" in only and "findings" in only
    assert "scaling curves" not in only and "| kind | done |" not in only
    assert only.index("normalised control scores (base)") < only.index("scaling regimes (base")  # the order asked
    from scaleworld.analysis.regimes import REGIMES
    from scaleworld.report.glossary import GLOSSARY

    assert set(REGIMES) <= set(GLOSSARY)  # every class the report can print is defined in its glossary
    assert "glossary (each word has one meaning in this report)" in piped and "  flat: every size within" in piped
    bad = report("--section", "everything")
    assert bad.returncode == 2 and "invalid choice: 'everything'" in bad.stderr


def test_json_csv_and_figures_export_the_control_scores(tmp_path):
    store = build_root(tmp_path / "root", analysis=_analysis_json())
    proc = subprocess.run([sys.executable, "-m", "scaleworld.cli", "report", store.root, "--width", "120",
                           "--json", tmp_path / "r.json", "--csv", tmp_path / "nll.csv", "--figures", tmp_path / "f"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "r.json").read_text())
    aggregates = data["regimes"]["base"]["scores"]["aggregates"]
    assert aggregates == _analysis_json()["scores"]["aggregates"]
    # The flat tables: every row has its table's keys and no nested value; they join on the shared keys.
    from scaleworld.report.tidy import TABLES

    tables = data["tables"]
    assert set(tables) == set(TABLES)
    for name, rows in tables.items():
        assert (rows or name == "source_changes") and all(set(r) == set(TABLES[name]) for r in rows), name
        assert not any(isinstance(v, (dict, list)) for r in rows for v in r.values()), name
    regime = {(r["variant"], r["mode"], r["game"]): r["regime"] for r in tables["regimes"]}
    assert {regime[(r["variant"], r["mode"], r["game"])] for r in tables["nll"] if r["game"] == "Breakout"} == {
        "classical", "flat", "double_descent"}
    cells = {(r["variant"], r["mode"], r["size"], r["game"]): r for r in tables["versus_random"]}
    assert all((r["variant"], r["mode"], r["size"], r["game"]) in cells for r in tables["control"])
    assert len(tables["control"]) == 24 and len(tables["regimes"]) == 6
    median = next(r for r in tables["scores"] if (r["mode"], r["size"], r["statistic"]) == ("joint", "paper-d12",
                                                                                            "median"))
    assert median["value"] == aggregates["joint"]["paper-d12"]["median"]["point"]
    breakout = data["control"]["games"]["base"]["joint"]["paper-d12"]["Breakout"]
    expected = [_normalised("joint", "Breakout", 3, s) for s in SEEDS]
    assert breakout["runs"] == 2 and breakout["upper_kind"] == "human"
    assert abs(breakout["normalised"] - sum(expected) / 2) < 1e-12
    rows = list(csv.DictReader((tmp_path / "nll_control.csv").open()))
    assert len(rows) == 24 and {r["upper_kind"] for r in rows} == {"human"}
    row = next(r for r in rows if (r["mode"], r["game"], r["size"], r["seed"]) == ("joint", "Breakout", "paper-d12",
                                                                                   "1"))
    assert float(row["normalised"]) == expected[1]
    assert len((tmp_path / "nll.csv").read_text().splitlines()) == 1 + 4 * 2 * (2 + 2 + 2)  # sizes x seeds x NLLs
    for name in ("scaling_curves.png", "single_vs_joint.png", "aggregate_scores.png"):
        assert (tmp_path / "f" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pdf = subprocess.run([sys.executable, "-m", "scaleworld.cli", "report", store.root, "--section", "jobs",
                          "--figures", tmp_path / "pdf", "--format", "pdf", "--dpi", "72"],
                         capture_output=True, text=True)
    assert pdf.returncode == 0, pdf.stderr
    for name in ("scaling_curves.pdf", "single_vs_joint.pdf", "aggregate_scores.pdf"):
        assert (tmp_path / "pdf" / name).read_bytes()[:5] == b"%PDF-"
        assert f"wrote {tmp_path / 'pdf' / name}" in pdf.stdout


def test_a_study_too_small_for_a_test_says_why_in_the_report(tmp_path):
    """One seed (and, for the interaction, too few sizes): every headline test says it is untested
    and why, and intervals say they need two seeds, rather than crashing or printing p = 1."""
    import numpy as np

    from scaleworld.analysis.interaction import interaction_tests
    from scaleworld.analysis.summary import matched_vs_joint, score_summary

    one_seed = {mode: {g: {size: {0: _nll(mode, g, i, 0)} for i, size in enumerate(SIZES)} for g in GAMES}
                for mode in MODE_STEPS}
    scores = {mode: {"paper-d2": {g: {0: [0.3]} for g in GAMES}} for mode in MODE_STEPS}
    analysis = {**_analysis_json(),
                "interaction": interaction_tests(one_seed, order=list(SIZES), margin=0.05, alpha=0.05),
                "matched_vs_joint": matched_vs_joint(one_seed),
                "scores": score_summary(scores, rng=np.random.default_rng(0), reps=50)}
    store = build_root(tmp_path / "root", analysis=analysis)
    text = " ".join(_rendered(store).split())
    assert "| Breakout | - | - | - | - | - | untested: needs >= |" in text  # a table cell wraps its reason
    assert "joint stabilises single (base): untested (no game has enough sizes and seeds)" in text
    assert "| paper-d2 | 2 | 1 | - | untested: needs >= 2 seeds that every |" in text
    assert "| (no interval: |" in text and " p=1" not in text


def _printed(style_full: bool, print_one) -> str:
    from rich import box
    from rich.console import Console

    from scaleworld.report.collapse import TableStyle

    out = StringIO()
    print_one(Console(file=out, width=200, force_terminal=False, color_system=None),
              TableStyle(box.ASCII, full=style_full))
    return " ".join(out.getvalue().split())


def test_a_table_of_many_games_shows_what_differs_and_full_shows_every_row():
    from scaleworld.report import COLLAPSE_ABOVE
    from scaleworld.report.collapse import print_table

    games = [f"Game{i:02d}" for i in range(COLLAPSE_ABOVE + 4)]  # 12 games: collapsed
    rows = [("single", g, "inconclusive", "200" if i < 3 else "300", "only 2 sizes") for i, g in enumerate(games)]
    rows.append(("joint", "Game00", "monotonic", "300", "only 2 sizes"))
    columns = ("mode", "game", "regime", "best", "evidence")
    text = _printed(False, lambda c, s: print_table(c, s, "regimes", columns, rows))
    assert "| single | group 1 (3 games) | inconclusive | 200 |" in text
    assert "| single | group 2 (9 games) | inconclusive | 300 |" in text
    assert "| joint | Game00 | monotonic | 300 |" in text  # a game apart from its group keeps its name
    assert "group 1 (3 games): Game00, Game01, Game02" in text
    assert "every row: evidence = only 2 sizes" in text and "| evidence |" not in text
    assert "Game11" in text  # every game is still named
    full = _printed(True, lambda c, s: print_table(c, s, "regimes", columns, rows))
    assert all(f"| single | {g} | inconclusive |" in full for g in games) and "group" not in full

    # Every game alike: one line, the dashes (nothing to say) left out.
    alike = [(g, "-", "untested: needs 3 sizes") for g in games]
    text = _printed(False, lambda c, s: print_table(c, s, "stabilises", ("game", "rise", "stabilised"), alike))
    assert text == "stabilises: all 12 games: stabilised = untested: needs 3 sizes"
    # At COLLAPSE_ABOVE games or fewer every row is shown, even alike ones.
    few = alike[:COLLAPSE_ABOVE]
    text = _printed(False, lambda c, s: print_table(c, s, "stabilises", ("game", "rise", "stabilised"), few))
    assert f"| {games[COLLAPSE_ABOVE - 1]} | - | untested: needs 3 sizes |" in text


def test_the_control_table_of_many_games_keeps_the_cells_that_beat_random():
    from scaleworld.report.sections import render_versus_random

    games = [f"Game{i:02d}" for i in range(12)]
    random_returns = [1.0, 2.0, 1.0, 3.0, 2.0, 1.0]
    # Game03's policies win clearly; the others score as random does.
    episodes = [{"modes": ["single"], "size": "d2", "game": g, "seed": seed, "trial": 0,
                 "returns": [r + (50.0 + seed if g == "Game03" else 0.0) for r in random_returns[:4]],
                 "lengths": [100] * 4, "random_returns": random_returns, "imagined_reward": 0.01}
                for g in games for seed in (0, 1)]
    control = control_evidence(episodes, alpha=0.05)
    analysis = {"control": control, "control_family": family_summary(control, alpha=0.05)}
    text = _printed(False, lambda c, s: render_versus_random("base", analysis, c, s, str))
    assert "| Game03 |" in text and "| yes |" in text
    assert "| the other 11 games |" in text and "Game04" not in text
    assert "every row: size = d2" in text and "every row: mode = single" in text
    assert "--full: every cell" in text
    full = _printed(True, lambda c, s: render_versus_random("base", analysis, c, s, str))
    assert all(f"| {g} |" in full for g in games) and "the other" not in full


def test_several_variants_answer_side_by_side_one_line_per_question(tmp_path):
    """A study with data sources (or ablations) gives each question one line: the variants that agree
    share an answer, the others follow it."""
    import copy

    from scaleworld.report.findings import findings
    from scaleworld.report.sections import size_key

    results = collect_results(build_root(tmp_path / "root", analysis=_analysis_json()).root)
    other = copy.deepcopy(results["regimes"]["base"])
    other["modes"]["joint"]["Pong"]["regime"] = "degrading"
    results["regimes"]["eps"] = other
    lines = [" ".join(text.split()) for text, _ in findings(results, size_key(results["size_params"]))]
    joint = [line for line in lines if line.startswith("regimes, joint:")]
    assert len(joint) == 1 and " | eps: " in joint[0] and joint[0].count("base") == 1
    single = [line for line in lines if line.startswith("regimes, single:")]
    assert len(single) == 1 and single[0].endswith("(every variant)")
