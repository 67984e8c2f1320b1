"""Running one job of a study: ``python -m scaleworld.study.jobs RUN_ROOT JOB_ID [JOB_ID ...]``
(several ids: dynamics jobs trained as one pack, ``launcher.pack``).

Each kind reads its inputs' outputs from their job folders and writes its own into its folder.
Training kinds resume from their checkpoint; collection and encoding restart from scratch (their
staging folders never look finished). Exit status: 0 done, 1 failed (reason in failed.json),
75 another driver holds the job's lock. An interrupted job (Ctrl-C, or SLURM's time-limit signal, on
which submitit requeues the task) is neither done nor failed: the next run resumes it. A job whose
process dies without a word (SIGKILL, the OOM killer) is marked failed by its executor.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from scaleworld.data.files import write_json_atomic
from scaleworld.study.graph import Graph, Job
from scaleworld.study.stages import (
    AnalysisStage,
    AnchorStage,
    CollectStage,
    ControlStage,
    DynamicsStage,
    ExpertStage,
    FidelityStage,
    PolicyStage,
    Stage,
    TokenizerStage,
    TokensStage,
    stage_of,
)
from scaleworld.study.store import JobLock, RunStore

EXIT_LOCKED = 75


def _clean_partials(folder: Path) -> None:
    for stale in folder.glob(".*.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _expert(store: RunStore, graph: Graph, job: Job, out: Path) -> dict[str, Any]:
    """Train a PPO expert (resuming from its checkpoint), then measure its score: the upper anchor."""
    from scaleworld.experts.anchor import score_expert
    from scaleworld.experts.ppo import train_ppo
    from scaleworld.experts.tasks import AtariTask
    from scaleworld.training.trainer import resolve_device

    c = stage_of(job)
    protocol = c.protocol_config()
    result = train_ppo(AtariTask(game=c.game, protocol=protocol), c.ppo_config(), out / ExpertStage.ARTIFACT,
                       device=resolve_device(), progress=False)
    record = score_expert(out / ExpertStage.ARTIFACT, episodes=c.episodes, protocol=protocol, seed=c.seed)
    return {"expert": "expert", "updates": result.updates_done, "frames": result.frames_done,
            "score": record["mean"]}


def _collect(store: RunStore, graph: Graph, job: Job, out: Path) -> dict[str, Any]:
    from scaleworld.data.collect import collect_dataset
    from scaleworld.experts.policies import make_policy

    c = stage_of(job)
    _clean_partials(out)
    if (out / CollectStage.ARTIFACT).exists():  # a dataset whose done.json was not written: redo it
        shutil.rmtree(out / CollectStage.ARTIFACT)
    source = c.policy["source"]
    if source == "ppo":
        (expert,) = _input_dirs(store, graph, job, "expert")
        source = str(expert / ExpertStage.ARTIFACT)
    options = {k: c.policy[k] for k in ("sampling", "epsilon") if k in c.policy}
    policy = make_policy(source, seed=c.seed, **options)
    manifest = collect_dataset(game=c.game, policy=policy, policy_identity=policy.identity, steps=c.steps,
                               out=out / CollectStage.ARTIFACT, protocol=c.protocol_config(), seed=c.seed,
                               num_envs=c.num_envs, progress=False)
    return {"dataset": CollectStage.ARTIFACT, "episodes": manifest["counts"]["episodes"],
            "mean_return": manifest["returns"]["mean"]}


def _input_dirs(store: RunStore, graph: Graph, job: Job, kind: str) -> list[Path]:
    return [store.job_dir(graph.jobs[i]) for i in job.inputs if graph.jobs[i].kind == kind]


def _artifacts(store: RunStore, graph: Graph, job: Job, stage: type[Stage]) -> list[Path]:
    """The artifact of each input of `stage`'s kind (a dataset folder, a token folder, ...)."""
    return [d / stage.ARTIFACT for d in _input_dirs(store, graph, job, stage.KIND)]


def _tokenizer(store: RunStore, graph: Graph, job: Job, out: Path) -> dict[str, Any]:
    from scaleworld.training.runs import train_tokenizer
    from scaleworld.training.trainer import resolve_device  # the GPU the job was given, if any

    c = stage_of(job)
    info = train_tokenizer(data_dirs=_artifacts(store, graph, job, CollectStage), out=out,
                           config=c.model_config(), train=c.train_config(),
                           val_fraction=c.val_fraction, split_seed=c.split_seed, progress=False,
                           device=resolve_device())
    return {"tokenizer": TokenizerStage.ARTIFACT, "final": info["final"], "quality": info["quality"]}


def _tokens(store: RunStore, graph: Graph, job: Job, out: Path) -> dict[str, Any]:
    from scaleworld.models.encode import encode_dataset
    from scaleworld.models.tokenizer_config import MAX_RESIDUAL_FRACTION

    _clean_partials(out)
    if (out / TokensStage.ARTIFACT).exists():
        shutil.rmtree(out / TokensStage.ARTIFACT)
    (tokenizer,) = _input_dirs(store, graph, job, "tokenizer")
    (dataset,) = _artifacts(store, graph, job, CollectStage)
    gate = job.checks.get("max_residual", MAX_RESIDUAL_FRACTION)
    manifest = encode_dataset(tokenizer_dir=tokenizer, data_dir=dataset, out=out / TokensStage.ARTIFACT,
                              max_residual=gate, progress=False)
    return {"tokens": TokensStage.ARTIFACT, "quality": manifest["tokenizer"]["quality"], "max_residual": gate}


def _dynamics_arguments(store: RunStore, graph: Graph, job: Job, out: Path) -> dict[str, Any]:
    """`train_dynamics`'s keyword arguments for a dynamics job (but progress and device)."""
    from scaleworld.data.windows import WINDOWS
    from scaleworld.models.dynamics_config import TERMINATION_TARGETS

    c = stage_of(job)
    return dict(token_dirs=_artifacts(store, graph, job, TokensStage), out=out, model=c.model_config(),
                train=c.train_config(), windows=c.windows or WINDOWS[0],
                termination=c.termination or TERMINATION_TARGETS[0], validation_fraction=c.validation or 0.0,
                val_fraction=c.val_fraction, split_seed=c.split_seed)


def _dynamics_outputs(info: dict[str, Any]) -> dict[str, Any]:
    return {"dynamics": DynamicsStage.ARTIFACT, "params": info["params"], "tokens_seen": info["tokens_seen"],
            "final": info["final"], **({"best": info["best"]} if "best" in info else {})}


def _dynamics(store: RunStore, graph: Graph, job: Job, out: Path) -> dict[str, Any]:
    from scaleworld.training.runs import train_dynamics
    from scaleworld.training.trainer import resolve_device

    info = train_dynamics(**_dynamics_arguments(store, graph, job, out), progress=False, device=resolve_device())
    return _dynamics_outputs(info)


def _dynamics_pack(store: RunStore, graph: Graph, jobs: list[Job], outs: list[Path]) -> list[dict[str, Any]]:
    """Several dynamics jobs trained as one pack (scaleworld.study.packing, scaleworld.training.packed)."""
    from scaleworld.training.packed import pack_runs
    from scaleworld.training.trainer import resolve_device

    infos = pack_runs([_dynamics_arguments(store, graph, j, o) for j, o in zip(jobs, outs)], progress=False,
                      device=resolve_device())
    return [{**_dynamics_outputs(info), "packed_with": [j.id for j in jobs]} for info in infos]


def _fidelity(store: RunStore, graph: Graph, job: Job, out: Path) -> dict[str, Any]:
    from scaleworld.evaluation.fidelity import evaluate_fidelity

    c = stage_of(job)
    (dynamics,) = _input_dirs(store, graph, job, "dynamics")
    (tokenizer,) = _input_dirs(store, graph, job, "tokenizer")
    record = evaluate_fidelity(dynamics_dir=dynamics, tokenizer_dir=tokenizer,
                               token_dirs=_artifacts(store, graph, job, TokensStage),
                               context_steps=c.context_steps, horizon=c.horizon, rollouts=c.rollouts,
                               seed=c.seed, out=out / FidelityStage.ARTIFACT)
    best = record.get("best")
    return {"fidelity": FidelityStage.ARTIFACT,
            "nll": {g: r["nll_nats_per_frame"] for g, r in record["games"].items()},
            **({"best": {"step": best["step"], "nll": {g: r["nll_nats_per_frame"] for g, r in best["games"].items()}}}
               if best else {})}


def _anchor(store: RunStore, graph: Graph, job: Job, out: Path) -> dict[str, Any]:
    """A game's anchors for normalised scores: the random policy's score and the upper anchor, and the
    expert's quality record wherever the expert was scored (a PPO expert job always scores it)."""
    from scaleworld.evaluation.control import measure_anchors
    from scaleworld.experts.checkpoint import SCORE_JSON

    c = stage_of(job)
    protocol = c.protocol_config()
    expert_record = None
    experts = _input_dirs(store, graph, job, "expert")
    if experts:  # a PPO expert job measured its score under the study's protocol
        expert_record = json.loads((experts[0] / ExpertStage.ARTIFACT / SCORE_JSON).read_text())
    elif c.upper == "expert":  # an imported expert: score it here, under the study's protocol
        from scaleworld.experts.anchor import score_expert

        expert_record = score_expert(c.expert["source"], episodes=c.expert["episodes"], protocol=protocol,
                                     seed=c.seed, num_envs=c.num_envs, out=out / "expert_score.json")
    record = measure_anchors(game=c.game, protocol=protocol, episodes=c.episodes, seed=c.seed,
                             num_envs=c.num_envs, upper=c.upper, expert_record=expert_record)
    write_json_atomic(out / AnchorStage.ARTIFACT, record)
    return {"anchor": AnchorStage.ARTIFACT, "random": record["random"]["score"], "upper": record["upper"]["score"],
            "upper_kind": record["upper"]["kind"],
            **({"expert_margin_se": record["expert"]["margin_se"]} if "expert" in record else {})}


def _policy(store: RunStore, graph: Graph, job: Job, out: Path) -> dict[str, Any]:
    """Train a policy purely inside the world model (resuming from its checkpoint)."""
    from scaleworld.imagination.train import train_policy
    from scaleworld.training.trainer import resolve_device

    c = stage_of(job)
    (dynamics,) = _input_dirs(store, graph, job, "dynamics")
    (tokens,) = _input_dirs(store, graph, job, "tokens")
    info = train_policy(dynamics_dir=dynamics, token_dir=tokens / TokensStage.ARTIFACT, out=out,
                        config=c.policy_config(), train=c.train_config(), starts=c.start_split(),
                        device=resolve_device(), progress=False)
    return {"policy": PolicyStage.ARTIFACT, "game": info["game"], "final": info["final"]}


def _control(store: RunStore, graph: Graph, job: Job, out: Path) -> dict[str, Any]:
    """Score a policy in its real game; raw and expert-random normalised."""
    from scaleworld.evaluation.control import evaluate_control

    c = stage_of(job)
    (policy,) = _input_dirs(store, graph, job, "policy")
    (dynamics,) = _input_dirs(store, graph, job, "dynamics")
    (tokenizer,) = _input_dirs(store, graph, job, "tokenizer")
    (anchor,) = _input_dirs(store, graph, job, "anchor")
    record = evaluate_control(policy_dir=policy, dynamics_dir=dynamics, tokenizer_dir=tokenizer,
                              anchors=json.loads((anchor / AnchorStage.ARTIFACT).read_text()), episodes=c.episodes,
                              protocol=c.protocol_config(), seed=c.seed, num_envs=c.num_envs,
                              greedy=c.greedy, out=out / ControlStage.ARTIFACT)
    return {"control": ControlStage.ARTIFACT, "game": record["game"], "score": record["mean"],
            "normalised": record["normalised"]["mean"], "upper_kind": record["normalised"]["upper_kind"]}


def _episode_intervals(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """[mode][game] -> per size (ascending parameters) the mean NLL with an interval over seeds and
    held-out episodes (`scaleworld.analysis.hierarchical.episode_size_means`); games whose fidelity
    records lack the episodes are left out."""
    from scaleworld.analysis.hierarchical import episode_size_means
    from scaleworld.analysis.summary import interval

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
    from scaleworld.analysis.regimes import classify_games

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
                   "evidence": _plain(asdict(res.evidence))}
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


def _analysis(store: RunStore, graph: Graph, job: Job, out: Path) -> dict[str, Any]:
    """Scaling regimes of held-out NLL per (mode, game), under the spec's rule, at the final
    checkpoints (``modes``) and, for runs that kept one, at the best (``modes_best``)."""
    from scaleworld.analysis.interaction import interaction_tests
    from scaleworld.analysis.summary import (
        baseline_comparison,
        fidelity_improvement,
        matched_vs_joint,
        scaling_fits,
        score_summary,
    )
    from scaleworld.analysis.versus_random import control_evidence, family_summary
    from scaleworld.study.results import control_episodes, nll_readings
    from scaleworld.training.config import JOINT_SHORT, MATCH_RULES

    stage = stage_of(job)
    r, rule = stage.rule, stage.regime_rule()
    readings = nll_readings(store, graph, [graph.jobs[i] for i in job.inputs])
    rows, best_rows = readings["final"], readings["best"]
    result = _regimes(rows, rule=rule, seed=r["seed"])
    # [mode][game][x][seed] -> NLL, x the total parameters, block parameters or size name
    curves, by_blocks, by_seed = (_by_seed(rows, key) for key in ("params", "blocks", "size"))
    blocks_of = {row["size"]: row["blocks"] for row in rows}  # orders the sizes of the interaction test
    # the best reading's bootstraps draw from a stream of their own: the final reading's stay as they were
    best = {"modes_best": _regimes(best_rows, rule=rule, seed=[r["seed"], 2]),
            "best_steps": _grouped(best_rows, ("mode", "game", "size"), "step")} if best_rows else {}
    modes = {row["mode"] for row in rows}
    controls = {**({"matched": MATCH_RULES[job.labels.get("matched_rule", "tokens_per_game")]}
                   if "matched" in modes else {}),
                **({"joint_short": JOINT_SHORT} if "joint_short" in modes else {})}
    reps = r["bootstrap_reps"]
    rng = np.random.default_rng([r["seed"], 1])  # a stream of its own: the regimes' intervals stay as they were
    control = control_evidence(control_episodes(store, graph, [graph.jobs[i] for i in job.inputs]), alpha=rule.alpha)
    write_json_atomic(out / AnalysisStage.ARTIFACT, _plain({
        "rule": rule.to_dict(), "modes": result, **best, "controls": controls,
        "bootstrap": {"reps": reps, "seed": r["seed"]},
        "fits": scaling_fits(by_blocks, total=curves, rng=rng, reps=reps),
        "matched_vs_joint": matched_vs_joint(by_seed),
        "fidelity": {"improvement": fidelity_improvement(by_seed, rng=rng, reps=reps)},
        "baselines": baseline_comparison(rows),
        **({"size_means_episodes": _episode_intervals(rows)}
           if r.get("episode_bootstrap") else {}),
        "interaction": interaction_tests(by_seed, order=sorted(blocks_of, key=lambda size: (blocks_of[size], size)),
                                         margin=rule.margin_nats, alpha=rule.alpha),
        "scores": score_summary(_control_scores(store, graph, job), rng=rng, reps=reps),
        "experts": _expert_quality(store, graph, job, weak_below=r["weak_expert"]),
        "control": control, "control_family": family_summary(control, alpha=rule.alpha),
    }))
    return {"analysis": AnalysisStage.ARTIFACT,
            "regimes": {mode: {g: v["regime"] for g, v in games.items()} for mode, games in result.items()},
            **({"regimes_best": {mode: {g: v["regime"] for g, v in games.items()}
                                 for mode, games in best["modes_best"].items()}} if best else {})}


def _expert_quality(store: RunStore, graph: Graph, job: Job, *, weak_below: float) -> dict[str, Any]:
    """experts[game]: the anchor job's expert quality record (`expert_quality`), flagged ``weak`` when its
    share of the PPO reference's margin over random is below `weak_below`; games without one left out."""
    experts = {}
    for folder in _input_dirs(store, graph, job, "anchor"):
        record = json.loads((folder / AnchorStage.ARTIFACT).read_text())
        if "expert" in record:
            share = record["expert"]["reference_share"]
            experts[record["game"]] = {**record["expert"], "weak": bool(share < weak_below), "weak_below": weak_below}
    return experts


def _control_scores(store: RunStore, graph: Graph, job: Job) -> dict[str, dict[str, dict[str, dict[int, list[float]]]]]:
    """scores[mode][size][game][world-model seed] -> normalised mean score of each policy trial."""
    from scaleworld.study.results import control_rows

    scores: dict[str, dict[str, dict[str, dict[int, list[float]]]]] = {}
    for row in control_rows(store, [graph.jobs[i] for i in job.inputs]):
        for mode in row["modes"]:
            scores.setdefault(mode, {}).setdefault(row["size"], {}).setdefault(row["game"], {}).setdefault(
                row["seed"], []).append(row["normalised"])
    return scores


def _plain(value: Any) -> Any:
    """numpy scalars, NaN and infinities -> JSON-safe values (None for a number that is not finite)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


RUNNERS = {"expert": _expert, "collect": _collect, "tokenizer": _tokenizer, "tokens": _tokens, "dynamics": _dynamics,
           "fidelity": _fidelity, "anchor": _anchor, "policy": _policy, "control": _control, "analysis": _analysis}


def run_job(root: str | Path, job_id: str, *, requeued: Callable[[], bool] | None = None) -> int:
    """Run one job in this process; returns the exit status described in the module docstring.

    `requeued` says whether a SystemExit is a requeue (the SLURM task's time-limit signal: see
    `scaleworld.study.slurm.JobCall`); any other SystemExit ends the job as failed.
    """
    return run_jobs(root, [job_id], requeued=requeued)


def run_jobs(root: str | Path, job_ids: list[str], *, requeued: Callable[[], bool] | None = None) -> int:
    """Run one job, or several dynamics jobs as one pack (`scaleworld.study.packing`), in this process.
    The exit status is `run_job`'s for all of them together: 0 when every one is done, 75 when another
    driver holds all those not done. Members another driver holds are left to it; a failure fails
    every member (the same reason in each failed.json)."""
    store = RunStore(Path(root))
    graph = store.read_plan()
    jobs = [graph.jobs[i] for i in job_ids]
    if len(jobs) > 1 and {j.kind for j in jobs} != {"dynamics"}:
        raise ValueError(f"only dynamics jobs train as a pack, not {sorted({j.kind for j in jobs})}")
    mine: list[tuple[Job, Path, JobLock]] = []
    for job in jobs:
        out = store.prepare(job)
        if store.is_done(job):
            continue
        lock = JobLock(out / "lock")
        if lock.acquire():  # else another driver runs it: left to that driver
            mine.append((job, out, lock))
    if not mine:
        return 0 if all(store.is_done(j) for j in jobs) else EXIT_LOCKED
    start = time.time()
    outs = [out for _, out, _ in mine]
    try:
        for job, _, _ in mine:
            pending = [i for i in job.inputs if not store.is_done(graph.jobs[i])]
            if pending:
                raise RuntimeError(f"inputs not finished: {', '.join(pending)}")
        if len(mine) == 1:
            job, out, _ = mine[0]
            outputs = [RUNNERS[job.kind](store, graph, job, out)]
        else:
            outputs = _dynamics_pack(store, graph, [j for j, _, _ in mine], outs)
        for (job, out, _), record in zip(mine, outputs):
            (out / "failed.json").unlink(missing_ok=True)
            write_json_atomic(out / "done.json", {
                "kind": job.kind, "id": job.id, "outputs": record, "seconds": round(time.time() - start, 2),
                "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),  # the GPU its executor pinned it to
            })
        return 0 if all(store.is_done(j) for j in jobs) else EXIT_LOCKED
    except KeyboardInterrupt:  # interrupted, not failed: the next run resumes from the job's checkpoint
        raise
    except SystemExit:
        if requeued is not None and requeued():  # submitit requeued the task and exits: as Ctrl-C
            raise
        return _failed(outs)
    except Exception as exc:  # recorded, then the driver decides what else to run
        if requeued is not None and requeued():
            # The requeue's SystemExit can be masked by the code it interrupted (torch.save's zip
            # writer raises on close when the signal lands mid-checkpoint): still a requeue.
            context = exc.__context__
            raise (context if isinstance(context, SystemExit) else SystemExit(-1)) from None
        return _failed(outs)
    finally:
        for _, _, lock in mine:
            lock.release()


def _failed(outs: list[Path]) -> int:
    """Record the exception being handled in each out/failed.json; returns the failed exit status."""
    exc = sys.exc_info()[1]
    reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".strip()
    for out in outs:
        write_json_atomic(out / "failed.json", {"reason": reason, "traceback": traceback.format_exc()[-4000:]})
    traceback.print_exc()
    return 1


if __name__ == "__main__":
    os.environ.setdefault("RL_LOGGING_LEVEL", "WARNING")
    sys.exit(run_jobs(sys.argv[1], sys.argv[2:]))
