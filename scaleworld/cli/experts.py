"""`scaleworld expert train | eval`: argparse wiring and handlers (heavy imports inside handlers).

`add_expert_parser(groups, protocol_help=...)` adds the ``expert`` group to the CLI's subparsers object; the handlers
follow the CLI's conventions (a `ScaleworldError` becomes one line and exit status 2).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from scaleworld.cli.args import (
    add_no_progress,
    count,
    declare_outputs,
    parse_protocol,
    quiet_torchrl,
    real,
    refuse_finished_job,
)


def _prepare(threads: int | None) -> None:
    quiet_torchrl()
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def cmd_expert_train(args: argparse.Namespace) -> None:
    from scaleworld.atari.games import get_game

    game = get_game(args.game)  # fail on a bad name before the heavy imports
    protocol = parse_protocol(args.protocol)
    _prepare(args.threads)
    import numpy as np

    from scaleworld.experts.ppo import PPOConfig, train_ppo
    from scaleworld.experts.ppo_config import budget_steps
    from scaleworld.experts.tasks import AtariTask

    steps = budget_steps(agent_steps=args.agent_steps, frames=args.frames, frame_skip=protocol.frame_skip,
                         what="--agent-steps/--frames")
    config = PPOConfig(
        agent_steps=steps, seed=args.seed, num_envs=args.envs, rollout_steps=args.rollout_steps,
        learning_rate=args.lr, checkpoint_every=args.checkpoint_every,
        episodic_life=not args.no_episodic_life, fire_reset=not args.no_fire_reset,
    )
    print(f"{game.name}: budget {steps:,} agent steps = {steps * protocol.frame_skip:,} frames "
          f"({config.total_updates()} updates of {args.envs} envs x {args.rollout_steps} steps)")
    from scaleworld.training.trainer import resolve_device

    result = train_ppo(AtariTask(game=game.name, protocol=protocol), config, args.out,
                       device=resolve_device(args.device), progress=not args.no_progress, stop_after=args.stop_after)
    recent = result.episode_returns[-20:]
    note = f"; mean return of the last {len(recent)} episodes {np.mean(recent):.2f}" if recent else ""
    done_steps = result.updates_done * args.envs * args.rollout_steps
    if result.finished:
        print(f"{game.name}: {result.updates_done} updates, {done_steps:,} agent steps = {result.frames_done:,} "
              f"frames{note}; "
              f"expert in {args.out} (score it with `scaleworld expert eval {args.out} --episodes 10`)")
    else:
        print(f"{game.name}: stopped at update {result.updates_done}/{result.total_updates}{note}; "
              "run the same command again to resume from the checkpoint")


def cmd_expert_eval(args: argparse.Namespace) -> None:
    if args.out is None:  # DIR/score.json: not inside a study's finished expert job
        refuse_finished_job((Path(args.dir) / "score.json").absolute(), "expert eval DIR:")
    _prepare(None)
    from scaleworld.experts.anchor import score_expert

    record = score_expert(
        args.dir, episodes=args.episodes, seed=args.seed, num_envs=args.envs,
        sampling="greedy" if args.greedy else "sample", epsilon=args.epsilon, out=args.out,
    )
    where = args.out if args.out else Path(args.dir) / "score.json"
    print(f"{record['game']} expert {args.dir}: mean {record['mean']:.2f} +- {record['sem']:.2f} (sem) "
          f"over {record['episodes']} episodes; wrote {where}")


def add_expert_parser(groups: argparse._SubParsersAction, *, protocol_help: str) -> None:
    """Add ``expert train`` and ``expert eval`` to the CLI's subparsers object `groups`."""
    expert = groups.add_parser("expert", help="expert policies: train with PPO, score the expert anchor")
    cmds = expert.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = cmds.add_parser("train", help="train a PPO expert on a game (resumes if --out holds a checkpoint)")
    p.add_argument("--game", required=True, help="an Atari 100k game, e.g. Pong (see `scaleworld games`)")
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--agent-steps", type=count(1), metavar="STEPS",
                        help="budget in agent steps (the standard Atari PPO run: 10000000 = 40M frames)")
    budget.add_argument("--frames", type=count(1), help="budget in emulator frames (agent steps x frame skip 4)")
    p.add_argument("--out", required=True, type=Path, help="run folder: checkpoints, logs, then the expert")
    declare_outputs(p, out="run_folder")
    p.add_argument("--seed", type=count(0), default=0, help="seeds the network, sampling and emulators (default 0)")
    p.add_argument("--envs", type=count(1), default=8, help="emulators stepped in parallel (default 8)")
    p.add_argument("--rollout-steps", type=count(1), default=128, help="steps per emulator per update (default 128)")
    p.add_argument("--lr", type=real(0, low_open=True), default=2.5e-4,
                   help="Adam learning rate, annealed to 0 (default 2.5e-4)")
    p.add_argument("--checkpoint-every", type=count(1), default=25, help="updates between checkpoints (default 25)")
    p.add_argument("--stop-after", type=count(1), metavar="UPDATES",
                   help="stop with a checkpoint after this many updates (for time-limited jobs)")
    p.add_argument("--threads", type=count(1),
                   help="torch CPU threads (default: torch's choice; 1 is often fastest on small shared machines)")
    p.add_argument("--protocol", action="append", default=[], metavar="KEY=VALUE",
                   help=protocol_help)
    p.add_argument("--no-episodic-life", action="store_true",
                   help="learn with lost lives as ordinary steps (default: a lost life is terminal for learning)")
    p.add_argument("--no-fire-reset", action="store_true",
                   help="never press FIRE for the agent (default: at each episode start in games that wait for it)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where the network learns and acts; the emulators stay on the CPU (default: cuda if visible)")
    add_no_progress(p)
    p.set_defaults(func=cmd_expert_train)

    p = cmds.add_parser("eval", help="score an expert checkpoint over full episodes (writes DIR/score.json)")
    p.add_argument("dir", help="expert checkpoint folder (holding expert.json)")
    p.add_argument("--episodes", type=count(1), default=10, help="full episodes to play (default 10)")
    p.add_argument("--out", type=Path, help="write the score record here instead of DIR/score.json")
    declare_outputs(p, out="file")
    p.add_argument("--seed", type=count(0), default=0, help="seeds the emulators, no-op starts and sampling")
    p.add_argument("--envs", type=count(1), default=8, help="emulators stepped in parallel (default 8)")
    p.add_argument("--epsilon", type=real(0, 1, high_open=False), default=0.0,
                   help="probability of a uniform legal action")
    p.add_argument("--greedy", action="store_true", help="take the most likely action instead of sampling")
    p.set_defaults(func=cmd_expert_eval)
