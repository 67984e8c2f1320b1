"""Real-game score of policies trained in imagination against their number of updates, per start split.

For one finished world model of a study's run root (a dynamics job that knows --game), trains a
fresh policy for each budget in --updates (each with its own warmup and cosine schedule: a budget
is a default to choose, not a point on one run) and each start split in --starts (held_out: the
model's held-out episodes; all: its training ones as well), then plays --episodes real episodes
with each under the study's protocol. Beside each: the final update's imagined reward per step,
the real reward per step, and Welch's one-sided p against the random policy's episodes measured
here once, under the same protocol (scaleworld.analysis.versus_random).

Usage: .venv/bin/python tools/policy_curve.py runs/pilot_cpu --game Boxing --size tiny-d2 --seed 0
       [--mode single] [--updates 100,250,500,1000] [--starts held_out,all] [--episodes 16]
       [--random-episodes 32] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RL_LOGGING_LEVEL", "WARNING")

import numpy as np  # noqa: E402

from scaleworld.analysis.versus_random import per_step, welch_greater  # noqa: E402
from scaleworld.evaluation.control import evaluate_control, measure_anchors  # noqa: E402
from scaleworld.imagination.config import policy_train_config  # noqa: E402
from scaleworld.imagination.train import train_policy  # noqa: E402
from scaleworld.study.expand import build_graph  # noqa: E402
from scaleworld.study.kinds import TokensStage, stage_of  # noqa: E402
from scaleworld.study.spec_load import load_spec  # noqa: E402
from scaleworld.study.store import RunStore  # noqa: E402


def world_model(root: Path, *, game: str, size: str, seed: int, mode: str) -> tuple[Path, Path, Path, object, object]:
    """(dynamics dir, token dataset, tokenizer dir, the first policy stage, the control stage) of a
    finished dynamics job of the run root's study."""
    store = RunStore(root)
    graph = build_graph(load_spec(root / "spec.yaml"))
    for job in graph.by_kind("policy"):
        labels = job.labels
        if (labels["game"], labels["size"], labels["seed"], labels["trial"]) == (game, size, seed, 0) and \
                mode in labels["modes"]:
            did, tid = job.inputs
            dynamics, tokens = graph.jobs[did], graph.jobs[tid]
            (tokenizer,) = [graph.jobs[i] for i in tokens.inputs if graph.jobs[i].kind == "tokenizer"]
            control = next(c for c in graph.by_kind("control") if job.id in c.inputs)
            if not store.is_done(dynamics):
                raise SystemExit(f"the dynamics job {dynamics.id} is not done: run the study first")
            return (store.job_dir(dynamics), store.job_dir(tokens) / TokensStage.ARTIFACT, store.job_dir(tokenizer),
                    stage_of(job), stage_of(control))
    raise SystemExit(f"no policy job for {game} {size} seed {seed} mode {mode} in {root}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", type=Path, help="a study's run root whose dynamics jobs have finished")
    ap.add_argument("--game", required=True)
    ap.add_argument("--size", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mode", default="single")
    ap.add_argument("--updates", default="100,250,500,1000")
    ap.add_argument("--starts", default="held_out,all")
    ap.add_argument("--episodes", type=int, default=16)
    ap.add_argument("--random-episodes", type=int, default=32)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    dynamics, tokens, tokenizer, policy, control = world_model(args.root, game=args.game, size=args.size,
                                                               seed=args.seed, mode=args.mode)
    protocol = control.protocol_config()
    anchors = measure_anchors(game=args.game, protocol=protocol, episodes=args.random_episodes, seed=control.seed,
                              num_envs=control.num_envs, upper="human")
    rand = anchors["random"]
    print(f"{args.game} {args.size} seed {args.seed} ({args.mode}); random policy {rand['score']:.2f} +- "
          f"{rand['sem']:.2f} ({args.random_episodes} episodes); policy lr {policy.train['lr']:g}, "
          f"{policy.train['batch_size']} rollouts x {policy.policy['horizon']} steps an update")
    print(f"{'starts':>9} {'updates':>7} {'score':>14} {'p vs random':>11} {'imagined/step':>13} "
          f"{'real/step':>9} {'seconds':>7}")
    rows = []
    for starts in args.starts.split(","):
        for updates in (int(u) for u in args.updates.split(",")):
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                train = policy_train_config(steps=updates, batch_size=policy.train["batch_size"],
                                            lr=policy.train["lr"], seed=0, checkpoint_every=updates)
                info = train_policy(dynamics_dir=dynamics, token_dir=tokens, out=Path(tmp) / "policy",
                                    config=policy.policy_config(), train=train, starts=starts, progress=False)
                record = evaluate_control(policy_dir=Path(tmp) / "policy", dynamics_dir=dynamics,
                                          tokenizer_dir=tokenizer, anchors=anchors, episodes=args.episodes,
                                          protocol=protocol, seed=control.seed, num_envs=control.num_envs,
                                          greedy=control.greedy)
            test = welch_greater(record["returns"], rand["returns"])
            row = {"starts": starts, "updates": updates, "score": record["mean"], "sem": record["sem"],
                   "p": test["p"], "difference": test["difference"],
                   "imagined_reward_per_step": info["final"].get("metric_reward"),
                   "real_reward_per_step": per_step(record["returns"], record["lengths"]),
                   "seconds": time.perf_counter() - t0}
            rows.append(row)
            print(f"{starts:>9} {updates:>7} {row['score']:>8.2f} +- {row['sem']:<4.2f} {row['p']:>11.2g} "
                  f"{row['imagined_reward_per_step']:>13.4f} {row['real_reward_per_step']:>9.4f} "
                  f"{row['seconds']:>7.0f}", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"game": args.game, "size": args.size, "seed": args.seed, "mode": args.mode,
                                        "random": {k: rand[k] for k in ("score", "sem", "episodes")},
                                        "rows": rows}, indent=2))
    best = max(rows, key=lambda r: r["score"] - 2 * r["sem"])
    print(f"best: {best['starts']} starts, {best['updates']} updates: {best['score']:.2f} against random "
          f"{rand['score']:.2f} (p {best['p']:.2g}); spread of scores {np.ptp([r['score'] for r in rows]):.2f}")


if __name__ == "__main__":
    main()
